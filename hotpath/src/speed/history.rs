//! What the rules know from before the live days: the cold path's daily tables
//! (`agg/vault_daily`, `agg/identity_daily`, `agg/identity_ip_daily`) read at start and
//! every refresh, plus the days the stream itself closed (rolled in at eviction).
//!
//! It gives the baselines (the last 28 lake days of each series, as `baselines.sql`
//! computes them), the known sets behind the first-seen rules, and the lake's age.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use kvlake_lake::{DeltaTable, Lake, TableDef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::event::Name;
use super::state::Map;
use crate::error::HotError;

/// Days of series kept: the 28-day window plus the days the stream may still be in.
pub const SERIES_DAYS: i32 = 31;

/// A series of daily values, as `baselines.sql` names them (scope / metric).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// vault / operations.
    Vault(Name),
    /// identity / operations.
    Identity(Name),
    /// identity / secret_reads (by object id).
    Reads(Name),
    /// vault_identity / peak_list_read.
    PeakList(Name, Name),
    /// vault_identity / peak_denied.
    PeakDenied(Name, Name),
}

/// History before the live days.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Days the lake holds data for.
    pub lake_days: BTreeSet<i32>,
    /// Daily values of the recent days.
    pub series: Map<Metric, BTreeMap<i32, u64>>,
    /// First day each series has a row (quiet days after it count as 0).
    pub first: Map<Metric, i32>,
    /// First day of each (identity, vault).
    pub pair_first: Map<(Name, Name), i32>,
    /// First day of each (identity, ip).
    pub ip_first: Map<(Name, Name), i32>,
    /// First day of each identity.
    pub identity_first: Map<Name, i32>,
}

impl History {
    /// Records a value of `m` on `day` (keeps the series' first day).
    pub fn put(&mut self, m: Metric, day: i32, value: u64, keep_from: i32) {
        let f = self.first.entry(m.clone()).or_insert(day);
        *f = (*f).min(day);
        if day >= keep_from {
            *self.series.entry(m).or_default().entry(day).or_default() += value;
        }
    }

    /// Notes that (identity, vault) was active on `day`.
    pub fn pair(&mut self, identity: impl Into<Name>, vault: impl Into<Name>, day: i32) {
        let identity = identity.into();
        min_into(&mut self.pair_first, (identity.clone(), vault.into()), day);
        min_into(&mut self.identity_first, identity, day);
    }

    /// Notes that (identity, ip) was active on `day`.
    pub fn ip(&mut self, identity: impl Into<Name>, ip: impl Into<Name>, day: i32) {
        min_into(&mut self.ip_first, (identity.into(), ip.into()), day);
    }

    /// Drops series days older than `from`.
    pub fn trim(&mut self, from: i32) {
        self.series.retain(|_, s| {
            s.retain(|d, _| *d >= from);
            !s.is_empty()
        });
    }

    /// The value of `m` on `day`, when the history has it.
    pub fn value(&self, m: &Metric, day: i32) -> Option<u64> {
        self.series.get(m)?.get(&day).copied()
    }
}

fn min_into<K: std::hash::Hash + Eq>(map: &mut Map<K, i32>, k: K, day: i32) {
    let f = map.entry(k).or_insert(day);
    *f = (*f).min(day);
}

fn def(name: &str) -> TableDef {
    TableDef {
        path: format!("agg/{name}"),
        file_schema: std::sync::Arc::new(arrow::datatypes::Schema::empty()),
        partitions: vec![("date", arrow::datatypes::DataType::Date32)],
        description: String::new(),
    }
}

/// The live files of one aggregate table with their day (nothing when the cold path
/// has not run).
async fn files(lake: &Lake, name: &str) -> Result<Vec<(i32, Bytes)>, HotError> {
    Ok(DeltaTable::new(lake, def(name)).live_files_by_day().await?)
}

/// The rows of one aggregate file. An unreadable file must not stop ingestion, but it
/// is said: the known sets then miss its day, and new-identity alerts may fire early.
fn batches(bytes: Bytes) -> Vec<RecordBatch> {
    let read = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .and_then(|r| r.collect::<Result<Vec<_>, _>>().map_err(Into::into));
    read.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an aggregate file of the cold path cannot be read; its day is left out of the speed layer's history");
        Vec::new()
    })
}

fn s<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::StringArray> {
    b.column_by_name(name)?.as_string_opt::<i32>()
}

fn n<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::Int64Array> {
    b.column_by_name(name)?.as_primitive_opt::<Int64Type>()
}

fn get(a: Option<&arrow::array::StringArray>, i: usize) -> Option<&str> {
    let a = a?;
    (!a.is_null(i)).then(|| a.value(i))
}

fn num(a: Option<&arrow::array::Int64Array>, i: usize) -> u64 {
    a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
        .map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// Reads the cold path's daily tables into a history. `excluded_app_ids` (lower case)
/// are left out of the reads series, as `baselines.sql` does.
pub async fn load(lake: &Lake, excluded_app_ids: &[String]) -> Result<History, HotError> {
    let vault = files(lake, "vault_daily").await?;
    let ident = files(lake, "identity_daily").await?;
    let ips = files(lake, "identity_ip_daily").await?;
    let excluded = excluded_app_ids.to_vec();
    tokio::task::spawn_blocking(move || build(vault, ident, ips, &excluded))
        .await
        .map_err(|e| HotError::Task(e.to_string()))
}

fn build(
    vault: Vec<(i32, Bytes)>,
    ident: Vec<(i32, Bytes)>,
    ips: Vec<(i32, Bytes)>,
    excluded: &[String],
) -> History {
    let mut h = History::default();
    let newest = vault.iter().map(|(d, _)| *d).max().unwrap_or(0);
    let keep_from = newest - SERIES_DAYS;
    for (day, bytes) in vault {
        h.lake_days.insert(day);
        for b in batches(bytes) {
            let (v, ops) = (s(&b, "vault_name"), n(&b, "operations"));
            for i in 0..b.num_rows() {
                if let Some(v) = get(v, i) {
                    h.put(Metric::Vault(v.into()), day, num(ops, i), keep_from);
                }
            }
        }
    }
    for (day, bytes) in ident {
        for b in batches(bytes) {
            let (id, v, oid, app) = (
                s(&b, "identity"),
                s(&b, "vault_name"),
                s(&b, "object_id"),
                s(&b, "app_id"),
            );
            let (ops, reads, pl, pd) = (
                n(&b, "operations"),
                n(&b, "secret_reads"),
                n(&b, "peak_list_read"),
                n(&b, "peak_denied"),
            );
            for i in 0..b.num_rows() {
                let (Some(id), Some(v)) = (get(id, i), get(v, i)) else {
                    continue;
                };
                let (a, b2) = (Name::from(id), Name::from(v));
                h.pair(a.clone(), b2.clone(), day);
                h.put(Metric::Identity(a.clone()), day, num(ops, i), keep_from);
                h.put(
                    Metric::PeakList(a.clone(), b2.clone()),
                    day,
                    num(pl, i),
                    keep_from,
                );
                h.put(Metric::PeakDenied(a, b2), day, num(pd, i), keep_from);
                if let Some(o) = get(oid, i) {
                    let app = get(app, i).unwrap_or("").to_lowercase();
                    if !excluded.contains(&app) {
                        h.put(Metric::Reads(o.into()), day, num(reads, i), keep_from);
                    }
                }
            }
        }
    }
    for (day, bytes) in ips {
        for b in batches(bytes) {
            let (id, ip) = (s(&b, "identity"), s(&b, "ip"));
            for i in 0..b.num_rows() {
                if let (Some(id), Some(ip)) = (get(id, i), get(ip, i)) {
                    h.ip(id, ip, day);
                }
            }
        }
    }
    h
}
