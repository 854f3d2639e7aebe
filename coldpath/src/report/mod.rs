//! `kvlake report`'s library: one self-contained HTML page of a lake's history — calls
//! per vault against their baselines, anomalies and alerts, readers, newcomers, denials.
//!
//! It reads the cold path's Delta tables (`agg/*`) for the period, the speed layer's
//! `alerts` when the lake has one, and the raw rows behind each finding (`tables`,
//! `raw`); queries them with DataFusion (`data`); draws inline SVG (`svg`) into a page
//! that loads nothing (`html`). The numbers of every chart are embedded next to it as JSON.

pub mod data;
pub mod error;
pub mod html;
pub mod model;
pub mod raw;
pub mod svg;
pub mod tables;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kvlake_lake::Lake;
use kvlake_schemas::time::format_date;

use crate::definitions::table;
use crate::layout::agg_dir;
use crate::settings::Thresholds;

pub use error::ReportError;
pub use model::ReportData;

/// Path of the speed layer's table under the lake root.
pub const ALERTS_TABLE: &str = "alerts";
/// The longest period a report covers.
pub const MAX_DAYS: u32 = 3660;
/// The most raw events listed under one finding.
pub const MAX_RAW_ROWS: usize = 1000;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// UTC days, ending with the newest day the cold path has computed.
    pub days: u32,
    /// Only this vault (and the identities that used it).
    pub vault: Option<String>,
    /// The cold path's thresholds, so the bands are where its alarms start.
    pub thresholds: Thresholds,
    /// Raw events listed under each finding.
    pub raw_rows: usize,
    /// How the lake is named in the page (a URL without credentials).
    pub lake_name: String,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            days: 28,
            vault: None,
            thresholds: Thresholds::default(),
            raw_rows: 10,
            lake_name: "lake".into(),
        }
    }
}

/// A built report.
#[derive(Debug, Clone)]
pub struct Report {
    pub html: String,
    pub data: ReportData,
    pub duration: Duration,
}

fn agg_schema(name: &str) -> Result<arrow::datatypes::SchemaRef, ReportError> {
    table(name)
        .map(|t| t.schema())
        .ok_or_else(|| ReportError::table(name, "not a cold-path table"))
}

fn now_text() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let s = kvlake_schemas::time::format_timestamp_micros(micros);
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// Builds the report of `lake`.
pub async fn build(lake: &Lake, opts: &ReportOptions) -> Result<Report, ReportError> {
    let started = Instant::now();
    if opts.days == 0 || opts.days > MAX_DAYS {
        return Err(ReportError::Option {
            name: "days".into(),
            reason: format!("must be 1 to {MAX_DAYS}"),
        });
    }
    if opts.raw_rows > MAX_RAW_ROWS {
        return Err(ReportError::Option {
            name: "raw-rows".into(),
            reason: format!("at most {MAX_RAW_ROWS}"),
        });
    }
    opts.thresholds
        .validate()
        .map_err(|e| ReportError::Option {
            name: "thresholds".into(),
            reason: e.to_string(),
        })?;
    let vault = opts
        .vault
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_lowercase);
    let vd_path = agg_dir("vault_daily");
    let days = tables::days(lake, &vd_path)
        .await?
        .ok_or_else(|| ReportError::NoTables {
            table: vd_path.clone(),
        })?;
    let Some(&last) = days.iter().next_back() else {
        return Err(ReportError::NoTables { table: vd_path });
    };
    // A lake younger than the period starts where its data does.
    let oldest = days.iter().next().copied().unwrap_or(last);
    let first = (last - i32::try_from(opts.days).unwrap_or(1) + 1).max(oldest);
    let range = Some((first, last));

    let q = data::Queries::new(first, last, vault.clone());
    let mut load = Vec::new();
    for (name, range) in [
        ("vault_daily", range),
        ("identity_daily", range),
        ("baselines", range),
        ("anomalies", None),
    ] {
        load.push(async move {
            let t = tables::load(lake, &agg_dir(name), Some(agg_schema(name)?), range).await?;
            let t = t.ok_or_else(|| ReportError::NoTables {
                table: agg_dir(name),
            })?;
            Ok::<_, ReportError>((name, t))
        });
    }
    for (name, t) in futures::future::try_join_all(load).await? {
        q.register(name, t)?;
    }
    let alerts = tables::load(lake, ALERTS_TABLE, None, range).await?;

    let t = &opts.thresholds;
    let settings = model::DrawSettings {
        score_threshold: t.score_threshold,
        volume_min_ratio: t.volume_min_ratio,
        warmup_days: t.warmup_days,
        window_minutes: t.window_minutes,
        mass_retrieval_threshold: t.mass_retrieval_threshold,
        denied_burst_min: t.denied_burst_min,
        new_subject_min_operations: t.new_subject_min_operations,
    };
    let lake_days = q.lake_days().await?;
    let mut vault_calls = q.vault_calls(&lake_days, &settings).await?;
    let on_vault = q.active_on_vault().await?;
    let mut findings = q.anomalies().await?;
    let alerts_table = alerts.is_some();
    if let Some(a) = alerts {
        let schema = a.schema.clone();
        q.register("alerts", a)?;
        findings.extend(q.alerts(&schema).await?);
    }
    if let Some(v) = &vault {
        findings.retain(|f| match &f.vault {
            Some(fv) => fv == v,
            None => f.identity.as_ref().is_some_and(|i| {
                on_vault.as_ref().is_some_and(|s| {
                    kvlake_schemas::time::parse_date(&f.date)
                        .and_then(|d| i32::try_from(d).ok())
                        .is_some_and(|d| s.contains(&(d, i.clone())))
                })
            }),
        });
    }
    findings.sort_by(|a, b| {
        (&a.date, a.window_start, &a.kind, a.source).cmp(&(
            &b.date,
            b.window_start,
            &b.kind,
            b.source,
        ))
    });
    // Mark each vault's days with the kinds of its anomalies.
    for f in findings.iter().filter(|f| f.source == "anomaly") {
        if let Some(series) = vault_calls
            .iter_mut()
            .find(|s| Some(&s.vault) == f.vault.as_ref())
            && let Some(day) = series.days.iter_mut().find(|d| d.date == f.date)
            && !day.anomalies.contains(&f.kind)
        {
            day.anomalies.push(f.kind.clone());
        }
    }
    let in_lake = q.kinds_in_lake().await?;
    let mut kinds: BTreeMap<String, model::KindCount> = BTreeMap::new();
    for (k, n) in &in_lake {
        kinds.insert(
            k.clone(),
            model::KindCount {
                kind: k.clone(),
                in_lake: *n,
                in_period: 0,
                alerts_in_period: 0,
            },
        );
    }
    for f in &findings {
        let e = kinds
            .entry(f.kind.clone())
            .or_insert_with(|| model::KindCount {
                kind: f.kind.clone(),
                in_lake: 0,
                in_period: 0,
                alerts_in_period: 0,
            });
        if f.source == "alert" {
            e.alerts_in_period += 1;
        } else {
            e.in_period += 1;
        }
    }
    let mut kinds: Vec<model::KindCount> = kinds.into_values().collect();
    let order = |k: &str| {
        data::ANOMALY_KINDS
            .iter()
            .position(|x| *x == k)
            .unwrap_or(usize::MAX)
    };
    kinds.sort_by(|a, b| {
        order(&a.kind)
            .cmp(&order(&b.kind))
            .then(a.kind.cmp(&b.kind))
    });

    let top_readers = q.top_readers(lake_days.len(), t.warmup_days).await?;
    let (new_days, new_subjects, new_subjects_total) = q
        .new_subjects(&lake_days, t.warmup_days, on_vault.as_ref())
        .await?;
    let (denied_vaults, denied_identities) = q.denied().await?;
    let identities = q.identities().await?;

    match raw::RawIndex::open(lake).await? {
        Some(index) => {
            index
                .attach_all(&mut findings, opts.raw_rows, &t.sensitive_operations)
                .await?;
        }
        None => {
            for f in &mut findings {
                f.raw.note = Some("the lake has no raw table".into());
            }
        }
    }

    let data = ReportData {
        lake: opts.lake_name.clone(),
        generated_at: now_text(),
        vault_filter: vault,
        period: model::Period {
            first: format_date(i64::from(first)),
            last: format_date(i64::from(last)),
            days: opts.days,
            lake_days: lake_days
                .iter()
                .map(|d| format_date(i64::from(*d)))
                .collect(),
        },
        settings,
        calls: vault_calls.iter().map(|v| v.total).sum(),
        identities,
        vault_calls,
        kinds,
        alerts_table,
        findings,
        top_readers,
        new_days,
        new_subjects,
        new_subjects_total,
        denied_vaults,
        denied_identities,
    };
    let html = html::render(&data);
    Ok(Report {
        html,
        data,
        duration: started.elapsed(),
    })
}
