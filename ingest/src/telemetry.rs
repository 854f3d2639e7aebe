//! The health and metrics endpoints: `/metrics` in Prometheus text format, `/healthz`
//! (the process answers) and `/readyz` (partitions assigned and storage reachable).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use kvlake_hotpath::metrics::HEALTH;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::otel::metrics::SECONDS_BUCKETS;

/// Installs the Prometheus recorder and serves the endpoints until `shutdown`.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> Result<SocketAddr> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    // Beside the OTLP bridge when --otlp-endpoint is set, alone otherwise.
    crate::otel::metrics::install_prometheus(recorder)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "--metrics-addr {addr}: cannot listen (port in use, or not an address of this host?)"
        )
    })?;
    let bound = listener.local_addr()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(move || metrics(handle.clone())))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    tokio::spawn(async move {
        let stop = async move { shutdown.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

async fn metrics(handle: PrometheusHandle) -> String {
    handle.render()
}

/// Ready when partitions are assigned and storage is not failing.
async fn readyz() -> (StatusCode, String) {
    let partitions = HEALTH.partitions.load(Ordering::Relaxed);
    let storage_ok = kvlake_hotpath::metrics::storage_healthy();
    let last = HEALTH.last_commit_unix_ms.load(Ordering::Relaxed);
    let body =
        format!("partitions={partitions} storage_ok={storage_ok} last_commit_unix_ms={last}\n");
    let status = if partitions > 0 && storage_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
