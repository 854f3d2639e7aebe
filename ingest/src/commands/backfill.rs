//! `kvlake backfill`: a time range of Key Vault audit history read straight from a Log
//! Analytics workspace (Logs Query API) into the raw table, hour by hour, exactly once.
//!
//! Per table: one count query (`summarize count() by bin(TimeGenerated, 1h)`) finds the
//! hours that hold rows and sizes their first slice; each hour is then read in slices
//! small enough for `--max-rows` and the API's limits (a cut or too-slow slice is
//! halved and read again), and every slice is a checkpointed batch of that hour's log
//! (`kvlake_hotpath::backfill`). See ARCHITECTURE.md, "Backfill from Log Analytics".

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use kvlake_hotpath::Lake;
use kvlake_hotpath::backfill::{HOUR_MICROS, HourState, SourceSink};
use kvlake_hotpath::publish::Tables;
use kvlake_schemas::time::{format_timestamp_micros, parse_date, parse_timestamp_micros};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::{BackfillArgs, HotArgs};
use crate::identity::{self, Identity};
use crate::loganalytics::{self, LogsClient, LogsError, Outcome, Table};
use crate::progress::Progress;
use crate::settings;

/// The API's own row limit per query.
const API_MAX_ROWS: usize = 500_000;
/// No slice is split below one second: its rows always fit the offsets it owns.
const MIN_SLICE: i64 = 1_000_000;
/// Attempts at a one-second slice the service keeps cutting before giving up.
const MIN_SLICE_ATTEMPTS: u32 = 3;

/// The two Log Analytics tables Key Vault's AuditEvent lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaTable {
    /// Resource-specific mode of the diagnostic setting.
    AzkvAuditLogs,
    /// Azure-diagnostics (legacy) mode: a table shared with other services.
    AzureDiagnostics,
}

impl LaTable {
    fn name(self) -> &'static str {
        match self {
            LaTable::AzkvAuditLogs => "AZKVAuditLogs",
            LaTable::AzureDiagnostics => "AzureDiagnostics",
        }
    }

    /// Only Key Vault's audit rows: `AzureDiagnostics` holds every service's logs.
    fn filter(self) -> &'static str {
        match self {
            LaTable::AzkvAuditLogs => "",
            LaTable::AzureDiagnostics => {
                " | where ResourceProvider == \"MICROSOFT.KEYVAULT\" and Category == \"AuditEvent\""
            }
        }
    }
}

/// `--table`: `all` reads both tables, skipping one the workspace does not have.
fn tables(arg: &str) -> Result<(Vec<LaTable>, bool)> {
    Ok(match arg.trim().to_ascii_lowercase().as_str() {
        "all" => (
            vec![LaTable::AzkvAuditLogs, LaTable::AzureDiagnostics],
            true,
        ),
        "azkvauditlogs" => (vec![LaTable::AzkvAuditLogs], false),
        "azurediagnostics" => (vec![LaTable::AzureDiagnostics], false),
        other => bail!("--table `{other}` is not one of all, AZKVAuditLogs, AzureDiagnostics"),
    })
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp, in µs.
fn instant(flag: &str, v: &str) -> Result<i64> {
    let v = v.trim();
    if let Some(days) = parse_date(v) {
        return Ok(days * 24 * HOUR_MICROS);
    }
    parse_timestamp_micros(v).ok_or_else(|| {
        anyhow!("--{flag} `{v}` is not a date or time (write 2026-11-01 or 2026-11-01T06:00:00Z)")
    })
}

/// The source name of a table of a workspace: the `_source` of its rows and the topic
/// of its hours' checkpoint logs.
pub fn source_name(workspace: &str, table: &str) -> String {
    format!("loganalytics-{}-{table}", workspace.to_ascii_lowercase())
}

/// What is shared by every hour of one table.
struct Ctx {
    client: Arc<LogsClient>,
    table: LaTable,
    to: i64,
    max_rows: usize,
    shutdown: CancellationToken,
    progress: Progress,
}

fn kql_time(us: i64) -> String {
    format_timestamp_micros(us)
}

impl Ctx {
    fn where_time(&self, a: i64, b: i64) -> String {
        format!(
            "{} | where TimeGenerated >= datetime({}) and TimeGenerated < datetime({}){}",
            self.table.name(),
            kql_time(a),
            kql_time(b),
            self.table.filter()
        )
    }

    fn timespan(a: i64, b: i64) -> String {
        format!("{}/{}", kql_time(a), kql_time(b))
    }

    /// Rows per hour that holds any, in `[from, to)`.
    async fn hours(&self, from: i64, to: i64) -> Result<Vec<(i32, u64)>, LogsError> {
        let q = format!(
            "{} | summarize n = count() by bin(TimeGenerated, 1h)",
            self.where_time(from, to)
        );
        let table = match self
            .client
            .query(self.table.name(), &q, &Self::timespan(from, to))
            .await?
        {
            Outcome::Complete(t) => t,
            // Counting cannot be cut by size; a timeout means: assume every hour.
            Outcome::TooBig(why) => {
                tracing::warn!(reason = %why, "backfill: the hour count did not finish; reading every hour");
                let hours = (from.div_euclid(HOUR_MICROS)..=(to - 1).div_euclid(HOUR_MICROS))
                    .filter_map(|h| i32::try_from(h).ok())
                    .map(|h| (h, 0))
                    .collect();
                return Ok(hours);
            }
        };
        let col = |name: &str| table.columns.iter().position(|c| c.name == name);
        let (Some(t), Some(n)) = (col("TimeGenerated"), col("n")) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(i32, u64)> = table
            .rows
            .iter()
            .filter_map(|r| {
                let us = parse_timestamp_micros(r.get(t)?.as_str()?)?;
                let count = r
                    .get(n)?
                    .as_u64()
                    .or_else(|| r.get(n)?.as_f64().map(|f| f as u64))?;
                Some((i32::try_from(us.div_euclid(HOUR_MICROS)).ok()?, count))
            })
            .filter(|&(_, c)| c > 0)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The rows of `[a, b)` (absolute µs), as JSON objects in their final order, or why
    /// the slice must be smaller.
    async fn fetch(&self, a: i64, b: i64) -> Result<Result<Vec<Vec<u8>>, String>, LogsError> {
        let q = format!(
            "{} | order by TimeGenerated asc | take {}",
            self.where_time(a, b),
            self.max_rows + 1
        );
        match self
            .client
            .query(self.table.name(), &q, &Self::timespan(a, b))
            .await?
        {
            Outcome::TooBig(why) => Ok(Err(why)),
            Outcome::Complete(t) if t.rows.len() > self.max_rows => Ok(Err(format!(
                "more than {} rows (--max-rows)",
                self.max_rows
            ))),
            Outcome::Complete(t) => Ok(Ok(rows_of(t, a, b))),
        }
    }

    /// Every row of `[a, b)`, splitting as often as the service asks (a re-run of an
    /// uncommitted slice must commit exactly its range, whatever size it turns out to be).
    async fn fetch_all(&self, a: i64, b: i64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut todo = vec![(a, b, 0u32)];
        while let Some((x, y, tries)) = todo.pop() {
            match self.fetch(x, y).await? {
                Ok(rows) => out.extend(rows),
                Err(why) if y - x > MIN_SLICE => {
                    let mid = x + ((y - x) / 2 / MIN_SLICE).max(1) * MIN_SLICE;
                    tracing::info!(reason = %why, "backfill: slice too big; splitting");
                    // Popped last-in first: the earlier half first, so rows stay in order.
                    todo.push((mid, y, 0));
                    todo.push((x, mid, 0));
                }
                Err(_) if tries + 1 < MIN_SLICE_ATTEMPTS => todo.push((x, y, tries + 1)),
                Err(why) => return Err(too_dense(self, x, y, &why)),
            }
        }
        Ok(out)
    }
}

fn too_dense(ctx: &Ctx, a: i64, b: i64, why: &str) -> anyhow::Error {
    anyhow!(
        "{} {}..{} cannot be read in one query even as a one-second slice ({why}): raise --max-rows (at most {API_MAX_ROWS})",
        ctx.table.name(),
        kql_time(a),
        kql_time(b)
    )
}

/// Each row as a JSON object by column name (nulls left out, `dynamic` columns, which
/// the API returns as JSON text, parsed back), only rows of `[a, b)`, sorted by time and
/// then by their bytes: the order, and so the offsets, depend only on the rows.
fn rows_of(t: Table, a: i64, b: i64) -> Vec<Vec<u8>> {
    let time_col = t.columns.iter().position(|c| c.name == "TimeGenerated");
    let mut rows: Vec<(i64, Vec<u8>)> = Vec::with_capacity(t.rows.len());
    for row in t.rows {
        let time = time_col
            .and_then(|i| row.get(i))
            .and_then(Value::as_str)
            .and_then(parse_timestamp_micros);
        // The where clause already bounds the slice; this keeps a service that reads the
        // timespan's end as inclusive from giving a boundary row to two slices.
        if time.is_some_and(|t| t < a || t >= b) {
            continue;
        }
        let mut obj = serde_json::Map::with_capacity(row.len());
        for (col, v) in t.columns.iter().zip(row) {
            let v = match v {
                Value::Null => continue,
                Value::String(s) if col.kind == "dynamic" => {
                    match serde_json::from_str::<Value>(&s) {
                        Ok(parsed @ (Value::Object(_) | Value::Array(_))) => parsed,
                        _ => Value::String(s),
                    }
                }
                v => v,
            };
            obj.insert(col.name.clone(), v);
        }
        let bytes = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
        rows.push((time.unwrap_or(a), bytes));
    }
    rows.sort_unstable();
    rows.into_iter().map(|(_, r)| r).collect()
}

/// What loading one hour came to.
#[derive(Debug, Default, Clone, Copy)]
struct HourReport {
    rows: u64,
    dead_letters: u64,
    slices: u64,
    splits: u64,
    /// Hours found complete in the lake.
    already: u64,
    stopped: bool,
}

async fn load_hour(ctx: &Ctx, sink: &SourceSink, hour: i32, counted: u64) -> Result<HourReport> {
    let mut log = sink.hour(hour).await?;
    let base = i64::from(hour) * HOUR_MICROS;
    let end = (ctx.to - base).min(HOUR_MICROS);
    let mut report = HourReport::default();
    if let HourState::Rerun { start, end: e } = *log.state() {
        // A slice planned before a crash: the same range again, so the same files.
        tracing::info!(hour = %kql_time(base), offsets = %format!("{start}..{e}"), "backfill: re-running an uncommitted slice");
        let rows = ctx.fetch_all(base + start, base + e).await?;
        let n = rows.len() as u64;
        let w = log.commit(start, e, rows).await?;
        ctx.progress.inc(n);
        report.rows += w.raw_rows;
        report.dead_letters += w.dead_letter_rows;
        report.slices += 1;
    }
    let HourState::From(mut pos) = *log.state() else {
        bail!("the log of hour {} did not move on", kql_time(base));
    };
    if pos >= end {
        report.already = u64::from(report.slices == 0);
        ctx.progress.inc(counted);
        return Ok(report);
    }
    // Enough slices for the counted rows to fit with room to spare, whole seconds each.
    let slices = counted
        .div_ceil((ctx.max_rows as u64 * 4 / 5).max(1))
        .max(1) as i64;
    let per_slice = ((end - pos) + slices - 1) / slices;
    let mut width = (per_slice + MIN_SLICE - 1) / MIN_SLICE * MIN_SLICE;
    let mut tries = 0u32;
    while pos < end {
        if ctx.shutdown.is_cancelled() {
            report.stopped = true;
            break;
        }
        let b = (pos + width).min(end);
        match ctx.fetch(base + pos, base + b).await? {
            Ok(rows) => {
                let n = rows.len() as u64;
                let w = log.commit(pos, b, rows).await?;
                ctx.progress.inc(n);
                report.rows += w.raw_rows;
                report.dead_letters += w.dead_letter_rows;
                report.slices += 1;
                pos = b;
                tries = 0;
            }
            Err(why) if b - pos > MIN_SLICE => {
                width = ((b - pos) / 2 / MIN_SLICE).max(1) * MIN_SLICE;
                report.splits += 1;
                tracing::info!(hour = %kql_time(base), reason = %why, width_s = width / MIN_SLICE, "backfill: slice too big; splitting");
            }
            Err(why) => {
                tries += 1;
                if tries >= MIN_SLICE_ATTEMPTS {
                    return Err(too_dense(ctx, base + pos, base + b, &why));
                }
            }
        }
    }
    Ok(report)
}

/// The lake and the service identity, from the same settings as `kvlake hot`.
async fn open(args: &BackfillArgs) -> Result<(Lake, Identity, identity::http::ExtraRoots)> {
    let hot = HotArgs {
        config: args.lake.config.clone(),
        lake: args.lake.lake.clone(),
        storage_option: args.lake.storage_option.clone(),
        storage_auth: args.lake.storage_auth.clone(),
        credential: args.credential.clone(),
        client_id: args.client_id.clone(),
        tenant_id: args.tenant_id.clone(),
        ca_file: args.ca_file.clone(),
        ..HotArgs::default()
    };
    let (lake, prepared) = super::cold::open_lake_with(&hot).await?;
    let identity = match prepared.identity.clone() {
        Some(id) => id,
        None => {
            let mut opts = settings::identity_options(&prepared.settings)?;
            opts.client_secret = prepared.settings.client_secret.clone();
            opts.client_certificate_password =
                prepared.settings.client_certificate_password.clone();
            Identity::new(&opts, &identity::http::client(&prepared.roots)?)?
        }
    };
    Ok((lake, identity, prepared.roots))
}

pub async fn run(args: &BackfillArgs, shutdown: CancellationToken) -> Result<()> {
    let workspace = args.workspace.trim().to_ascii_lowercase();
    if !loganalytics::is_workspace_id(&workspace) {
        bail!(
            "--workspace `{}` is not a workspace id: use the workspace's Workspace ID, the GUID on its Overview page (`az monitor log-analytics workspace show --query customerId`), not its name or resource id",
            args.workspace.trim()
        );
    }
    let from = instant("from", &args.from)?;
    let to = instant("to", &args.to)?;
    if from.rem_euclid(HOUR_MICROS) != 0 {
        bail!(
            "--from {} is not on a whole hour (UTC): backfill loads whole hours, so that overlapping and repeated ranges never load a row twice",
            args.from.trim()
        );
    }
    if to <= from {
        bail!("--to must be after --from");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    if to > now {
        bail!(
            "--to {} is in the future: rows arriving later would not be read again; backfill up to now at most",
            args.to.trim()
        );
    }
    if to > now - 15 * 60 * 1_000_000 {
        tracing::warn!(
            "--to is less than 15 minutes ago: Log Analytics may still be ingesting rows of the last minutes, and a loaded hour is not read again"
        );
    }
    if args.max_rows == 0 || args.max_rows > API_MAX_ROWS {
        bail!("--max-rows must be between 1 and {API_MAX_ROWS} (the Logs Query API's limit)");
    }
    let (tables, skip_missing) = tables(&args.table)?;
    let endpoint = args.endpoint.trim().trim_end_matches('/').to_string();
    url::Url::parse(&endpoint)
        .ok()
        .filter(|u| u.scheme() == "https" || u.scheme() == "http")
        .with_context(|| format!("--endpoint `{endpoint}` is not an https:// URL"))?;
    let (lake, identity, roots) = open(args).await?;
    let scope = args
        .token_scope
        .clone()
        .unwrap_or_else(|| loganalytics::default_scope(&endpoint));
    let http = {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // The service gives up first (Prefer: wait); this only catches a dead peer.
            .timeout(args.query_timeout.min(Duration::from_secs(600)) + Duration::from_secs(60));
        if let Some(pem) = &roots.pem {
            b = b.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem).context("--ca-file")?);
        }
        b.build()
            .context("cannot build the HTTPS client for Log Analytics")?
    };
    let client = Arc::new(LogsClient::new(
        http,
        &endpoint,
        &workspace,
        identity,
        scope,
        args.query_timeout,
        args.max_retries,
    ));
    let lake_tables = Tables::open(&lake).await?;
    let writer = format!("backfill-pid{}", std::process::id());
    let progress = Progress::new("backfill", "rows");
    let started = Instant::now();
    tracing::info!(workspace = %workspace, endpoint = %endpoint, from = %kql_time(from), to = %kql_time(to), lake = %lake.display(), "kvlake backfill starting");
    let mut total_rows = 0u64;
    let mut stopped = false;
    for table in tables {
        let ctx = Arc::new(Ctx {
            client: client.clone(),
            table,
            to,
            max_rows: args.max_rows,
            shutdown: shutdown.clone(),
            progress: progress.clone(),
        });
        let t0 = Instant::now();
        let hours = match ctx.hours(from, to).await {
            Ok(h) => h,
            Err(LogsError::NoSuchTable { .. }) if skip_missing => {
                println!(
                    "backfill: workspace {workspace} has no {} table; skipped",
                    table.name()
                );
                continue;
            }
            Err(e @ LogsError::NoSuchTable { .. }) => {
                return Err(anyhow!(
                    "{e} (a diagnostic setting in resource-specific mode writes AZKVAuditLogs, in Azure-diagnostics mode AzureDiagnostics; --table all reads whichever exists)"
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let counted: u64 = hours.iter().map(|(_, n)| n).sum();
        progress.add_total(counted);
        let sink = SourceSink::new(
            &lake,
            &lake_tables,
            &source_name(&workspace, table.name()),
            &writer,
        );
        let before = (
            client.counters.queries.load(Relaxed),
            client.counters.throttled.load(Relaxed),
            client.counters.too_big.load(Relaxed),
        );
        let sum = futures::stream::iter(hours.iter().copied())
            .map(|(hour, n)| {
                let (ctx, sink) = (ctx.clone(), sink.clone());
                async move { load_hour(&ctx, &sink, hour, n).await }
            })
            .buffer_unordered(args.parallel.max(1))
            .try_fold(HourReport::default(), |mut acc, r| async move {
                acc.rows += r.rows;
                acc.dead_letters += r.dead_letters;
                acc.slices += r.slices;
                acc.splits += r.splits;
                acc.already += r.already;
                acc.stopped = acc.stopped || r.stopped;
                Ok(acc)
            })
            .await
            .with_context(|| {
                format!(
                    "backfill of {} stopped; run the same command again to resume",
                    table.name()
                )
            })?;
        let secs = t0.elapsed().as_secs_f64();
        let queries = client.counters.queries.load(Relaxed) - before.0;
        let throttled = client.counters.throttled.load(Relaxed) - before.1;
        let cut = client.counters.too_big.load(Relaxed) - before.2;
        println!(
            "backfill: {} of workspace {workspace}, {} to {}: {} hours with rows ({} already in the lake), {} slices written ({} split), {} rows, {} dead letters; {} queries ({} throttled, {} cut), {:.1} s, {:.0} rows/s",
            table.name(),
            kql_time(from),
            kql_time(to),
            hours.len(),
            sum.already,
            sum.slices,
            sum.splits,
            sum.rows,
            sum.dead_letters,
            queries,
            throttled,
            cut,
            secs,
            sum.rows as f64 / secs.max(1e-3)
        );
        total_rows += sum.rows + sum.dead_letters;
        stopped |= sum.stopped;
        if stopped {
            break;
        }
    }
    progress.finish(if stopped { "stopped" } else { "done" });
    if stopped {
        println!("backfill: stopped by a signal; run the same command again to resume");
    } else if total_rows == 0 {
        println!(
            "backfill: nothing new in {} to {} (every hour with rows is in the lake already)",
            kql_time(from),
            kql_time(to)
        );
    }
    tracing::info!(
        rows = total_rows,
        took_s = started.elapsed().as_secs_f64(),
        "kvlake backfill finished"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[(&str, &str)], rows: Vec<Vec<Value>>) -> Table {
        serde_json::from_value(serde_json::json!({
            "name": "PrimaryResult",
            "columns": columns.iter().map(|(n, t)| serde_json::json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "rows": rows,
        }))
        .unwrap()
    }

    #[test]
    fn rows_become_objects_in_an_order_that_depends_only_on_the_rows() {
        let a = parse_timestamp_micros("2026-11-01T10:00:00Z").unwrap();
        let b = a + HOUR_MICROS;
        let cols = [
            ("TimeGenerated", "datetime"),
            ("Identity", "dynamic"),
            ("Id", "string"),
        ];
        let r1 = vec![
            Value::from("2026-11-01T10:00:05.1234567Z"),
            Value::from("{\"claim\":{\"oid\":\"x\"}}"),
            Value::from("b"),
        ];
        let r2 = vec![
            Value::from("2026-11-01T10:00:05.1234567Z"),
            Value::Null,
            Value::from("a"),
        ];
        // The end is exclusive even if the service's timespan is not.
        let r3 = vec![
            Value::from("2026-11-01T11:00:00Z"),
            Value::Null,
            Value::from("c"),
        ];
        let one = rows_of(table(&cols, vec![r1.clone(), r2.clone(), r3.clone()]), a, b);
        let two = rows_of(table(&cols, vec![r3, r2, r1]), a, b);
        assert_eq!(one, two);
        assert_eq!(one.len(), 2);
        let parsed: Vec<Value> = one
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect();
        let with = parsed.iter().find(|r| r["Id"] == "b").unwrap();
        assert_eq!(with["Identity"]["claim"]["oid"], "x", "dynamic text parsed");
        let without = parsed.iter().find(|r| r["Id"] == "a").unwrap();
        assert!(without.get("Identity").is_none(), "nulls left out");
    }

    #[test]
    fn ranges_and_tables_are_checked() {
        assert_eq!(
            instant("from", "2026-11-01").unwrap(),
            parse_timestamp_micros("2026-11-01T00:00:00Z").unwrap()
        );
        assert!(instant("from", "yesterday").is_err());
        assert_eq!(tables("all").unwrap().0.len(), 2);
        assert_eq!(
            tables("AZKVAuditLogs").unwrap().0,
            vec![LaTable::AzkvAuditLogs]
        );
        assert!(tables("AzureActivity").is_err());
        assert_eq!(
            source_name("0B4A5C7E-1D2F-4A3B-9C8D-7E6F5A4B3C2D", "AZKVAuditLogs"),
            "loganalytics-0b4a5c7e-1d2f-4a3b-9c8d-7e6f5a4b3c2d-AZKVAuditLogs"
        );
    }
}
