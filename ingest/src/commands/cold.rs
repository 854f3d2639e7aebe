//! `kvlake cold`: the historical tables (daily aggregates, baselines, anomalies) from the
//! raw data committed in the lake, incremental from the last run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use kvlake_coldpath::{ColdJob, Rebuild, Step, Thresholds};
use kvlake_hotpath::Lake;
use kvlake_schemas::time::{format_date, parse_date};

use crate::cli::{ColdArgs, HotArgs, LakeArgs};
use crate::progress::Progress;
use crate::settings;

/// Defaults from `coldpath/sql/defaults.toml`, then the file, then `KVLAKE_COLD_<KEY>`.
pub fn thresholds(file: Option<&Path>) -> Result<Thresholds> {
    let mut fig = Figment::from(Serialized::defaults(
        kvlake_coldpath::settings::defaults_value(),
    ));
    if let Some(path) = file {
        if !path.exists() {
            bail!(
                "thresholds file {} does not exist (--thresholds / KVLAKE_COLD_THRESHOLDS)",
                path.display()
            );
        }
        fig = fig.merge(Toml::file(path));
    }
    let t: Thresholds = fig
        .merge(Env::prefixed("KVLAKE_COLD_").ignore(&["thresholds"]))
        .extract()
        .map_err(|e| anyhow!("invalid cold-path setting: {e}"))?;
    t.validate()
        .map_err(|e| anyhow!("invalid cold-path setting: {e}"))?;
    Ok(t)
}

fn day(flag: &str, v: Option<&String>) -> Result<i32> {
    let v = v.ok_or_else(|| anyhow!("--rebuild needs --{flag} YYYY-MM-DD"))?;
    parse_date(v)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| anyhow!("--{flag} `{v}` is not a date (write YYYY-MM-DD)"))
}

fn span(days: &[i32]) -> String {
    match (days.first(), days.last()) {
        (Some(a), Some(b)) if a == b => format_date(i64::from(*a)),
        (Some(a), Some(b)) => format!(
            "{} to {}",
            format_date(i64::from(*a)),
            format_date(i64::from(*b))
        ),
        _ => "none".to_string(),
    }
}

/// The lake with the same settings, identity and secret references as `kvlake hot`.
pub async fn open_lake(args: &LakeArgs) -> Result<Lake> {
    let hot = HotArgs {
        config: args.config.clone(),
        lake: args.lake.clone(),
        storage_option: args.storage_option.clone(),
        storage_auth: args.storage_auth.clone(),
        ..HotArgs::default()
    };
    Ok(open_lake_with(&hot).await?.0)
}

/// The lake named by `hot`'s lake settings, and the prepared settings (identity,
/// resolved secrets) it was opened with, for a command that also needs the identity.
/// Event Hubs is never used by such a command, so its secret is not resolved.
pub async fn open_lake_with(hot: &HotArgs) -> Result<(Lake, settings::Prepared)> {
    let mut shared = settings::load(hot.config.as_deref(), hot)?;
    shared.eventhubs_connection_string = None;
    let prepared = settings::prepare(shared).await?;
    let auth = settings::lake_auth(&prepared)?;
    let url = prepared
        .settings
        .lake
        .clone()
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| {
            anyhow!("missing --lake (or KVLAKE_LAKE, or `lake` in --config): the lake, e.g. ./lake")
        })?;
    let options: Vec<(String, String)> = prepared
        .settings
        .storage_options
        .clone()
        .into_iter()
        .collect();
    let lake = Lake::open_with(&url, &options, None, &auth)
        .context("cannot open the lake (--lake, --storage-option, --storage-auth)")?;
    Ok((lake, prepared))
}

pub async fn run(args: &ColdArgs) -> Result<()> {
    let thresholds = thresholds(args.thresholds.as_deref())?;
    if args.show_settings {
        print!(
            "{}",
            toml::to_string(&thresholds).context("cannot print the settings")?
        );
        return Ok(());
    }
    let rebuild = if args.rebuild {
        Some(Rebuild {
            from: day("from", args.from.as_ref())?,
            to: day("to", args.to.as_ref())?,
        })
    } else {
        None
    };
    let lake = open_lake(&args.lake).await?;
    let (store, root) = lake.store();
    let progress = Progress::new("cold", "steps");
    let bar = progress.clone();
    let sized = AtomicBool::new(false);
    let mut job =
        ColdJob::new(store.clone(), root.clone(), thresholds)?.on_step(move |step, done, all| {
            match step {
                Step::Table(name) => {
                    if !sized.swap(true, Ordering::Relaxed) {
                        bar.add_total(all as u64);
                    }
                    bar.set_message(name);
                    bar.inc(1);
                    tracing::info!(table = name, step = done, of = all, "cold: computing");
                }
                Step::Scan => tracing::info!("cold: reading the raw table's log"),
                Step::Save => bar.inc(1),
            }
        });
    if let Some(n) = args.threads {
        job = job.with_threads(n);
    }
    tracing::info!(lake = lake.display(), "kvlake cold starting");
    let report = job.run(rebuild).await.context("cold path stopped")?;
    progress.finish("done");
    if report.days_computed.is_empty() {
        println!(
            "cold: nothing new in {} (raw table at version {}); the tables are up to date",
            lake.display(),
            report.raw_version
        );
        return Ok(());
    }
    println!(
        "cold: raw table at version {}; recomputed {} from {} raw files ({} rows); re-analysed {} in {:.1} s",
        report.raw_version,
        span(&report.days_computed),
        report.raw_files,
        report.raw_rows,
        span(&report.days_analysed),
        report.duration.as_secs_f64()
    );
    for (table, rows) in &report.rows {
        println!("  {table:<22} {rows:>10} rows");
    }
    Ok(())
}
