//! The report's queries: DataFusion over the cold path's tables (held in memory for the
//! period) and the speed layer's alerts, shaped into [`ReportData`]'s plain values.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use kvlake_schemas::time::format_date;

use super::error::ReportError;
use super::model::*;
use super::tables::Loaded;

/// Kinds the cold path writes, in the order the report lists them.
pub const ANOMALY_KINDS: &[&str] = &[
    "sensitive_operation",
    "mass_secret_retrieval",
    "list_then_read",
    "denied_burst",
    "unusual_volume",
    "new_identity_on_vault",
    "new_ip_for_identity",
];

/// The top identities shown in the secret-read and denied charts.
const TOP: usize = 10;
/// First-seen pairs listed under their chart.
const NEW_LISTED: usize = 40;

/// A query's result, read column by column whatever types DataFusion chose.
#[derive(Debug)]
pub struct Rows(Vec<RecordBatch>);

impl From<Vec<RecordBatch>> for Rows {
    fn from(batches: Vec<RecordBatch>) -> Rows {
        Rows(batches)
    }
}

impl Rows {
    fn column(&self, name: &str, to: &DataType) -> Result<Vec<Arc<dyn Array>>, ReportError> {
        self.0
            .iter()
            .map(|b| {
                let c = b
                    .column_by_name(name)
                    .ok_or_else(|| ReportError::table("result", format!("no column `{name}`")))?;
                cast(c, to).map_err(|e| ReportError::table("result", e))
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn text(&self, name: &str) -> Result<Vec<Option<String>>, ReportError> {
        let mut out = Vec::with_capacity(self.len());
        for c in self.column(name, &DataType::Utf8)? {
            let s = c.as_string::<i32>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
        }
        Ok(out)
    }

    pub fn int(&self, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
        let mut out = Vec::with_capacity(self.len());
        for c in self.column(name, &DataType::Int64)? {
            let s = c.as_primitive::<Int64Type>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i))));
        }
        Ok(out)
    }

    pub fn float(&self, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
        let mut out = Vec::with_capacity(self.len());
        for c in self.column(name, &DataType::Float64)? {
            let s = c.as_primitive::<Float64Type>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i))));
        }
        Ok(out)
    }

    /// Dates as day numbers.
    pub fn day(&self, name: &str) -> Result<Vec<Option<i32>>, ReportError> {
        let mut out = Vec::with_capacity(self.len());
        for c in self.column(name, &DataType::Date32)? {
            let s = c.as_primitive::<Date32Type>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i))));
        }
        Ok(out)
    }

    /// Timestamps as UTC microseconds.
    pub fn micros(&self, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
        let mut out = Vec::with_capacity(self.len());
        for c in self.column(name, &ts)? {
            let c = cast(&c, &DataType::Int64).map_err(|e| ReportError::table("result", e))?;
            let s = c.as_primitive::<Int64Type>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i))));
        }
        Ok(out)
    }
}

/// A SQL string literal (vault names come from the command line).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn date_lit(day: i32) -> String {
    format!("DATE '{}'", format_date(i64::from(day)))
}

/// The tables of one report, registered in one DataFusion session.
pub struct Queries {
    ctx: SessionContext,
    first: i32,
    last: i32,
    vault: Option<String>,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries")
            .field("first", &self.first)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Queries {
    pub fn new(first: i32, last: i32, vault: Option<String>) -> Queries {
        let config = datafusion::prelude::SessionConfig::new().with_information_schema(false);
        Queries {
            ctx: SessionContext::new_with_config(config),
            first,
            last,
            vault,
        }
    }

    pub fn register(&self, name: &str, table: Loaded) -> Result<(), ReportError> {
        let mem = MemTable::try_new(table.schema, vec![table.batches])
            .map_err(|e| ReportError::query(name, e))?;
        self.ctx
            .register_table(name, Arc::new(mem))
            .map(|_| ())
            .map_err(|e| ReportError::query(name, e))
    }

    pub async fn rows(&self, what: &str, sql: &str) -> Result<Rows, ReportError> {
        let df = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| ReportError::query(what, e))?;
        Ok(Rows(
            df.collect()
                .await
                .map_err(|e| ReportError::query(what, e))?,
        ))
    }

    fn in_period(&self) -> String {
        format!(
            "date >= {} AND date <= {}",
            date_lit(self.first),
            date_lit(self.last)
        )
    }

    fn vault_clause(&self, column: &str) -> String {
        self.vault
            .as_deref()
            .map_or(String::new(), |v| format!(" AND {column} = {}", quote(v)))
    }

    /// Days of the period the lake has data for (days of `vault_daily`).
    pub async fn lake_days(&self) -> Result<Vec<i32>, ReportError> {
        let r = self
            .rows(
                "lake days",
                &format!(
                    "SELECT DISTINCT date FROM vault_daily WHERE {} ORDER BY date",
                    self.in_period()
                ),
            )
            .await?;
        Ok(r.day("date")?.into_iter().flatten().collect())
    }

    /// Calls per day of each vault with its baseline and band, busiest vault first.
    pub async fn vault_calls(
        &self,
        lake_days: &[i32],
        settings: &DrawSettings,
    ) -> Result<Vec<VaultSeries>, ReportError> {
        let sql = format!(
            "WITH c AS (
               SELECT vault_name, date, SUM(operations) AS calls FROM vault_daily
               WHERE vault_name IS NOT NULL AND {p}{v} GROUP BY vault_name, date)
             SELECT c.vault_name, c.date, c.calls, b.mean_28, b.stddev_28, b.days_28
             FROM c LEFT JOIN baselines b
               ON b.scope = 'vault' AND b.metric = 'operations'
              AND b.vault_name = c.vault_name AND b.date = c.date
             ORDER BY c.vault_name, c.date",
            p = self.in_period(),
            v = self.vault_clause("vault_name"),
        );
        let r = self.rows("calls per vault", &sql).await?;
        let (vaults, dates, calls) = (r.text("vault_name")?, r.day("date")?, r.int("calls")?);
        let (means, sds, d28) = (
            r.float("mean_28")?,
            r.float("stddev_28")?,
            r.int("days_28")?,
        );
        let mut by_vault: BTreeMap<String, BTreeMap<i32, VaultDay>> = BTreeMap::new();
        for i in 0..r.len() {
            let (Some(vault), Some(day)) = (vaults[i].clone(), dates[i]) else {
                continue;
            };
            let (low, high) = band(means[i], sds[i], d28[i], settings);
            by_vault.entry(vault).or_default().insert(
                day,
                VaultDay {
                    date: format_date(i64::from(day)),
                    calls: calls[i].unwrap_or(0),
                    mean_28: means[i],
                    stddev_28: sds[i],
                    days_28: d28[i],
                    low,
                    high,
                    anomalies: Vec::new(),
                },
            );
        }
        let mut out: Vec<VaultSeries> = by_vault
            .into_iter()
            .map(|(vault, mut days)| {
                // A lake day without a call on the vault is a zero, not a gap.
                for d in lake_days {
                    days.entry(*d).or_insert_with(|| VaultDay {
                        date: format_date(i64::from(*d)),
                        calls: 0,
                        mean_28: None,
                        stddev_28: None,
                        days_28: None,
                        low: None,
                        high: None,
                        anomalies: Vec::new(),
                    });
                }
                let days: Vec<VaultDay> = days.into_values().collect();
                VaultSeries {
                    total: days.iter().map(|d| d.calls).sum(),
                    vault,
                    days,
                }
            })
            .collect();
        out.sort_by(|a, b| b.total.cmp(&a.total).then(a.vault.cmp(&b.vault)));
        Ok(out)
    }

    /// Distinct identities in the period (on the vault, with `--vault`).
    pub async fn identities(&self) -> Result<i64, ReportError> {
        let r = self
            .rows(
                "identities",
                &format!(
                    "SELECT COUNT(DISTINCT identity) AS n FROM identity_daily WHERE {}{}",
                    self.in_period(),
                    self.vault_clause("vault_name")
                ),
            )
            .await?;
        Ok(r.int("n")?.first().copied().flatten().unwrap_or(0))
    }

    /// (date, identity) pairs active on the `--vault` vault: anomalies without a vault
    /// (mass retrieval, new IP) are shown when their identity used the vault that day.
    pub async fn active_on_vault(&self) -> Result<Option<BTreeSet<(i32, String)>>, ReportError> {
        if self.vault.is_none() {
            return Ok(None);
        }
        let r = self
            .rows(
                "identities on the vault",
                &format!(
                    "SELECT DISTINCT date, identity FROM identity_daily WHERE {}{}",
                    self.in_period(),
                    self.vault_clause("vault_name")
                ),
            )
            .await?;
        let (d, i) = (r.day("date")?, r.text("identity")?);
        Ok(Some(
            d.into_iter()
                .zip(i)
                .filter_map(|(d, i)| Some((d?, i?)))
                .collect(),
        ))
    }

    /// Anomaly counts by kind over the whole lake.
    pub async fn kinds_in_lake(&self) -> Result<BTreeMap<String, u64>, ReportError> {
        let r = self
            .rows(
                "anomaly kinds",
                "SELECT kind, COUNT(*) AS n FROM anomalies GROUP BY kind",
            )
            .await?;
        let (k, n) = (r.text("kind")?, r.int("n")?);
        Ok(k.into_iter()
            .zip(n)
            .filter_map(|(k, n)| Some((k?, u64::try_from(n.unwrap_or(0)).unwrap_or(0))))
            .collect())
    }

    /// The anomalies of the period, in time order.
    pub async fn anomalies(&self) -> Result<Vec<Finding>, ReportError> {
        let sql = format!(
            "SELECT date, kind, subject_type, subject, vault_name, identity, ip, window_start,
                    window_end, observed, baseline, score, description
             FROM anomalies WHERE {}
             ORDER BY date, window_start, kind, subject, vault_name, identity, ip",
            self.in_period()
        );
        let r = self.rows("anomalies", &sql).await?;
        findings(&r, "anomaly", false)
    }

    /// The speed layer's alerts of the period, whatever columns its table has of the
    /// ones the report shows.
    pub async fn alerts(
        &self,
        schema: &arrow::datatypes::Schema,
    ) -> Result<Vec<Finding>, ReportError> {
        let has = |c: &str| schema.field_with_name(c).is_ok();
        let pick = |c: &str, ty: &str| {
            if has(c) {
                c.to_string()
            } else {
                format!("CAST(NULL AS {ty}) AS {c}")
            }
        };
        let time = ["window_start", "event_time", "detected_at"]
            .into_iter()
            .find(|c| has(c));
        let start = time.map_or("CAST(NULL AS TIMESTAMP) AS window_start".to_string(), |c| {
            format!("{c} AS window_start")
        });
        let sql = format!(
            "SELECT date, {kind}, {id}, {st}, {subject}, {vault}, {identity}, {ip}, {start},
                    {end}, {observed}, {threshold} AS baseline, CAST(NULL AS DOUBLE) AS score,
                    {description}
             FROM alerts WHERE {p}
             ORDER BY date, window_start, kind, alert_id",
            kind = pick("kind", "VARCHAR"),
            id = pick("alert_id", "VARCHAR"),
            st = pick("subject_type", "VARCHAR"),
            subject = pick("subject", "VARCHAR"),
            vault = pick("vault_name", "VARCHAR"),
            identity = pick("identity", "VARCHAR"),
            ip = pick("ip", "VARCHAR"),
            end = pick("window_end", "TIMESTAMP"),
            observed = pick("observed", "DOUBLE"),
            threshold = if has("threshold") {
                "threshold"
            } else {
                "CAST(NULL AS DOUBLE)"
            },
            description = pick("description", "VARCHAR"),
            p = self.in_period(),
        );
        let r = self.rows("alerts", &sql).await?;
        findings(&r, "alert", true)
    }

    /// The top identities by secret reads, with their usual day.
    pub async fn top_readers(
        &self,
        lake_days: usize,
        warmup: u32,
    ) -> Result<Vec<Reader>, ReportError> {
        let sql = format!(
            "WITH d AS (
               SELECT identity, date, MAX(upn) AS upn, SUM(secret_reads) AS reads
               FROM identity_daily WHERE {p}{v} GROUP BY identity, date),
             t AS (
               SELECT identity, MAX(upn) AS upn, SUM(reads) AS reads,
                      COUNT(*) AS active_days, MAX(reads) AS busiest_reads
               FROM d GROUP BY identity HAVING SUM(reads) > 0)
             SELECT t.identity, t.upn, t.reads, t.active_days, t.busiest_reads,
                    MIN(d.date) AS busiest_date
             FROM t JOIN d ON d.identity = t.identity AND d.reads = t.busiest_reads
             GROUP BY t.identity, t.upn, t.reads, t.active_days, t.busiest_reads
             ORDER BY t.reads DESC, t.identity LIMIT {TOP}",
            p = self.in_period(),
            v = self.vault_clause("vault_name"),
        );
        let r = self.rows("top readers", &sql).await?;
        let (ids, upns, reads) = (r.text("identity")?, r.text("upn")?, r.int("reads")?);
        let (active, busiest, bday) = (
            r.int("active_days")?,
            r.int("busiest_reads")?,
            r.day("busiest_date")?,
        );
        let mut readers = Vec::new();
        for i in 0..r.len() {
            let Some(identity) = ids[i].clone() else {
                continue;
            };
            readers.push(Reader {
                identity,
                upn: upns[i].clone(),
                reads: reads[i].unwrap_or(0),
                active_days: active[i].unwrap_or(0),
                busiest_date: bday[i]
                    .map(|d| format_date(i64::from(d)))
                    .unwrap_or_default(),
                busiest_reads: busiest[i].unwrap_or(0),
                usual_per_day: None,
                usual_date: None,
                usual_for_period: None,
            });
        }
        if readers.is_empty() {
            return Ok(readers);
        }
        let list = readers
            .iter()
            .map(|r| quote(&r.identity))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT identity, date, mean_28, days_28 FROM baselines
             WHERE scope = 'identity' AND metric = 'secret_reads' AND {} AND identity IN ({list})
             ORDER BY identity, date",
            self.in_period()
        );
        let b = self.rows("usual reads", &sql).await?;
        let (ids, days, means, d28) = (
            b.text("identity")?,
            b.day("date")?,
            b.float("mean_28")?,
            b.int("days_28")?,
        );
        let mut usual: BTreeMap<String, Vec<(i32, f64, i64)>> = BTreeMap::new();
        for i in 0..b.len() {
            if let (Some(id), Some(day), Some(mean)) = (ids[i].clone(), days[i], means[i]) {
                usual
                    .entry(id)
                    .or_default()
                    .push((day, mean, d28[i].unwrap_or(0)));
            }
        }
        for reader in &mut readers {
            let Some(rows) = usual.get(&reader.identity) else {
                continue;
            };
            // Its usual day before the period's events: the first day with a week of
            // history, else the latest with any.
            let pick = rows
                .iter()
                .find(|(_, _, d)| *d >= i64::from(warmup))
                .or_else(|| rows.iter().rev().find(|(_, _, d)| *d >= 1));
            if let Some((day, mean, _)) = pick {
                reader.usual_per_day = Some(*mean);
                reader.usual_date = Some(format_date(i64::from(*day)));
                reader.usual_for_period = Some(mean * lake_days as f64);
            }
        }
        Ok(readers)
    }

    /// First-seen identities on vaults and IPs per identity, per day and listed.
    pub async fn new_subjects(
        &self,
        lake_days: &[i32],
        warmup: u32,
        on_vault: Option<&BTreeSet<(i32, String)>>,
    ) -> Result<(Vec<NewDay>, Vec<NewSubject>, usize), ReportError> {
        let ages = self
            .rows(
                "lake age",
                &format!(
                    "SELECT date, MAX(lake_age) AS lake_age FROM baselines WHERE {} GROUP BY date",
                    self.in_period()
                ),
            )
            .await?;
        let age: BTreeMap<i32, i64> = ages
            .day("date")?
            .into_iter()
            .zip(ages.int("lake_age")?)
            .filter_map(|(d, a)| Some((d?, a?)))
            .collect();
        let sql = format!(
            "SELECT date, scope, vault_name, identity, ip, value FROM baselines
             WHERE metric = 'operations' AND scope IN ('vault_identity', 'identity_ip')
               AND first_seen = date AND {}
             ORDER BY date DESC, value DESC, identity, vault_name, ip",
            self.in_period()
        );
        let r = self.rows("first seen", &sql).await?;
        let (days, scopes, vaults, ids, ips, values) = (
            r.day("date")?,
            r.text("scope")?,
            r.text("vault_name")?,
            r.text("identity")?,
            r.text("ip")?,
            r.int("value")?,
        );
        let mut per_day: BTreeMap<i32, (i64, i64)> =
            lake_days.iter().map(|d| (*d, (0, 0))).collect();
        let mut listed = Vec::new();
        let mut total = 0;
        for i in 0..r.len() {
            let (Some(day), Some(scope), Some(identity)) =
                (days[i], scopes[i].as_deref(), ids[i].clone())
            else {
                continue;
            };
            let on_vault_scope = scope == "vault_identity";
            if let Some(v) = &self.vault {
                let keep = if on_vault_scope {
                    vaults[i].as_deref() == Some(v.as_str())
                } else {
                    on_vault.is_some_and(|s| s.contains(&(day, identity.clone())))
                };
                if !keep {
                    continue;
                }
            }
            let e = per_day.entry(day).or_default();
            if on_vault_scope {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
            if age.get(&day).copied().unwrap_or(0) >= i64::from(warmup) {
                total += 1;
                if listed.len() < NEW_LISTED {
                    listed.push(NewSubject {
                        date: format_date(i64::from(day)),
                        what: if on_vault_scope {
                            "identity_on_vault"
                        } else {
                            "ip_for_identity"
                        },
                        identity,
                        vault: vaults[i].clone().filter(|v| !v.is_empty()),
                        ip: ips[i].clone().filter(|v| !v.is_empty()),
                        calls: values[i].unwrap_or(0),
                    });
                }
            }
        }
        let days = per_day
            .into_iter()
            .map(|(d, (v, ip))| NewDay {
                date: format_date(i64::from(d)),
                lake_age: age.get(&d).copied().unwrap_or(0),
                new_identity_on_vault: v,
                new_ip_for_identity: ip,
            })
            .collect();
        Ok((days, listed, total))
    }

    /// Denied calls (401/403) per vault and per identity on a vault.
    pub async fn denied(&self) -> Result<(Vec<DeniedVault>, Vec<DeniedIdentity>), ReportError> {
        let (p, v) = (self.in_period(), self.vault_clause("vault_name"));
        let r = self
            .rows(
                "denied per vault",
                &format!(
                    "SELECT vault_name, SUM(denied_operations) AS denied, SUM(operations) AS calls
                     FROM identity_daily WHERE {p}{v} AND vault_name IS NOT NULL
                     GROUP BY vault_name HAVING SUM(denied_operations) > 0
                     ORDER BY denied DESC, vault_name"
                ),
            )
            .await?;
        let (names, denied, calls) = (r.text("vault_name")?, r.int("denied")?, r.int("calls")?);
        let vaults = (0..r.len())
            .filter_map(|i| {
                Some(DeniedVault {
                    vault: names[i].clone()?,
                    denied: denied[i].unwrap_or(0),
                    calls: calls[i].unwrap_or(0),
                })
            })
            .collect();
        let r = self
            .rows(
                "denied per identity",
                &format!(
                    "SELECT identity, vault_name, MAX(upn) AS upn, SUM(denied_operations) AS denied,
                            SUM(operations) AS calls
                     FROM identity_daily WHERE {p}{v} AND vault_name IS NOT NULL
                     GROUP BY identity, vault_name HAVING SUM(denied_operations) > 0
                     ORDER BY denied DESC, identity, vault_name LIMIT {TOP}"
                ),
            )
            .await?;
        let (ids, names, upns, denied, calls) = (
            r.text("identity")?,
            r.text("vault_name")?,
            r.text("upn")?,
            r.int("denied")?,
            r.int("calls")?,
        );
        let identities = (0..r.len())
            .filter_map(|i| {
                Some(DeniedIdentity {
                    identity: ids[i].clone()?,
                    vault: names[i].clone()?,
                    upn: upns[i].clone(),
                    denied: denied[i].unwrap_or(0),
                    calls: calls[i].unwrap_or(0),
                })
            })
            .collect();
        Ok((vaults, identities))
    }
}

/// The band of a vault's day: its usual range from the 28 days before, once it has the
/// warm-up's days of history. The spread is the cold path's (`anomalies.sql`): the
/// standard deviation, at least √mean and 1; the top is where unusual_volume starts.
fn band(
    mean: Option<f64>,
    sd: Option<f64>,
    days: Option<i64>,
    s: &DrawSettings,
) -> (Option<f64>, Option<f64>) {
    match (mean, days) {
        (Some(m), Some(d)) if d >= i64::from(s.warmup_days) => {
            let spread = sd.unwrap_or(0.0).max(m.max(0.0).sqrt()).max(1.0);
            (
                Some((m - s.score_threshold * spread).max(0.0)),
                Some((m + s.score_threshold * spread).max(s.volume_min_ratio * m)),
            )
        }
        _ => (None, None),
    }
}

fn findings(r: &Rows, source: &'static str, alerts: bool) -> Result<Vec<Finding>, ReportError> {
    let (dates, kinds, types, subjects) = (
        r.day("date")?,
        r.text("kind")?,
        r.text("subject_type")?,
        r.text("subject")?,
    );
    let (vaults, ids, ips) = (r.text("vault_name")?, r.text("identity")?, r.text("ip")?);
    let (starts, ends) = (r.micros("window_start")?, r.micros("window_end")?);
    let (obs, base, score, desc) = (
        r.float("observed")?,
        r.float("baseline")?,
        r.float("score")?,
        r.text("description")?,
    );
    let alert_ids = if alerts {
        r.text("alert_id")?
    } else {
        vec![None; r.len()]
    };
    Ok((0..r.len())
        .map(|i| Finding {
            source,
            alert_id: alert_ids[i].clone(),
            date: dates[i]
                .map(|d| format_date(i64::from(d)))
                .unwrap_or_default(),
            kind: kinds[i].clone().unwrap_or_else(|| "unknown".into()),
            subject_type: types[i].clone(),
            subject: subjects[i].clone(),
            vault: vaults[i].clone().filter(|v| !v.is_empty()),
            identity: ids[i].clone().filter(|v| !v.is_empty()),
            ip: ips[i].clone().filter(|v| !v.is_empty()),
            window_start: starts[i],
            window_end: ends[i],
            observed: obs[i],
            baseline: base[i],
            score: score[i],
            description: desc[i].clone().unwrap_or_default(),
            raw: RawEvents::default(),
        })
        .collect())
}
