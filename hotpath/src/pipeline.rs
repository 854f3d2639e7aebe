//! The hot path, stage by stage:
//!
//! ```text
//!  Kafka ──► source (router) ──chunks──► partition task ×N ──► encode (blocking pool)
//!  (rdkafka)  one tokio task     bounded     batching, limits      decode + Parquet
//!                                 mpsc            │
//!                                                 ▼
//!                                plan ──► files ──► commit ──► Kafka offset
//!                                (lake log, create-if-absent)   (for lag tools)
//! ```
//!
//! A full channel is the backpressure: the router stops polling, librdkafka's bounded
//! prefetch queue fills, and fetching pauses. Nothing grows with the backlog.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use kvlake_schemas::checkpoint::Resume;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Assignment, HotConfig, RunMode, StartPosition};
use crate::error::HotError;
use crate::lake::Lake;
use crate::log::PartitionLog;
use crate::messages::{Chunk, Msg, PartitionReport};
use crate::partition::{PartitionTask, Shared, Signals, StartPoint};
use crate::progress::Progress;
use crate::publish::Tables;
use crate::source::{self, KafkaConsumer, RebalanceEvent};

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// One report per partition this run handled.
    pub partitions: Vec<PartitionReport>,
    /// Wall time.
    pub elapsed: Duration,
    /// The stop was forced: batches still open after the grace period were abandoned (uncommitted).
    pub abandoned: bool,
    /// An until-caught-up run: messages per partition past where the run stopped, by the
    /// broker's high watermarks read again at the end (arrived during the run, or
    /// under-reported at its start, as Tansu does): the next run takes them.
    pub left_behind: Vec<(i32, i64)>,
}

impl RunSummary {
    /// Raw rows committed by this run.
    pub fn raw_rows(&self) -> u64 {
        self.partitions.iter().map(|p| p.raw_rows).sum()
    }
    /// Dead-letter rows committed by this run.
    pub fn dead_letter_rows(&self) -> u64 {
        self.partitions.iter().map(|p| p.dead_letter_rows).sum()
    }
    /// Message bytes committed by this run.
    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum()
    }
}

/// Runs the hot path until caught up, stopped through `shutdown`, or `max_runtime`.
/// Returns after every open batch is committed, or abandoned once the grace period ends.
pub async fn run(
    config: HotConfig,
    lake: Lake,
    shutdown: CancellationToken,
) -> Result<RunSummary, HotError> {
    run_with_progress(config, lake, shutdown, crate::progress::none()).await
}

/// [`run`], telling `progress` the messages each partition has to read (when the run
/// has an end: `--until-caught-up`, or a replay's high watermark as the upper bound)
/// and the messages of each committed batch.
pub async fn run_with_progress(
    config: HotConfig,
    lake: Lake,
    shutdown: CancellationToken,
    progress: Progress,
) -> Result<RunSummary, HotError> {
    let started = Instant::now();
    crate::metrics::describe();
    let queue_kbytes = config.memory_budget_bytes / 16 / 1024;
    let mut kafka = config.kafka.clone();
    if config.mode == RunMode::UntilCaughtUp {
        // A run to an end in assign mode reads its partitions in waves (below). librdkafka
        // fetches a newly assigned partition only once the fetch in flight returns, and a
        // broker holds a fetch whose partitions have nothing new for up to
        // `fetch.wait.max.ms` (500 ms): every wave began with both cores idle for 0.1-0.3 s
        // (a third of the wall time on a 64-partition backlog of 4 waves). A service keeps
        // the default: it assigns partitions only at a rebalance. `--kafka-option` still
        // decides.
        kafka
            .entry("fetch.wait.max.ms".into())
            .or_insert_with(|| "20".into());
    }
    let consumer = source::create_consumer(&kafka, queue_kbytes, config.oauth.clone())?;
    if config.oauth.is_some() {
        source::serve_first_oauth_token(&consumer).await;
    }
    let stop = CancellationToken::new();
    {
        let (stop, shutdown, max_runtime) = (stop.clone(), shutdown.clone(), config.max_runtime);
        tokio::spawn(async move {
            let limit = async {
                match max_runtime {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => tracing::info!("stop requested: committing open batches"),
                _ = limit => tracing::info!("max runtime reached: stopping at this batch boundary"),
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        });
    }
    // Publishers wait for the batches on their way (at most a second, and never longer
    // than a batch may stay open), so partitions share commits and files.
    let linger = config.batch.max_wait.min(PUBLISH_LINGER);
    // The broker's metadata, the tables and the speed layer's history are independent
    // round trips: a start waits for the slowest, not for their sum.
    let (all, tables, speed) = tokio::try_join!(
        source::partitions(&consumer, &config.topic, config.connect_timeout),
        Tables::open_with_linger(&lake, linger),
        async {
            match config.speed.clone() {
                Some(c) => crate::speed::start(
                    c,
                    lake.clone(),
                    &config.topic,
                    &config.writer_id,
                    stop.clone(),
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        },
    )?;
    let (speed, speed_task) = speed.unzip();
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "start-up: metadata, tables and speed layer ready"
    );
    // A scheduled job with a deep backlog reads partitions in waves of `active`: each
    // open batch then gets a bigger share of the memory budget, so files stay large
    // whatever the partition count. A service reads every partition at once.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let active = match (config.mode, config.assignment) {
        (RunMode::UntilCaughtUp, Assignment::Assign) => ((config.memory_budget_bytes / (32 << 20))
            as usize)
            .clamp(2 * cores, all.len().max(2 * cores)),
        _ => all.len(),
    };
    let mut router = Router::new(
        &config,
        lake,
        tables.clone(),
        speed,
        consumer.clone(),
        stop.clone(),
        active.min(all.len()),
        progress,
    );
    match config.assignment {
        Assignment::Assign => {
            let parts = match &config.partitions {
                None => all.clone(),
                Some(wanted) => {
                    if let Some(p) = wanted.iter().find(|p| !all.contains(p)) {
                        return Err(HotError::Topic {
                            topic: config.topic.clone(),
                            detail: format!("has no partition {p} (it has {})", all.len()),
                        });
                    }
                    wanted.clone()
                }
            };
            let starts = router.start_points(&parts).await?;
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "start-up: watermarks and logs read"
            );
            let (done, todo): (Vec<_>, Vec<_>) = starts.into_iter().partition(|(_, s)| {
                s.rerun.is_none() && s.stop_offset.is_some_and(|stop| s.offset >= stop)
            });
            for (p, s) in done {
                router.reports.push(PartitionReport {
                    partition: p,
                    end_offset: s.offset,
                    ..PartitionReport::default()
                });
            }
            router.waiting = todo.into();
            router.fill()?;
        }
        Assignment::Subscribe => {
            consumer
                .subscribe(&[&config.topic])
                .map_err(|e| HotError::kafka(format!("cannot subscribe to {}", config.topic), e))?;
        }
    }
    let outcome = router.route().await;
    let (reports, abandoned) = router.finish(config.grace).await;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "run: partitions finished"
    );
    // Every partition task is gone, so is every sender: the speed layer saves its state
    // and its sinks get a few seconds to drain (what remains waits in the outbox).
    if let Some(t) = speed_task {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "run: speed layer stopped"
    );
    if let Err(e) = tables.clean_staged().await {
        tracing::warn!(error = %e, "staged files of published batches not deleted; maintenance will");
    }
    let partitions = reports?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "run: staged files cleaned"
    );
    let left_behind = if config.mode == RunMode::UntilCaughtUp && outcome.is_ok() {
        left_behind(&consumer, &config, &partitions).await
    } else {
        Vec::new()
    };
    let summary = RunSummary {
        partitions,
        elapsed: started.elapsed(),
        abandoned,
        left_behind,
    };
    outcome?;
    Ok(summary)
}

/// Messages past each partition's end, by the high watermarks read once more: what an
/// until-caught-up run leaves to the next one is said, not silent. Best effort.
async fn left_behind(
    consumer: &Arc<KafkaConsumer>,
    config: &HotConfig,
    reports: &[PartitionReport],
) -> Vec<(i32, i64)> {
    let parts: Vec<i32> = reports
        .iter()
        .filter(|r| r.lost_to.is_none())
        .map(|r| r.partition)
        .collect();
    if parts.is_empty() {
        return Vec::new();
    }
    let timeout = config.connect_timeout.min(Duration::from_secs(5));
    match source::watermarks(consumer, &config.topic, &parts, timeout).await {
        Ok(wm) => behind(reports, |p| wm.get(&p).map(|w| w.1)),
        Err(e) => {
            tracing::debug!(error = %e, "watermarks at the end of the run not read");
            behind(reports, |_| None)
        }
    }
}

/// Per partition, the messages past its end: by the high watermark now, or by what the
/// broker delivered past the end, whichever says more.
fn behind(reports: &[PartitionReport], high: impl Fn(i32) -> Option<i64>) -> Vec<(i32, i64)> {
    reports
        .iter()
        .filter(|r| r.lost_to.is_none())
        .filter_map(|r| {
            let by_watermark = high(r.partition).map_or(0, |h| h - r.end_offset);
            let n = by_watermark.max(r.seen_past_end);
            (n > 0).then_some((r.partition, n))
        })
        .collect()
}

/// The longest a table's publisher waits for other partitions' batches.
const PUBLISH_LINGER: Duration = Duration::from_secs(1);

/// Partition logs read at once at start-up.
const LOG_READS_IN_FLIGHT: usize = 32;

/// The source stage: polls Kafka and hands chunks to partition tasks.
struct Router {
    config: HotConfig,
    consumer: Arc<KafkaConsumer>,
    stop: CancellationToken,
    shared: Shared,
    chunk_bytes: usize,
    /// Bytes all pending chunks may hold before the router waits for a busy task.
    pending_cap: usize,
    /// Message bytes the router holds or has queued to tasks; tasks subtract what they take.
    pending_bytes: Arc<AtomicUsize>,
    senders: HashMap<i32, mpsc::Sender<Chunk>>,
    pending: HashMap<i32, Chunk>,
    /// Partitions this run assigned itself and reads (assign mode).
    assigned: std::collections::HashSet<i32>,
    /// Partitions read at once (assign mode); as many more may publish their last batch.
    active: usize,
    /// Partitions that have read all they will read.
    reading_done: mpsc::UnboundedReceiver<i32>,
    tasks: JoinSet<Result<PartitionReport, HotError>>,
    reports: Vec<PartitionReport>,
    /// Partitions not yet assigned (a wave-by-wave scheduled job).
    waiting: std::collections::VecDeque<(i32, StartPoint)>,
}

impl Router {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &HotConfig,
        lake: Lake,
        tables: Tables,
        speed: Option<crate::speed::SpeedHandle>,
        consumer: Arc<KafkaConsumer>,
        stop: CancellationToken,
        partitions: usize,
        progress: Progress,
    ) -> Self {
        let n = partitions.max(1) as u64;
        // About 96 MiB goes to what does not scale with the data: the runtime, librdkafka's
        // per-partition state, the allocator's caches. The rest is shared out below.
        let budget = config
            .memory_budget_bytes
            .saturating_sub(96 << 20)
            .max(32 << 20);
        // Open batches and the previous batch of each partition (being uploaded) share
        // half the budget; chunks (pending and queued to tasks) an eighth; librdkafka's
        // prefetch a sixteenth (`source::create_consumer`).
        // A sixth each: writers' buffers run ahead of their estimate, and Vec growth doubles.
        let file_target_bytes = config
            .batch
            .file_target_bytes
            .min(budget / 6 / n)
            .max(1 << 20);
        let chunk_bytes = (budget / 16 / n).clamp(32 << 10, 4 << 20) as usize;
        // Decoded rows wait for encoding in groups; about 1.2 KB of Arrow per record.
        let flush_rows = (budget / 16 / n / 1200).clamp(128, 16_384) as usize;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pending_bytes = Arc::new(AtomicUsize::new(0));
        let (reading_done_tx, reading_done) = mpsc::unbounded_channel();
        let shared = Shared {
            topic: config.topic.clone(),
            lake,
            limits: config.batch.clone(),
            file_target_bytes,
            flush_rows,
            consumer: Some(consumer.clone()),
            encode_permits: Arc::new(Semaphore::new(cores)),
            starting_timestamp_ms: config.starting_timestamp_ms,
            ending_timestamp_ms: config.ending_timestamp_ms,
            writer_id: config.writer_id.clone(),
            commit_kafka_offsets: config.commit_kafka_offsets,
            queued_bytes: Some(pending_bytes.clone()),
            progress,
            tables,
            shape: None,
            speed,
            reading_done: Some(reading_done_tx),
        };
        Router {
            config: config.clone(),
            consumer,
            stop,
            shared,
            chunk_bytes,
            pending_cap: (budget / 16) as usize,
            pending_bytes,
            senders: HashMap::new(),
            pending: HashMap::new(),
            assigned: std::collections::HashSet::new(),
            active: partitions.max(1),
            reading_done,
            tasks: JoinSet::new(),
            reports: Vec::new(),
            waiting: std::collections::VecDeque::new(),
        }
    }

    /// Reads each partition's log and the run mode into where it starts and stops.
    async fn start_points(&mut self, parts: &[i32]) -> Result<Vec<(i32, StartPoint)>, HotError> {
        let topic = self.config.topic.clone();
        // The broker's watermarks and every partition's log are read at the same time, the
        // logs `LOG_READS_IN_FLIGHT` at a time: one after another, 64 partitions' lake
        // reads (hint, listing, last plan, last commit) cost seconds on ADLS.
        let (lake, tables) = (&self.shared.lake, &self.shared.tables);
        let resumes = futures::stream::iter(parts.iter().map(|&p| {
            let log = PartitionLog::new(lake.clone(), &topic, p);
            async move { log.resume_published(tables).await.map(|r| (p, r)) }
        }))
        .buffered(LOG_READS_IN_FLIGHT)
        .try_collect::<HashMap<i32, Resume>>();
        let by_time = async {
            match self.config.starting_timestamp_ms {
                Some(ts) => {
                    source::offsets_for_timestamp(
                        &self.consumer,
                        &topic,
                        parts,
                        ts,
                        self.config.connect_timeout,
                    )
                    .await
                }
                None => HashMap::new(),
            }
        };
        let (wm, mut resumes, by_time) = tokio::try_join!(
            source::watermarks(&self.consumer, &topic, parts, self.config.connect_timeout),
            resumes,
            by_time.map(Ok::<_, HotError>),
        )?;
        let mut out = Vec::with_capacity(parts.len());
        for &p in parts {
            let (low, high) = wm.get(&p).copied().unwrap_or((0, 0));
            let resume = resumes.remove(&p).unwrap_or(Resume::Fresh);
            let (seq, offset, rerun) = match resume {
                Resume::Fresh => {
                    let o = match (&self.config.start, by_time.get(&p)) {
                        (_, Some(&o)) => o,
                        (StartPosition::Earliest, _) => low,
                        (StartPosition::Latest, _) => high,
                        (StartPosition::Offsets(m), _) => match m.get(&p).copied() {
                            Some(-1) => high,
                            Some(o) if o >= 0 => o,
                            _ => low,
                        },
                    };
                    (0, o, None)
                }
                Resume::From { seq, offset } => (seq, offset, None),
                Resume::Rerun(plan) => {
                    tracing::info!(partition = p, seq = plan.seq, offsets = %format!("{}..{}", plan.start_offset, plan.end_offset), "re-running an uncommitted batch plan");
                    (plan.seq, plan.start_offset, Some(plan))
                }
            };
            if offset < low {
                tracing::error!(
                    partition = p,
                    resume_offset = offset,
                    low_watermark = low,
                    "messages before the low watermark were deleted by retention before kvlake read them"
                );
            }
            let stop_offset = (self.config.mode == RunMode::UntilCaughtUp).then_some(high);
            if stop_offset.is_some() || self.config.ending_timestamp_ms.is_some() {
                self.shared
                    .progress
                    .add_total(u64::try_from(high - offset).unwrap_or(0));
            }
            tracing::info!(partition = p, seq, offset, low, high, "partition starts");
            if rerun.is_none() {
                crate::metrics::committed_offset(p, offset);
            }
            out.push((
                p,
                StartPoint {
                    seq,
                    offset,
                    rerun,
                    stop_offset,
                    low_watermark: low,
                },
            ));
        }
        Ok(out)
    }

    /// Adds the next waiting partition to the consumer's assignment and starts its task.
    fn assign_next(&mut self) -> Result<(), HotError> {
        let Some((p, s)) = self.waiting.pop_front() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.topic, p, Offset::Offset(s.offset))
            .map_err(|e| HotError::kafka("cannot build the assignment", e))?;
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| HotError::kafka(format!("cannot assign partition {p}"), e))?;
        self.assigned.insert(p);
        self.spawn(p, s);
        Ok(())
    }

    /// Takes a partition that has read all it will read out of the assignment, and
    /// starts the next ones.
    fn release(&mut self, partition: i32) -> Result<(), HotError> {
        self.drop_pending(partition);
        if self.assigned.remove(&partition) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.config.topic, partition);
            if let Err(e) = self.consumer.incremental_unassign(&tpl) {
                tracing::debug!(partition, error = %e, "unassign failed (harmless: the task is done reading)");
            }
        }
        self.fill()
    }

    /// Starts waiting partitions while fewer than `active` are read and fewer than twice
    /// that many tasks live (the others publish their last batch): the memory budget's
    /// shares, an open batch and a batch on its way per place.
    fn fill(&mut self) -> Result<(), HotError> {
        while !self.stop.is_cancelled()
            && !self.waiting.is_empty()
            && self.assigned.len() < self.active
            && self.tasks.len() < 2 * self.active
        {
            self.assign_next()?;
        }
        Ok(())
    }

    fn drop_pending(&mut self, partition: i32) {
        crate::metrics::partitions_assigned(self.senders.len());
        let dropped = self.pending.remove(&partition).map_or(0, |c| c.bytes);
        self.pending_bytes.fetch_sub(dropped, Ordering::Relaxed);
    }

    fn spawn(&mut self, partition: i32, start: StartPoint) {
        let (tx, rx) = mpsc::channel(1);
        let revoked = CancellationToken::new();
        self.consumer.context().watch(partition, revoked.clone());
        let signals = Signals {
            stop: self.stop.clone(),
            revoked,
        };
        let task = PartitionTask::new(self.shared.clone(), partition, start);
        self.tasks.spawn(task.run(rx, signals));
        self.senders.insert(partition, tx);
        crate::metrics::partitions_assigned(self.senders.len());
    }

    async fn handle_rebalance(&mut self) -> Result<(), HotError> {
        for event in self.consumer.context().take_events() {
            match event {
                RebalanceEvent::Revoked(parts) => {
                    // The tasks' revocation tokens were cancelled in librdkafka's callback.
                    for p in parts {
                        self.senders.remove(&p);
                        self.drop_pending(p);
                    }
                }
                RebalanceEvent::Assigned(parts) => {
                    let fresh: Vec<i32> = parts
                        .into_iter()
                        .filter(|p| !self.senders.contains_key(p))
                        .collect();
                    for (p, s) in self.start_points(&fresh).await? {
                        // The group starts a partition at Kafka's committed offset; the lake decides.
                        let (c, topic, offset) =
                            (self.consumer.clone(), self.config.topic.clone(), s.offset);
                        tokio::task::spawn_blocking(move || seek_when_ready(&c, &topic, p, offset))
                            .await
                            .map_err(|e| HotError::Task(e.to_string()))??;
                        self.spawn(p, s);
                    }
                }
            }
        }
        Ok(())
    }

    /// Polls until every partition is done, a stop is requested, or a partition task fails.
    async fn route(&mut self) -> Result<(), HotError> {
        let subscribe = self.config.assignment == Assignment::Subscribe;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_error: Option<Instant> = None;
        let consumer = self.consumer.clone();

        loop {
            if !subscribe
                && self.senders.is_empty()
                && self.tasks.is_empty()
                && self.waiting.is_empty()
            {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ok(()),
                Some(done) = self.tasks.join_next() => self.collect(done)?,
                // Only a partition this run assigned itself hands its place on: in the
                // group, a revoked and re-assigned partition's new task may already hold
                // pending messages, which `release` would drop.
                Some(p) = self.reading_done.recv() => if self.assigned.contains(&p) {
                    self.release(p)?;
                },
                msg = consumer.recv() => {
                    if subscribe {
                        self.handle_rebalance().await?;
                    }
                    match msg {
                        Ok(m) => {
                            let p = m.partition();
                            if let Some(chunk) = self.senders.contains_key(&p).then(|| self.pending.entry(p).or_default()) {
                                let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
                                self.pending_bytes.fetch_add(payload.len(), Ordering::Relaxed);
                                chunk.push(Msg { offset: m.offset(), timestamp_ms: m.timestamp().to_millis(), payload });
                                if chunk.bytes >= self.chunk_bytes || chunk.msgs.len() >= 8192 {
                                    self.offer(p);
                                }
                                if self.pending_bytes.load(Ordering::Relaxed) > self.pending_cap {
                                    self.send_largest().await;
                                }
                            }
                        }
                        Err(e) => {
                            // librdkafka retries by itself; say so, but not for every poll.
                            metrics::counter!(crate::metrics::BROKER_ERRORS).increment(1);
                            if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                                tracing::warn!(error = %e, "kafka consumer error (retrying)");
                                last_error = Some(Instant::now());
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    if subscribe {
                        self.handle_rebalance().await?;
                    }

                    let parts: Vec<i32> = self.pending.iter().filter(|(_, c)| !c.msgs.is_empty()).map(|(p, _)| *p).collect();
                    for p in parts {
                        self.offer(p);
                    }
                }
            }
        }
    }

    /// Hands a partition's pending chunk to its task if the task can take it now;
    /// otherwise the chunk keeps growing, so a busy partition never stalls the others.
    fn offer(&mut self, p: i32) {
        let Some(chunk) = self.pending.remove(&p) else {
            return;
        };
        let bytes = chunk.bytes;
        match self.senders.get(&p).map(|tx| tx.try_send(chunk)) {
            // Counted until the task takes it off the channel.
            Some(Ok(())) => {}
            Some(Err(mpsc::error::TrySendError::Full(chunk))) => {
                self.pending.insert(p, chunk);
            }
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.senders.remove(&p);
            }
            None => {
                self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
    }

    /// Backpressure: with too much pending, wait until the largest chunk's task takes it.
    async fn send_largest(&mut self) {
        let Some(p) = self
            .pending
            .iter()
            .max_by_key(|(_, c)| c.bytes)
            .map(|(p, _)| *p)
        else {
            return;
        };
        let Some(chunk) = self.pending.remove(&p) else {
            return;
        };

        let Some(tx) = self.senders.get(&p).cloned() else {
            return;
        };
        tokio::select! {
            r = tx.send(chunk) => if let Err(mpsc::error::SendError(c)) = r {
                self.pending_bytes.fetch_sub(c.bytes, Ordering::Relaxed);
                self.senders.remove(&p);
            },
            _ = self.stop.cancelled() => {}
        }
    }

    fn collect(
        &mut self,
        done: Result<Result<PartitionReport, HotError>, tokio::task::JoinError>,
    ) -> Result<(), HotError> {
        match done {
            Ok(Ok(report)) => {
                // A partition revoked and assigned again has a new task: keep its sender.
                if self
                    .senders
                    .get(&report.partition)
                    .is_some_and(mpsc::Sender::is_closed)
                {
                    self.senders.remove(&report.partition);
                }
                let p = report.partition;
                self.reports.push(report);
                self.release(p)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(HotError::Task(e.to_string())),
        }
    }

    /// Stops the partition tasks and waits for them to commit, up to the grace period.
    async fn finish(mut self, grace: Duration) -> (Result<Vec<PartitionReport>, HotError>, bool) {
        self.stop.cancel();
        self.senders.clear();
        let deadline = Instant::now() + grace;
        let mut first_error = None;
        let mut abandoned = false;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(None) => break,
                Ok(Some(done)) => {
                    if let Err(e) = self.collect(done) {
                        tracing::error!(error = %e, "partition task failed: its batch stays uncommitted");
                        first_error.get_or_insert(e);
                    }
                }
                Err(_) => {
                    tracing::warn!(grace = ?grace, "grace period over: abandoning open batches (uncommitted, re-read on the next start)");
                    self.tasks.abort_all();
                    abandoned = true;
                    break;
                }
            }
        }
        self.reports.sort_by_key(|r| r.partition);
        match first_error {
            Some(e) => (Err(e), abandoned),
            None => (Ok(self.reports), abandoned),
        }
    }
}

/// Moves a freshly assigned partition to the lake's position; librdkafka refuses a seek
/// until the partition's fetcher has started, so try for a few seconds.
fn seek_when_ready(
    consumer: &KafkaConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), HotError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(2),
        ) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(partition, offset, error = %e, "seek not accepted yet, retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(HotError::kafka(
                    format!("cannot move partition {partition} to the lake's offset {offset}"),
                    e,
                ));
            }
        }
    }
}
