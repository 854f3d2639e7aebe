//! `kvlake report`: one self-contained HTML page of the lake's history (charts as inline
//! SVG, nothing fetched when it opens), from the same lake settings as `kvlake cold`.

use anyhow::{Context, Result};
use kvlake_coldpath::report::{ReportOptions, build};

use crate::cli::ReportArgs;
use crate::commands::cold::{open_lake, thresholds};

pub async fn run(args: &ReportArgs) -> Result<()> {
    let thresholds = thresholds(args.thresholds.as_deref())?;
    let lake = open_lake(&args.lake).await?;
    let opts = ReportOptions {
        days: args.days,
        vault: args.vault.clone(),
        thresholds,
        raw_rows: args.raw_rows,
        lake_name: lake.display().to_string(),
    };
    let report = build(&lake, &opts)
        .await
        .context("cannot build the report")?;
    let out = args.out.clone();
    let html = report.html;
    let size = html.len();
    tokio::task::spawn_blocking(move || std::fs::write(&out, html))
        .await
        .context("writing the report")?
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let d = &report.data;
    println!(
        "report: {} ({:.1} KB) — {} to {}, {} vaults, {} findings, built in {:.2} s",
        args.out.display(),
        size as f64 / 1024.0,
        d.period.first,
        d.period.last,
        d.vault_calls.len(),
        d.findings.len(),
        report.duration.as_secs_f64()
    );
    Ok(())
}
