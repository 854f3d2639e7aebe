//! OpenTelemetry export over OTLP (HTTP/protobuf): one trace per batch from the hot
//! path's `tracing` spans, and every `metrics` facade metric through [`metrics`].
//!
//! Off unless `--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT` is set: then nothing
//! here is built, no exporter thread runs and no tracing layer is installed. When on,
//! the SDK's batch span processor and periodic metric reader each run on a thread of
//! their own (never on the async runtime), and [`Otel::shutdown`] flushes both.

pub mod metrics;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The exporters' providers, kept until shutdown.
#[derive(Debug)]
pub struct Otel {
    traces: SdkTracerProvider,
    meters: SdkMeterProvider,
}

/// The URL of one signal under the collector's base URL, as the OTLP spec joins them
/// (`http://collector:4318` → `http://collector:4318/v1/traces`).
fn signal_url(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

/// Checks the endpoint: an `http://` base URL of a collector.
fn check_endpoint(endpoint: &str) -> Result<()> {
    let url = url::Url::parse(endpoint).with_context(|| {
        format!("--otlp-endpoint {endpoint}: not a URL (expected e.g. http://localhost:4318)")
    })?;
    match url.scheme() {
        "http" => Ok(()),
        "https" => bail!(
            "--otlp-endpoint {endpoint}: kvlake sends OTLP over plain HTTP to a collector on the \
             private network (a sidecar or in-cluster OpenTelemetry Collector / Azure Monitor \
             agent); point it at http://<collector>:4318"
        ),
        s => bail!(
            "--otlp-endpoint {endpoint}: scheme {s} is not supported; use http://<collector>:4318"
        ),
    }
}

/// Builds the OTLP exporters and installs the metrics bridge.
///
/// Must run outside the async runtime: the blocking HTTP client starts a runtime of its own.
pub fn init(endpoint: &str) -> Result<Otel> {
    check_endpoint(endpoint)?;
    let resource = resource();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(signal_url(endpoint, "traces"))
        .with_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the OTLP trace exporter (--otlp-endpoint)")?;
    let traces = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let meter_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(signal_url(endpoint, "metrics"))
        .with_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the OTLP metric exporter (--otlp-endpoint)")?;
    // Exported every 60 s (OTEL_METRIC_EXPORT_INTERVAL overrides) and once more at shutdown.
    let meters = SdkMeterProvider::builder()
        .with_periodic_exporter(meter_exporter)
        .with_resource(resource)
        .build();
    metrics::install(&meters)?;
    Ok(Otel { traces, meters })
}

/// `service.name` kvlake unless OTEL_SERVICE_NAME says otherwise; OTEL_RESOURCE_ATTRIBUTES
/// (e.g. `service.instance.id=<pod>`) are read by the SDK's detectors.
fn resource() -> Resource {
    let builder = Resource::builder();
    let builder = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder
    } else {
        builder.with_service_name("kvlake")
    };
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

impl Otel {
    /// The tracer the `tracing` layer exports spans with.
    pub fn tracer(&self) -> SdkTracer {
        self.traces.tracer("kvlake")
    }

    /// Exports what is still buffered and stops the exporter threads. Call it outside
    /// the async runtime, after the command finished.
    pub fn shutdown(self) {
        if let Err(e) = self.traces.shutdown() {
            eprintln!("warning: OTLP traces not flushed: {e}");
        }
        if let Err(e) = self.meters.shutdown() {
            eprintln!("warning: OTLP metrics not flushed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_urls_follow_the_otlp_spec() {
        assert_eq!(
            signal_url("http://c:4318", "traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://c:4318/otlp/", "metrics"),
            "http://c:4318/otlp/v1/metrics"
        );
    }

    #[test]
    fn endpoints_say_what_to_fix() {
        assert!(check_endpoint("http://localhost:4318").is_ok());
        let e = check_endpoint("https://x.example:4318")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain HTTP"), "{e}");
        let e = check_endpoint("localhost:4318").unwrap_err().to_string();
        assert!(e.contains("--otlp-endpoint"), "{e}");
    }
}
