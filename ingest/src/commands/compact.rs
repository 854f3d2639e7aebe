//! `kvlake compact`: maintenance of every Delta table in the lake — merge the small files
//! of closed partitions, apply data retention, checkpoint, clean up the log, VACUUM.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kvlake_coldpath::TABLES;
use kvlake_coldpath::job::agg_table;
use kvlake_hotpath::Lake;
use kvlake_hotpath::encode::writer_properties;
use kvlake_lake::DeltaTable;
use kvlake_lake::maintain::{CompactOptions, MaintainOptions, MaintainReport, compact, maintain};
use kvlake_lake::tables::{dead_letter_table, raw_table};

use tokio_util::sync::CancellationToken;

use crate::cli::CompactArgs;
use crate::settings::parse_size;

/// Checkpoint-log entries kept per partition (the rest are in the Delta tables).
const LOG_ENTRIES_KEPT: u64 = 100;

/// Row groups of merged files (as the hot path writes them).
const ROW_GROUP_ROWS: usize = 128 * 1024;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What maintenance runs with, from the flags (shared with the service's own maintenance).
pub fn options(
    older_than: Duration,
    target_bytes: u64,
    retention: Option<Duration>,
    vacuum_retention: Duration,
) -> Result<MaintainOptions> {
    if vacuum_retention < Duration::from_secs(3600) {
        bail!(
            "--vacuum-retention must be at least 1h: a shorter one could delete the files of a batch that is still committing, or files a reader of an older version still reads"
        );
    }
    let mut opts = MaintainOptions::new(CompactOptions {
        closed_for_ms: ms(older_than),
        target_bytes,
        props: writer_properties(ROW_GROUP_ROWS),
    });
    opts.retention_ms = retention.map(ms);
    opts.vacuum_retention_ms = ms(vacuum_retention);
    Ok(opts)
}

/// Every Delta table of a lake: raw, dead letters, and the cold path's tables.
pub fn tables(lake: &Lake) -> Vec<DeltaTable> {
    let mut out = vec![
        DeltaTable::new(lake, raw_table()),
        DeltaTable::new(lake, dead_letter_table()),
    ];
    out.extend(TABLES.iter().map(|t| DeltaTable::new(lake, agg_table(t))));
    out
}

/// One maintenance pass over every table that exists; reports per table.
pub async fn run_once(
    lake: &Lake,
    opts: &MaintainOptions,
    compact_only: bool,
    keep_log_entries: u64,
) -> Result<Vec<(String, MaintainReport)>> {
    let mut out = Vec::new();
    for table in tables(lake) {
        if !table.exists().await? {
            continue;
        }
        let name = table.def().path.clone();
        let report = if compact_only {
            MaintainReport {
                compact: compact(&table, &opts.compact).await?,
                ..MaintainReport::default()
            }
        } else {
            maintain(&table, opts).await?
        };
        out.push((name, report));
    }
    if !compact_only {
        let pruned = kvlake_hotpath::log::prune(lake, keep_log_entries).await?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                "checkpoint-log entries already in the Delta tables deleted"
            );
        }
        // Staged rows a crash left behind after their batch reached its table.
        let staged = kvlake_hotpath::stage::clean_all(lake).await?;
        if staged > 0 {
            tracing::info!(staged, "staged files of published batches deleted");
        }
    }
    Ok(out)
}

/// How often a service runs maintenance.
const SERVICE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// The service's maintenance settings from `--compact-after` and `--retention`;
/// `None` when compaction is `off`.
pub fn service_options(
    compact_after: Option<&str>,
    retention: Option<&str>,
) -> Result<Option<MaintainOptions>> {
    let after = match compact_after.map(str::trim) {
        Some("off") => return Ok(None),
        Some(v) => humantime::parse_duration(v).with_context(|| {
            format!("--compact-after: `{v}` is not a duration (write e.g. 2h, or off)")
        })?,
        None => Duration::from_secs(2 * 3600),
    };
    let retention = retention
        .map(|v| {
            humantime::parse_duration(v.trim())
                .with_context(|| format!("--retention: `{v}` is not a duration (write e.g. 400d)"))
        })
        .transpose()?;
    options(
        after,
        128 << 20,
        retention,
        Duration::from_secs(7 * 24 * 3600),
    )
    .map(Some)
}

/// Maintenance beside ingestion, every 15 minutes until `stop`: a failed pass is logged
/// and retried at the next interval (the commits it made stand; the rest resumes).
pub async fn service_loop(lake: Lake, opts: MaintainOptions, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SERVICE_INTERVAL) => {}
        }
        match run_once(&lake, &opts, false, LOG_ENTRIES_KEPT).await {
            Ok(reports) => {
                for (table, r) in reports
                    .iter()
                    .filter(|(_, r)| r.compact.files_removed + r.expired + r.vacuumed > 0)
                {
                    tracing::info!(
                        table,
                        merged = r.compact.files_removed,
                        into = r.compact.files_added,
                        expired = r.expired,
                        vacuumed = r.vacuumed,
                        version = r.version,
                        "table maintenance"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "table maintenance failed; retrying at the next interval")
            }
        }
    }
}

pub async fn run(args: &CompactArgs) -> Result<()> {
    let target = parse_size(&args.target_size).with_context(|| {
        format!(
            "--target-size: `{}` is not a size (write e.g. 128MiB)",
            args.target_size
        )
    })?;
    let opts = options(
        args.older_than,
        target,
        args.retention,
        args.vacuum_retention,
    )?;
    let lake = super::cold::open_lake(&args.lake).await?;
    let reports = run_once(&lake, &opts, args.compact_only, args.keep_log_entries)
        .await
        .context("compaction stopped (run it again: it resumes)")?;
    if reports.is_empty() {
        println!("compact: no Delta tables in {}", lake.display());
    }
    for (table, r) in reports {
        println!(
            "compact {table:<24} {:>5} files into {:>3} in {:>3} partitions ({} rows, {:.1} MB); {} expired, {} vacuumed, {} log entries deleted; version {}",
            r.compact.files_removed,
            r.compact.files_added,
            r.compact.partitions,
            r.compact.rows,
            r.compact.bytes_written as f64 / 1e6,
            r.expired,
            r.vacuumed,
            r.log_entries_deleted,
            r.version
        );
    }
    Ok(())
}
