//! The durable outbox and what drains it: every alert is first created in the lake under
//! its id (create-if-absent: of two instances raising it, one wins), then appended to the
//! `alerts` Delta table and handed to each sink, which marks what it delivered.
//!
//! A sink outage only grows that sink's queue (bounded; what does not fit waits in the
//! outbox for the next scan), never the ingestion path.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kvlake_lake::delta::now_ms;
use kvlake_lake::tables::alerts_table;
use kvlake_lake::{CommitOutcome, Created, DeltaTable, Lake};
use kvlake_schemas::delta::{Action, Add, CommitInfo};
use kvlake_schemas::time::parse_date;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alert::{Alert, to_parquet};
use super::sinks::{Sink, SinkError};
use crate::error::HotError;
use crate::metrics;

const OUTBOX: &str = "_kvlake/alerts/outbox";
const DELIVERED: &str = "_kvlake/alerts/delivered";
/// Days of the outbox scanned at start (older alerts were delivered or given up on).
pub const SCAN_DAYS: i32 = 7;
/// Alerts a sink keeps in memory; more wait in the outbox.
const QUEUE_CAP: usize = 10_000;

fn day_of_date(date: &str) -> Option<i32> {
    parse_date(date).and_then(|d| i32::try_from(d).ok())
}

/// The outbox in one lake.
#[derive(Debug, Clone)]
pub struct Outbox {
    lake: Lake,
}

impl Outbox {
    /// The outbox of `lake`.
    pub fn new(lake: &Lake) -> Outbox {
        Outbox { lake: lake.clone() }
    }

    fn path(date: &str, id: &str) -> String {
        format!("{OUTBOX}/date={date}/{id}.json")
    }

    /// Creates the alert's entry; `true` when this call raised it (also when a retried
    /// put of ours had already landed), `false` when someone else had.
    pub async fn create(&self, a: &Alert) -> Result<bool, HotError> {
        let body = Bytes::from(serde_json::to_vec(a).map_err(|e| HotError::Task(e.to_string()))?);
        let path = Self::path(&a.date, &a.alert_id);
        match self.lake.put_if_absent(&path, body.clone()).await? {
            Created::Created => Ok(true),
            Created::AlreadyExists => Ok(self.lake.get(&path).await?.as_ref() == Some(&body)),
        }
    }

    /// (day, id) of every entry from `since` on.
    pub async fn ids(&self, since: i32) -> Result<Vec<(i32, String)>, HotError> {
        let mut out = Vec::new();
        for (p, _) in self.lake.list(OUTBOX).await? {
            let mut parts = p.rsplit('/');
            let (Some(file), Some(dir)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Some(id), Some(day)) = (
                file.strip_suffix(".json"),
                dir.strip_prefix("date=").and_then(day_of_date),
            ) else {
                continue;
            };
            if day >= since {
                out.push((day, id.to_string()));
            }
        }
        Ok(out)
    }

    /// One entry.
    pub async fn read(&self, day: i32, id: &str) -> Result<Option<Alert>, HotError> {
        let date = kvlake_schemas::time::format_date(i64::from(day));
        Ok(match self.lake.get(&Self::path(&date, id)).await? {
            Some(b) => serde_json::from_slice(&b).ok(),
            None => None,
        })
    }

    async fn delivered(&self, sink: &str) -> Result<HashSet<String>, HotError> {
        Ok(self
            .lake
            .list(&format!("{DELIVERED}/{sink}"))
            .await?
            .into_iter()
            .filter_map(|(p, _)| p.rsplit('/').next().map(str::to_string))
            .collect())
    }

    async fn mark(&self, sink: &str, a: &Alert) -> Result<(), HotError> {
        let path = format!("{DELIVERED}/{sink}/date={}/{}", a.date, a.alert_id);
        self.lake.put(&path, Bytes::new()).await?;
        Ok(())
    }

    /// Entries from `since` on that are not in `done`.
    async fn missing(&self, since: i32, done: &HashSet<String>) -> Result<Vec<Alert>, HotError> {
        let mut out = Vec::new();
        for (day, id) in self.ids(since).await? {
            if !done.contains(&id)
                && let Some(a) = self.read(day, &id).await?
            {
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// Appends alerts to the `alerts` Delta table: one file per alert, named by its id, and
/// an alert whose file the table already lists is skipped, so a retry, a restart's
/// re-scan or a second instance never adds a row twice.
pub async fn publish_loop(
    lake: Lake,
    mut rx: mpsc::Receiver<Alert>,
    today: i32,
    stop: CancellationToken,
) {
    let outbox = Outbox::new(&lake);
    let table = DeltaTable::new(&lake, alerts_table());
    // Entries a crash left between the outbox and the table.
    let mut first: Vec<Alert> = Vec::new();
    match table_paths(&table).await {
        Ok(done) => match outbox.missing(today - SCAN_DAYS, &done).await {
            Ok(a) => first = a,
            Err(e) => tracing::warn!(error = %e, "cannot scan the alert outbox"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot read the alerts table"),
    }
    let mut pending: Vec<Alert> = first;
    loop {
        if pending.is_empty() {
            tokio::select! {
                a = rx.recv() => match a { Some(a) => pending.push(a), None => return },
                _ = stop.cancelled() => return,
            }
        }
        while let Ok(a) = rx.try_recv() {
            pending.push(a);
        }
        let mut wait = Duration::from_millis(200);
        metrics::outbox_pending("table", pending.len());
        loop {
            match append(&table, &pending).await {
                Ok(()) => {
                    let now = now_ms() as f64 / 1e3;
                    for a in &pending {
                        metrics::delivery("table", "delivered");
                        metrics::delivery_latency(
                            "table",
                            (now - a.detected_at as f64 / 1e6).max(0.0),
                        );
                    }
                    metrics::outbox_pending("table", 0);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, alerts = pending.len(), "cannot append to the alerts table, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        pending.clear();
    }
}

/// Ids whose files the table lists.
async fn table_paths(table: &DeltaTable) -> Result<HashSet<String>, HotError> {
    if !table.exists().await? {
        return Ok(HashSet::new());
    }
    Ok(table
        .load()
        .await?
        .files
        .keys()
        .filter_map(|p| {
            p.rsplit('/')
                .next()?
                .strip_suffix(".parquet")
                .map(str::to_string)
        })
        .collect())
}

async fn append(table: &DeltaTable, alerts: &[Alert]) -> Result<(), HotError> {
    let mut snap = table.load().await?;
    table.create_if_missing(&mut snap).await?;
    let mut adds = Vec::new();
    for a in alerts {
        let rel = format!("date={}/{}.parquet", a.date, a.alert_id);
        let one = vec![a.clone()];
        let bytes = tokio::task::spawn_blocking(move || to_parquet(&one))
            .await
            .map_err(|e| HotError::Task(e.to_string()))?
            .map_err(|e| HotError::Task(e.to_string()))?;
        let stats = kvlake_schemas::delta::stats::stats_of_file(
            &bytes,
            &kvlake_schemas::alerts::alert_file_schema(),
        )
        .ok();
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        // Same id, same content (the outbox entry decides it): an overwrite is harmless.
        table.root().put(&rel, bytes).await?;
        adds.push(Add {
            path: rel,
            partition_values: [("date".to_string(), Some(a.date.clone()))].into(),
            size,
            modification_time: now_ms(),
            data_change: true,
            stats,
        });
    }
    for _ in 0..100 {
        let todo: Vec<Add> = adds
            .iter()
            .filter(|a| !snap.files.contains_key(&a.path))
            .cloned()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let info = CommitInfo {
            timestamp: now_ms(),
            operation: "WRITE",
            parameters: [("mode".to_string(), "Append".to_string())].into(),
            blind_append: true,
        };
        let mut actions = vec![info.action()];
        actions.extend(todo.into_iter().map(Action::Add));
        if let CommitOutcome::Committed(_) = table.commit(&mut snap, actions).await? {
            return Ok(());
        }
    }
    Err(HotError::Task(
        "alerts table: no commit after 100 attempts".into(),
    ))
}

/// Delivers to one sink: what the outbox holds for it at start, then every new alert;
/// failures back off (or wait the server's Retry-After) and retry the same batch.
pub async fn deliver_loop(
    lake: Lake,
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<Alert>,
    today: i32,
    stop: CancellationToken,
) {
    let outbox = Outbox::new(&lake);
    let name = sink.name().to_string();
    let mut queue: VecDeque<Alert> = VecDeque::new();
    match outbox.delivered(&name).await {
        Ok(done) => match outbox.missing(today - SCAN_DAYS, &done).await {
            Ok(a) => queue.extend(a),
            Err(e) => tracing::warn!(sink = %name, error = %e, "cannot scan the alert outbox"),
        },
        Err(e) => tracing::warn!(sink = %name, error = %e, "cannot read the delivery markers"),
    }
    let mut wait = Duration::from_millis(500);
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        metrics::outbox_pending(&name, queue.len());
        let accept = |queue: &mut VecDeque<Alert>, a: Alert| {
            if queue.len() < QUEUE_CAP {
                queue.push_back(a);
            } else {
                // Still in the outbox: the next start delivers it.
                metrics::delivery(&name, "deferred");
            }
        };
        if stopping.is_some_and(|t| tokio::time::Instant::now() > t) {
            return;
        }
        if queue.is_empty() {
            if stopping.is_some() {
                return;
            }
            tokio::select! {
                a = rx.recv() => match a { Some(a) => accept(&mut queue, a), None => stopping = Some(tokio::time::Instant::now() + Duration::from_secs(5)) },
                _ = stop.cancelled(), if stopping.is_none() => stopping = Some(tokio::time::Instant::now() + Duration::from_secs(5)),
            }
            continue;
        }
        while let Ok(a) = rx.try_recv() {
            accept(&mut queue, a);
        }
        let mut batch = Vec::new();
        let mut bytes = 2;
        while let Some(a) = queue.front() {
            let n = serde_json::to_vec(a).map_or(0, |v| v.len()) + 1;
            if !batch.is_empty() && (bytes + n > sink.max_batch_bytes() || batch.len() >= 500) {
                break;
            }
            bytes += n;
            if let Some(a) = queue.pop_front() {
                batch.push(a);
            }
        }
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(30), sink.deliver(&batch)).await;
        match result {
            Ok(Ok(())) => {
                wait = Duration::from_millis(500);
                let now = now_ms() as f64 / 1e3;
                for a in &batch {
                    metrics::delivery(&name, "delivered");
                    metrics::delivery_latency(&name, (now - a.detected_at as f64 / 1e6).max(0.0));
                    if let Err(e) = outbox.mark(&name, a).await {
                        tracing::warn!(sink = %name, error = %e, "cannot record a delivery (it may be repeated)");
                    }
                }
                tracing::debug!(sink = %name, alerts = batch.len(), took_ms = started.elapsed().as_millis() as u64, "alerts delivered");
            }
            other => {
                let (reason, after, throttled) = match other {
                    Ok(Err(SinkError::Retry {
                        reason,
                        after,
                        throttled,
                    })) => (reason, after, throttled),
                    _ => ("timed out after 30s".to_string(), None, false),
                };
                metrics::delivery(&name, if throttled { "throttled" } else { "failed" });
                let pause = after.unwrap_or(wait);
                tracing::warn!(sink = %name, alerts = batch.len(), error = %reason, retry_in = ?pause, "alert delivery failed, retrying");
                for a in batch.into_iter().rev() {
                    queue.push_front(a);
                }
                wait = (wait * 2).min(Duration::from_secs(60));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled(), if stopping.is_none() => return,
                }
            }
        }
    }
}
