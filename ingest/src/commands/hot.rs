//! `kvlake hot`: the hot path as a service, a scheduled job (`--until-caught-up`) or a replay.

use anyhow::{Context, Result};
use std::sync::Arc;

use kvlake_hotpath::lake::StorageRetry;
use kvlake_hotpath::{Lake, RunMode};
use tokio_util::sync::CancellationToken;

use crate::cli::HotArgs;
use crate::identity;
use crate::progress::Progress;
use crate::settings;

pub async fn run(args: &HotArgs, shutdown: CancellationToken) -> Result<()> {
    let prepared = settings::prepare(settings::load(args.config.as_deref(), args)?).await?;
    let refresh = settings::secret_refresh(&prepared.settings)?;
    let lake_auth = settings::lake_auth(&prepared)?;
    let (mut cfg, spec, metrics_addr) = settings::validate(prepared.settings.clone())?;
    let endpoints = CancellationToken::new();
    if cfg.kafka.get("sasl.mechanism").map(String::as_str) == Some("OAUTHBEARER") {
        let scope =
            settings::kafka_token_scope(&prepared.settings, &cfg.kafka["bootstrap.servers"])?;
        let identity = prepared
            .identity
            .clone()
            .context("--auth entra needs the service identity")?;
        let tokens = identity::KafkaTokens::start(identity, scope, endpoints.clone()).await?;
        cfg.oauth = Some(tokens);
    }
    prepared.secrets.spawn_refresh(refresh, endpoints.clone());
    if let Some(mut cs) = prepared.connection_string.clone() {
        // librdkafka cannot swap a SASL password in place: stop at the next batch
        // boundary, so the service manager's restart connects with the new value.
        let (shutdown, stop) = (shutdown.clone(), endpoints.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = cs.changed() => if r.is_ok() {
                    tracing::warn!("the Event Hubs connection string changed at its source: stopping at the next batch boundary so that the restart uses it");
                    shutdown.cancel();
                }
            }
        });
    }
    if let Some(addr) = metrics_addr {
        crate::telemetry::serve(addr, endpoints.clone()).await?;
    }
    let lake = Lake::open_with(
        &spec.url,
        &spec.options,
        spec.output_prefix.as_deref(),
        &lake_auth,
    )
    .context("cannot open the lake (--lake, --storage-option)")?
    .with_retry(StorageRetry {
        total: spec.retry_timeout,
        ..StorageRetry::default()
    });
    cfg.speed = speed_config(&prepared, spec.output_prefix.is_some())?;
    let kafka = cfg.kafka.clone();
    tracing::info!(lake = lake.display(), topic = %cfg.topic, mode = ?cfg.mode, assignment = ?cfg.assignment, writer = %cfg.writer_id, "kvlake hot starting");
    // A run with an end (scheduled job, replay) shows how far it has got, on a terminal.
    let has_end = cfg.mode == RunMode::UntilCaughtUp
        || cfg.ending_timestamp_ms.is_some()
        || spec.output_prefix.is_some();
    let progress = if has_end {
        Progress::new("hot", "messages")
    } else {
        Progress::hidden()
    };
    // A service keeps its tables small itself; a scheduled job leaves it to `kvlake compact`.
    if cfg.mode != RunMode::UntilCaughtUp && spec.output_prefix.is_none() {
        let settings = &prepared.settings;
        if let Some(opts) = super::compact::service_options(
            settings.compact_after.as_deref(),
            settings.retention.as_deref(),
        )? {
            tokio::spawn(super::compact::service_loop(
                lake.clone(),
                opts,
                endpoints.clone(),
            ));
        }
    }
    let refused = |r: &kvlake_hotpath::source::Refusal| refusal_line(&prepared, &kafka, r);
    let summary =
        kvlake_hotpath::run_with_progress(cfg, lake, shutdown, Arc::new(progress.clone()))
            .await
            .map_err(|e| match e {
                kvlake_hotpath::HotError::KafkaRefused { refusal, .. } => {
                    anyhow::anyhow!(refused(&refusal))
                }
                e => anyhow::Error::new(e).context("hot path stopped"),
            });
    progress.finish(if summary.is_ok() { "done" } else { "stopped" });
    endpoints.cancel();
    let summary = summary?;
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    tracing::info!(
        rows = summary.raw_rows(),
        dead_letters = summary.dead_letter_rows(),
        bytes = summary.bytes(),
        seconds = secs,
        abandoned = summary.abandoned,
        "kvlake hot stopped cleanly"
    );
    if let Some((rss, cpu)) = crate::resources::usage() {
        tracing::info!(peak_rss_bytes = rss, cpu_seconds = cpu, "resources used");
    }
    for p in &summary.partitions {
        if let Some(by) = &p.lost_to {
            tracing::warn!(partition = p.partition, other_writer = %by, "partition was taken over by another writer");
        }
    }
    println!(
        "committed {} rows and {} dead letters from {:.1} MB in {:.1}s ({:.1} MB/s)",
        summary.raw_rows(),
        summary.dead_letter_rows(),
        summary.bytes() as f64 / 1e6,
        secs,
        summary.bytes() as f64 / 1e6 / secs
    );
    if !summary.left_behind.is_empty() {
        let messages: i64 = summary.left_behind.iter().map(|(_, n)| n).sum();
        tracing::info!(
            messages,
            partitions = ?summary.left_behind,
            "messages past this run's end point; the next run takes them"
        );
        println!(
            "{messages} messages on {} partitions are past this run's end point (they arrived during the run, or the broker under-reported its high watermark at the start): the next run takes them",
            summary.left_behind.len()
        );
    }
    Ok(())
}

/// The one-line error of a refused Kafka connection: the namespace and the fix.
pub(crate) fn refusal_line(
    prepared: &settings::Prepared,
    kafka: &std::collections::BTreeMap<String, String>,
    r: &kvlake_hotpath::source::Refusal,
) -> String {
    let brokers = kafka.get("bootstrap.servers").cloned().unwrap_or_default();
    let scope = settings::kafka_token_scope(&prepared.settings, &brokers).ok();
    let ns = crate::eventhubs::namespace_of(
        &brokers,
        prepared.settings.eventhubs_connection_string.as_ref(),
        scope.as_deref(),
    );
    let mechanism = kafka
        .get("sasl.mechanism")
        .map(|m| m.to_ascii_uppercase())
        .unwrap_or_default();
    crate::eventhubs::refusal_message(&ns, &brokers, &mechanism, r)
}

/// The speed layer's settings: the thresholds shared with the cold path (the same file and
/// `KVLAKE_COLD_<KEY>` variables as `kvlake cold`), the lateness and the sinks.
fn speed_config(
    prepared: &settings::Prepared,
    replay: bool,
) -> Result<Option<kvlake_hotpath::speed::SpeedConfig>> {
    let s = &prepared.settings;
    match s.speed.as_deref() {
        Some("off") => return Ok(None),
        // A replay under --output-prefix re-reads history: its alerts were raised live.
        _ if replay => return Ok(None),
        _ => {}
    }
    let t = super::cold::thresholds(s.thresholds.as_deref().map(std::path::Path::new))
        .context("--thresholds")?;
    let thresholds = speed_thresholds(&t);
    let mut cfg = kvlake_hotpath::speed::SpeedConfig::new(thresholds);
    if let Some(l) = &s.alert_lateness {
        cfg.lateness = humantime::parse_duration(l.trim()).with_context(|| {
            format!("--alert-lateness: `{l}` is not a duration (write e.g. 30m, 2h)")
        })?;
    }
    let http = identity::http::client(&prepared.roots)?;
    for url in &s.alert_webhook {
        let hook = crate::alerts::webhook::Webhook::new(
            url,
            http.clone(),
            prepared.alert_webhook_secret.clone(),
        )?;
        cfg.sinks.push(Arc::new(hook));
    }
    match (&s.alert_logs_endpoint, &s.alert_logs_rule) {
        (Some(endpoint), Some(rule)) => {
            let identity = prepared
                .identity
                .clone()
                .context("--alert-logs-endpoint needs the service identity")?;
            let stream = s
                .alert_logs_stream
                .as_deref()
                .unwrap_or(crate::alerts::logs::DEFAULT_STREAM);
            cfg.sinks
                .push(Arc::new(crate::alerts::logs::LogsIngestion::new(
                    endpoint, rule, stream, http, identity,
                )?));
        }
        (Some(_), None) => anyhow::bail!(
            "--alert-logs-endpoint needs --alert-logs-rule: the data collection rule's immutable id (dcr-...)"
        ),
        (None, Some(_)) => anyhow::bail!(
            "--alert-logs-rule needs --alert-logs-endpoint: the data collection endpoint's logs ingestion URL"
        ),
        (None, None) => {}
    }
    Ok(Some(cfg))
}

/// The cold path's thresholds as the speed layer reads them (one meaning per setting).
pub(crate) fn speed_thresholds(
    t: &kvlake_coldpath::Thresholds,
) -> kvlake_hotpath::speed::Thresholds {
    kvlake_hotpath::speed::Thresholds {
        mass_retrieval_threshold: t.mass_retrieval_threshold,
        excluded_app_ids: t
            .excluded_app_ids
            .iter()
            .map(|a| a.to_lowercase())
            .collect(),
        sensitive_operations: t.sensitive_operations.clone(),
        list_read_min_secrets: t.list_read_min_secrets,
        denied_burst_min: t.denied_burst_min,
        window_minutes: t.window_minutes,
        warmup_days: t.warmup_days,
        score_threshold: t.score_threshold,
        volume_min_baseline: t.volume_min_baseline,
        volume_min_ratio: t.volume_min_ratio,
        new_subject_min_operations: t.new_subject_min_operations,
    }
}
