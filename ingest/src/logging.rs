//! Log set-up: tracing with fields, human-readable on a terminal, JSON lines otherwise,
//! and the OpenTelemetry layer that exports the hot path's batch spans when OTLP is on.

use std::io::IsTerminal;

use opentelemetry_sdk::trace::SdkTracer;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;
use crate::progress::LogWriter;

/// Installs the global subscriber; logs go to stderr so stdout stays for data and reports.
///
/// A log line inside a batch's span carries the span's fields (`partition`, `offsets`,
/// `seq`, ...): in text as the `batch{...}:` prefix, in JSON under `spans`.
/// `tracer`, when OTLP is on, receives kvlake's spans whatever `filter` says about logs.
pub fn init(format: LogFormat, filter: &str, tracer: Option<SdkTracer>) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(LogWriter);
    let logs = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_target(false).with_filter(filter).boxed()
    };
    // Only kvlake's own spans and events become traces (librdkafka's chatter does not).
    let traces = tracer.map(|t| {
        tracing_opentelemetry::layer().with_tracer(t).with_filter(
            Targets::new()
                .with_target("kvlake_hotpath", Level::INFO)
                .with_target("kvlake", Level::INFO),
        )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
}

/// Logs to a file instead of stderr, for commands that print a report of their own
/// (`kvlake demo`); the file is replaced.
pub fn init_file(filter: &str, path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(filter),
        )
        .init();
    Ok(())
}
