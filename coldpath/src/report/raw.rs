//! The raw events behind each finding: the committed raw files of the hours its window
//! covers (from the raw table's Delta log), filtered by its vault, identity, IP, window
//! and kind in DataFusion; how many match and the first few by time.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::error::ArrowError;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use datafusion::prelude::{Expr, coalesce, col, lit, lower};
use datafusion::scalar::ScalarValue;
use kvlake_lake::tables::raw_table;
use kvlake_lake::{DeltaTable, Lake};
use kvlake_schemas::layout::RAW_TABLE;
use kvlake_schemas::time::{format_timestamp_micros, parse_date};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use url::Url;

use super::data::Rows;
use super::error::ReportError;
use super::model::{Finding, RawEvent, RawEvents};

const LAKE_URL: &str = "kvlake-report://lake/";
const HOUR: i64 = 3_600_000_000;
/// The longest window whose raw rows are looked at (a day's window spans 25 hours at most).
const MAX_HOURS: i64 = 48;

/// The raw table's live files by (day, hour).
pub struct RawIndex {
    ctx: SessionContext,
    files: BTreeMap<(i32, i32), Vec<String>>,
}

impl std::fmt::Debug for RawIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawIndex")
            .field("hours", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl RawIndex {
    /// `None` when the lake has no raw table.
    pub async fn open(lake: &Lake) -> Result<Option<RawIndex>, ReportError> {
        let table = DeltaTable::new(lake, raw_table());
        if !table.exists().await? {
            return Ok(None);
        }
        let snap = table.load().await?;
        let mut files: BTreeMap<(i32, i32), Vec<String>> = BTreeMap::new();
        for add in snap.files.values() {
            let part = |k: &str| add.partition_values.get(k).cloned().flatten();
            let day = part("date")
                .and_then(|d| parse_date(&d))
                .and_then(|d| i32::try_from(d).ok());
            let hour = part("hour").and_then(|h| h.parse::<i32>().ok());
            if let (Some(day), Some(hour)) = (day, hour) {
                files
                    .entry((day, hour))
                    .or_default()
                    .push(format!("{RAW_TABLE}/{}", add.path));
            }
        }
        // Filters evaluated while decoding (late materialization): a finding's filter
        // keeps a sliver of a day's rows, and the other columns of the rest are never decoded.
        let ctx = SessionContext::new_with_config(
            SessionConfig::new()
                .set_bool("datafusion.execution.parquet.pushdown_filters", true)
                .set_bool("datafusion.execution.parquet.reorder_filters", true),
        );
        let (store, root) = lake.store();
        let store: Arc<dyn ObjectStore> = if root.as_ref().is_empty() {
            store.clone()
        } else {
            Arc::new(PrefixStore::new(store.clone(), root.clone()))
        };
        let url = Url::parse(LAKE_URL).map_err(|e| ReportError::table("raw", e))?;
        ctx.register_object_store(&url, store);
        Ok(Some(RawIndex { ctx, files }))
    }

    /// Fills every finding's `raw`: the matching rows' count and the first `limit` of them.
    /// Findings whose windows cover the same raw files (a day's findings, typically) share
    /// one scan with their filters OR-ed; each finding's own filter then runs over those
    /// rows in memory. A scan per finding read a busy day's files once per finding.
    pub async fn attach_all(
        &self,
        findings: &mut [Finding],
        limit: usize,
        sensitive: &[String],
    ) -> Result<(), ReportError> {
        let mut groups: BTreeMap<Vec<String>, Vec<(usize, Expr)>> = BTreeMap::new();
        for (i, finding) in findings.iter_mut().enumerate() {
            let (files, filter) = self.plan(finding, sensitive);
            if !files.is_empty() {
                groups.entry(files).or_default().push((i, filter));
            }
        }
        let matched: Vec<Vec<(usize, Vec<RecordBatch>)>> = futures::stream::iter(
            groups
                .into_iter()
                .map(|(files, members)| async move { self.scan_group(&files, members).await }),
        )
        .buffer_unordered(SCANS_IN_FLIGHT)
        .try_collect()
        .await?;
        for (i, rows) in matched.into_iter().flatten() {
            fill(&mut findings[i], rows, limit)?;
        }
        Ok(())
    }

    /// The raw files of `finding`'s window and its filter; its words and note go in `raw`.
    fn plan(&self, finding: &mut Finding, sensitive: &[String]) -> (Vec<String>, Expr) {
        let day = parse_date(&finding.date).unwrap_or(0);
        let start = finding.window_start.unwrap_or(day * 24 * HOUR);
        let mut end = finding.window_end.unwrap_or(start + 24 * HOUR).max(start);
        let mut note = None;
        if end - start > MAX_HOURS * HOUR {
            end = start + MAX_HOURS * HOUR;
            note = Some(format!(
                "the window is longer than {MAX_HOURS} hours: only its first {MAX_HOURS} were looked at"
            ));
        }
        let mut files = Vec::new();
        let mut h = start.div_euclid(HOUR);
        while h <= end.div_euclid(HOUR) {
            let (d, hr) = (h.div_euclid(24), h.rem_euclid(24));
            if let Some(f) = self.files.get(&(d as i32, hr as i32)) {
                files.extend(f.iter().cloned());
            }
            h += 1;
        }
        let (filter, words) = filter_of(finding, start, end, sensitive);
        finding.raw = RawEvents {
            filter: words,
            note,
            ..RawEvents::default()
        };
        (files, filter)
    }

    /// One scan of `files` for the rows any member wants, then each member's rows.
    async fn scan_group(
        &self,
        files: &[String],
        members: Vec<(usize, Expr)>,
    ) -> Result<Vec<(usize, Vec<RecordBatch>)>, ReportError> {
        let q = |e| ReportError::query("raw events", e);
        let urls = files
            .iter()
            .map(|f| ListingTableUrl::parse(format!("{LAKE_URL}{f}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReportError::query("raw files", e))?;
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(
                ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet"),
            )
            .with_schema(kvlake_schemas::raw::raw_file_schema());
        let table = ListingTable::try_new(config).map_err(|e| ReportError::query("raw", e))?;
        let any = members
            .iter()
            .map(|(_, f)| f.clone())
            .reduce(Expr::or)
            .unwrap_or_else(|| lit(false));
        let scanned = self
            .ctx
            .read_table(Arc::new(table))
            .map_err(q)?
            .filter(any)
            .map_err(q)?
            .select(SCANNED.iter().map(|c| col(*c)).collect::<Vec<_>>())
            .map_err(q)?;
        let schema = scanned.schema().inner().clone();
        let batches = scanned.collect().await.map_err(q)?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(members.into_iter().map(|(i, _)| (i, Vec::new())).collect());
        }
        let rows = Arc::new(MemTable::try_new(schema, vec![batches]).map_err(q)?);
        let mut out = Vec::with_capacity(members.len());
        for (i, filter) in members {
            let matching = self
                .ctx
                .read_table(rows.clone())
                .map_err(q)?
                .filter(filter)
                .map_err(q)?
                .select(vec![
                    col("time"),
                    col("operation_name"),
                    col("vault_name"),
                    identity().alias("identity"),
                    col("identity_upn"),
                    col("caller_ip_address"),
                    col("http_status_code"),
                    col("object_name"),
                    col("_source"),
                    col("_partition"),
                    col("_offset"),
                    col("_record_index"),
                ])
                .map_err(q)?
                .collect()
                .await
                .map_err(q)?;
            out.push((i, matching));
        }
        Ok(out)
    }
}

/// Raw columns a group's scan keeps: what the findings' filters and their rows read.
const SCANNED: [&str; 14] = [
    "time",
    "operation_name",
    "result_class",
    "vault_name",
    "identity_object_id",
    "identity_app_id",
    "identity_upn",
    "caller_ip_address",
    "http_status_code",
    "object_name",
    "_source",
    "_partition",
    "_offset",
    "_record_index",
];

/// Groups of findings scanned at once.
const SCANS_IN_FLIGHT: usize = 4;

/// Puts a finding's matching rows in its `raw`: how many, and the first `limit` by time and
/// source coordinates (a bounded lexicographic sort).
fn fill(
    finding: &mut Finding,
    matching: Vec<RecordBatch>,
    limit: usize,
) -> Result<(), ReportError> {
    let q_arrow = |e: ArrowError| ReportError::query("raw events", e.into());
    let total: usize = matching.iter().map(|b| b.num_rows()).sum();
    finding.raw.total = total as u64;
    let Some(first) = matching.first() else {
        return Ok(());
    };
    let all = concat_batches(&first.schema(), &matching).map_err(q_arrow)?;
    let order = ["time", "_source", "_partition", "_offset", "_record_index"]
        .iter()
        .map(|c| {
            Ok(SortColumn {
                values: all
                    .column_by_name(c)
                    .ok_or_else(|| {
                        ReportError::query(
                            "raw events",
                            DataFusionError::Internal(format!("no column {c}")),
                        )
                    })?
                    .clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: true,
                }),
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    let first_rows = lexsort_to_indices(&order, Some(limit)).map_err(q_arrow)?;
    let rows = vec![take_record_batch(&all, &first_rows).map_err(q_arrow)?];
    let r = Rows::from(rows);
    let (time, op, vault, id) = (
        r.micros("time")?,
        r.text("operation_name")?,
        r.text("vault_name")?,
        r.text("identity")?,
    );
    let (upn, ip, status, object) = (
        r.text("identity_upn")?,
        r.text("caller_ip_address")?,
        r.int("http_status_code")?,
        r.text("object_name")?,
    );
    let (source, partition, offset, index) = (
        r.text("_source")?,
        r.int("_partition")?,
        r.int("_offset")?,
        r.int("_record_index")?,
    );
    finding.raw.rows = (0..r.len())
        .map(|i| {
            let t = time[i].unwrap_or_default();
            RawEvent {
                time: t,
                time_text: format_timestamp_micros(t),
                operation: op[i].clone(),
                vault: vault[i].clone(),
                identity: id[i].clone(),
                upn: upn[i].clone(),
                ip: ip[i].clone(),
                status: status[i],
                object: object[i].clone(),
                source: source[i].clone(),
                partition: partition[i],
                offset: offset[i],
                record_index: index[i],
            }
        })
        .collect();
    Ok(())
}

/// The caller as the cold path names it (`events.sql`).
fn identity() -> Expr {
    lower(coalesce(vec![
        col("identity_object_id"),
        col("identity_app_id"),
        col("identity_upn"),
    ]))
}

fn texts(values: &[&str]) -> Vec<Expr> {
    values.iter().map(|v| lit(*v)).collect()
}

/// The raw rows a finding stands for, and the same in words.
fn filter_of(f: &Finding, start: i64, end: i64, sensitive: &[String]) -> (Expr, String) {
    let ts = |v: i64| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    };
    let mut e = col("time").gt_eq(ts(start)).and(col("time").lt_eq(ts(end)));
    let mut words = vec![format!(
        "time {} – {}",
        format_timestamp_micros(start),
        format_timestamp_micros(end)
    )];
    if let Some(v) = &f.vault {
        e = e.and(col("vault_name").eq(lit(v.clone())));
        words.push(format!("vault {v}"));
    }
    if let Some(i) = &f.identity {
        e = e.and(identity().eq(lit(i.to_lowercase())));
        words.push(format!("identity {i}"));
    }
    if let Some(ip) = &f.ip {
        e = e.and(col("caller_ip_address").eq(lit(ip.clone())));
        words.push(format!("caller IP {ip}"));
    }
    match f.kind.as_str() {
        "denied_burst" => {
            e = e.and(col("http_status_code").in_list(vec![lit(401i32), lit(403i32)], false));
            words.push("HTTP 401/403".into());
        }
        "mass_secret_retrieval" => {
            e = e
                .and(
                    col("operation_name")
                        .in_list(texts(&["SecretGet", "KeyGet", "VaultGet"]), false),
                )
                .and(col("result_class").eq(lit("success")));
            words.push("successful SecretGet, KeyGet, VaultGet".into());
        }
        "list_then_read" => {
            e = e.and(col("operation_name").in_list(texts(&["SecretList", "SecretGet"]), false));
            words.push("SecretList, SecretGet".into());
        }
        "sensitive_operation" if !sensitive.is_empty() => {
            let ops: Vec<Expr> = sensitive.iter().map(|s| lit(s.clone())).collect();
            e = e.and(col("operation_name").in_list(ops, false));
            words.push(sensitive.join(", "));
        }
        _ => {}
    }
    (e, words.join("; "))
}
