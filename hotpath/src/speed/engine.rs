//! The speed layer's task: one per instance, fed by every partition task with the events
//! of each decoded chunk. It owns the rules, writes each alert to the outbox before
//! anything that counts it is checkpointed, checkpoints a partition's contribution before
//! that partition's batch commits, and exchanges contributions with other instances.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kvlake_lake::Lake;
use kvlake_schemas::layout::path_safe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::alert::Alert;
use super::event::Event;
use super::history;
use super::outbox::{Outbox, SCAN_DAYS, deliver_loop, publish_loop};
use super::rules::{Rules, Thresholds};
use super::sinks::Sink;
use super::state::Contribution;
use crate::error::HotError;
use crate::metrics;

/// Settings of the speed layer (filled by the binary).
#[derive(Debug, Clone)]
pub struct SpeedConfig {
    /// The thresholds (`coldpath/sql/defaults.toml`).
    pub thresholds: Thresholds,
    /// How long after a UTC day ends its records still count (event time).
    pub lateness: Duration,
    /// How often contributions are published and the others' read.
    pub exchange_interval: Duration,
    /// How often the cold path's tables are read again.
    pub history_refresh: Duration,
    /// Where alerts go besides the table.
    pub sinks: Vec<Arc<dyn Sink>>,
}

impl SpeedConfig {
    /// The settings with the default timings and no sink.
    pub fn new(thresholds: Thresholds) -> SpeedConfig {
        SpeedConfig {
            thresholds,
            lateness: Duration::from_secs(3600),
            exchange_interval: Duration::from_secs(1),
            history_refresh: Duration::from_secs(900),
            sinks: Vec::new(),
        }
    }
}

/// What partition tasks send.
#[derive(Debug)]
pub enum SpeedMsg {
    /// The records of a decoded chunk.
    Events {
        /// Partition.
        partition: i32,
        /// Its records, in offset order.
        events: Vec<Event>,
    },
    /// Checkpoint the partition's contribution (before its batch commits).
    Checkpoint {
        /// Partition.
        partition: i32,
        /// Done (or why not).
        done: oneshot::Sender<Result<(), String>>,
    },
    /// The partition went to another instance.
    Released(i32),
}

/// How partition tasks reach the engine.
#[derive(Debug, Clone)]
pub struct SpeedHandle {
    tx: mpsc::Sender<SpeedMsg>,
}

impl SpeedHandle {
    /// Hands over a chunk's events (waits when the engine is behind: backpressure).
    pub async fn events(&self, partition: i32, events: Vec<Event>) {
        if !events.is_empty() {
            let _ = self.tx.send(SpeedMsg::Events { partition, events }).await;
        }
    }

    /// Checkpoints the partition's contribution; its batch may commit after this.
    pub async fn checkpoint(&self, partition: i32) -> Result<(), HotError> {
        let (done, rx) = oneshot::channel();
        let gone = || HotError::Task("the speed layer stopped".into());
        self.tx
            .send(SpeedMsg::Checkpoint { partition, done })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(HotError::Task)
    }

    /// Tells the engine a partition was revoked.
    pub async fn released(&self, partition: i32) {
        let _ = self.tx.send(SpeedMsg::Released(partition)).await;
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn today() -> i32 {
    i32::try_from(now_micros().div_euclid(86_400_000_000)).unwrap_or(0)
}

/// Starts the engine (reads the cold path's tables and the outbox first). The returned
/// task ends after `stop` once the sinks have drained (or a few seconds passed).
pub async fn start(
    cfg: SpeedConfig,
    lake: Lake,
    topic: &str,
    writer: &str,
    stop: CancellationToken,
) -> Result<(SpeedHandle, JoinHandle<()>), HotError> {
    let excluded: Vec<String> = cfg
        .thresholds
        .excluded_app_ids
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let mut thresholds = cfg.thresholds.clone();
    thresholds.excluded_app_ids = excluded.clone();
    let hist = history::load(&lake, &excluded).await?;
    tracing::info!(
        lake_days = hist.lake_days.len(),
        known_pairs = hist.pair_first.len(),
        "speed layer: history read from the cold path's tables"
    );
    let lateness = i64::try_from(cfg.lateness.as_micros()).unwrap_or(i64::MAX);
    let mut rules = Rules::new(thresholds, topic, hist, lateness);
    let outbox = Outbox::new(&lake);
    let since = today() - SCAN_DAYS;
    rules.already_fired(outbox.ids(since).await?);
    metrics::describe_speed(cfg.sinks.iter().map(|s| s.name().to_string()));
    let (table_tx, table_rx) = mpsc::channel(4096);
    let drained = CancellationToken::new();
    let mut workers = vec![tokio::spawn(publish_loop(
        lake.clone(),
        table_rx,
        today(),
        drained.clone(),
    ))];
    let mut sink_txs = Vec::new();
    for s in &cfg.sinks {
        let (tx, rx) = mpsc::channel(4096);
        sink_txs.push(tx);
        workers.push(tokio::spawn(deliver_loop(
            lake.clone(),
            s.clone(),
            rx,
            today(),
            drained.clone(),
        )));
    }
    let (tx, rx) = mpsc::channel(64);
    let engine = Engine {
        rules,
        lake: lake.clone(),
        outbox,
        dir: format!("_kvlake/speed/{}/state", path_safe(topic)),
        writer: writer.to_string(),
        owned: HashSet::new(),
        dirty: HashSet::new(),
        seen: HashMap::new(),
        table_tx,
        sink_txs,
        excluded,
        late_reported: 0,
    };
    let task = tokio::spawn(async move {
        engine.run(rx, cfg, stop).await;
        drained.cancel();
        for w in workers {
            let _ = w.await;
        }
    });
    Ok((SpeedHandle { tx }, task))
}

struct Engine {
    rules: Rules,
    lake: Lake,
    outbox: Outbox,
    dir: String,
    writer: String,
    owned: HashSet<i32>,
    dirty: HashSet<i32>,
    /// (modified, size) of each other partition's file last read.
    seen: HashMap<i32, (i64, u64)>,
    table_tx: mpsc::Sender<Alert>,
    sink_txs: Vec<mpsc::Sender<Alert>>,
    excluded: Vec<String>,
    late_reported: u64,
}

impl Engine {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<SpeedMsg>,
        cfg: SpeedConfig,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(cfg.exchange_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(cfg.history_refresh);
        refresh.tick().await;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => if let Err(e) = self.handle(m).await {
                        tracing::warn!(error = %e, "speed layer: storage failed (the records stay counted; retried at the next checkpoint)");
                    },
                    None => break,
                },
                _ = tick.tick() => if let Err(e) = self.exchange().await {
                    tracing::warn!(error = %e, "speed layer: exchange failed, retrying");
                },
                _ = refresh.tick() => match history::load(&self.lake, &self.excluded).await {
                    Ok(h) => self.rules.set_history(h),
                    Err(e) => tracing::warn!(error = %e, "speed layer: cannot read the cold path's tables"),
                },
                _ = stop.cancelled() => {
                    // Partition tasks still checkpoint their last batches: serve them.
                    while let Some(m) = rx.recv().await {
                        let _ = self.handle(m).await;
                    }
                    break;
                }
            }
        }
        let _ = self.save_dirty().await;
    }

    async fn handle(&mut self, m: SpeedMsg) -> Result<(), HotError> {
        match m {
            SpeedMsg::Events { partition, events } => {
                if !self.owned.contains(&partition) {
                    // Taken on (start, restart, rebalance): continue from its checkpoint.
                    if let Some(c) = self.load(partition).await? {
                        self.rules.replace(c);
                    }
                    self.owned.insert(partition);
                }
                let floor = self
                    .rules
                    .state
                    .part(partition)
                    .map_or(i64::MIN, |c| c.upto);
                let now = now_micros();
                let mut alerts = Vec::new();
                let mut upto = floor;
                for ev in events.iter().filter(|e| e.offset >= floor) {
                    alerts.extend(self.rules.observe(ev, now));
                    upto = upto.max(ev.offset + 1);
                }
                self.rules.state.set_upto(partition, upto);
                self.dirty.insert(partition);
                metrics::speed_records(events.len());
                self.emit(alerts).await?;
                let late = self.rules.late_records;
                if late > self.late_reported {
                    metrics::late_records(late - self.late_reported);
                    self.late_reported = late;
                }
            }
            SpeedMsg::Checkpoint { partition, done } => {
                let r = self.save(partition).await.map_err(|e| e.to_string());
                let _ = done.send(r);
            }
            SpeedMsg::Released(p) => {
                // Its records after our last checkpoint are counted again by the new owner.
                self.owned.remove(&p);
                self.dirty.remove(&p);
                self.rules.release(p);
                self.seen.remove(&p);
            }
        }
        Ok(())
    }

    /// Outbox first: an alert is durable before the counts behind it are checkpointed.
    async fn emit(&mut self, alerts: Vec<Alert>) -> Result<(), HotError> {
        for a in alerts {
            if !self.outbox.create(&a).await? {
                continue; // raised already (another instance, or before a restart)
            }
            metrics::alert_raised(&a.kind);
            tracing::info!(alert_id = %a.alert_id, kind = %a.kind, subject = %a.subject, partition = a.partition, offset = a.offset, "alert raised");
            let _ = self.table_tx.send(a.clone()).await;
            for tx in &self.sink_txs {
                if tx.try_send(a.clone()).is_err() {
                    metrics::delivery("all", "deferred");
                }
            }
        }
        Ok(())
    }

    fn file(&self, p: i32) -> String {
        format!("{}/{p}.json", self.dir)
    }

    async fn load(&self, p: i32) -> Result<Option<Contribution>, HotError> {
        Ok(match self.lake.get(&self.file(p)).await? {
            Some(b) => serde_json::from_slice(&b).ok(),
            None => None,
        })
    }

    async fn save(&mut self, p: i32) -> Result<(), HotError> {
        if !self.dirty.contains(&p) {
            return Ok(());
        }
        let Some(c) = self.rules.state.part(p) else {
            return Ok(());
        };
        let mut c = c.clone();
        c.writer = self.writer.clone();
        let body = serde_json::to_vec(&c).map_err(|e| HotError::Task(e.to_string()))?;
        self.lake.put(&self.file(p), Bytes::from(body)).await?;
        self.dirty.remove(&p);
        Ok(())
    }

    async fn save_dirty(&mut self) -> Result<(), HotError> {
        let parts: Vec<i32> = self.dirty.iter().copied().collect();
        for p in parts {
            self.save(p).await?;
        }
        Ok(())
    }

    /// Publishes this instance's partitions, reads the others' that changed and
    /// re-evaluates what they changed; evicts closed days.
    async fn exchange(&mut self) -> Result<(), HotError> {
        self.save_dirty().await?;
        let now = now_micros();
        for o in self.lake.list_meta(&self.dir).await? {
            let Some(p) = o
                .path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|f| f.parse::<i32>().ok())
            else {
                continue;
            };
            if self.owned.contains(&p) || self.seen.get(&p) == Some(&(o.modified_ms, o.size)) {
                continue;
            }
            self.seen.insert(p, (o.modified_ms, o.size));
            if let Some(c) = self.load(p).await? {
                let (counts, windows) = self.rules.replace(c);
                let alerts = self.rules.reevaluate(&counts, &windows, now);
                self.emit(alerts).await?;
            }
        }
        self.rules.evict();
        self.rules.forget_cache();
        metrics::state_bytes(self.rules.state.approx_bytes());
        Ok(())
    }
}
