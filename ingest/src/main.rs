//! The `kvlake` binary: command line, settings, signals and logs around the hot and cold
//! paths. Errors end here as one line that says what to fix, and a non-zero exit code.

mod alerts;
mod cli;
mod commands;
mod eventhubs;
mod identity;
mod loganalytics;
mod logging;
mod otel;
mod progress;
mod resources;
mod secret;
mod settings;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};

/// jemalloc: glibc's per-thread arenas fragment under the many short-lived blocking
/// threads of decode and encode, and RSS drifts far above the live data.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any HTTPS client (the OTLP exporter's included): reqwest is built without a
    // TLS provider of its own.
    identity::http::install_crypto_provider();
    // Before the runtime: the OTLP exporters' blocking HTTP client runs a runtime of its own.
    let otel = match cli.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(endpoint) => match otel::init(endpoint) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    // The demo prints its own report; its log lines go to a file it names.
    if let Command::Demo(args) = &cli.command {
        let path = commands::demo::log_path(args);
        if let Err(e) = logging::init_file(&cli.log, &path) {
            eprintln!("error: cannot write the demo's log {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    } else {
        logging::init(
            cli.log_format,
            &cli.log,
            otel.as_ref().map(otel::Otel::tracer),
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        match &cli.command {
            Command::Hot(args) => commands::hot::run(args, shutdown).await,
            Command::Convert(args) => commands::convert::run(args).await,
            Command::Cold(args) => commands::cold::run(args).await,
            Command::Backfill(args) => commands::backfill::run(args, shutdown).await,
            Command::Report(args) => commands::report::run(args).await,
            Command::Compact(args) => commands::compact::run(args).await,
            Command::Migrate(args) => commands::migrate::run(args).await,
            Command::Generate(args) => commands::generate::run(args),
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Config(cli::ConfigCommand::Show(args)) => commands::config::show(args).await,
            Command::Check(args) => commands::check::run(args).await,
            Command::MockBroker(args) => {
                tokio::task::block_in_place(|| commands::mock_broker::run(args))
            }
        }
    });
    // The runtime's threads are gone before the exporters flush their last spans and metrics.
    drop(runtime);
    if let Some(o) = otel {
        o.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "kvlake failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// First SIGTERM/SIGINT: stop gracefully (commit open batches within the grace period).
/// Second: exit at once; uncommitted batches are re-read on the next start.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
            }
            if n == 0 {
                tracing::info!(
                    "signal received: finishing the current batches (send again to exit at once)"
                );
                shutdown.cancel();
            } else {
                eprintln!("second signal: exiting without committing open batches");
                std::process::exit(130);
            }
        }
    });
}
