//! One topic partition's batches: accepts chunks from the source, closes a batch on its
//! limits, and writes plan → files → commit in the lake, then the Kafka offset.
//!
//! Writing a closed batch overlaps with encoding the next one; the next plan waits for
//! the previous commit, so the log never holds more than one uncommitted plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kvlake_schemas::checkpoint::{
    BatchCommit, BatchPlan, CommittedFile, LOG_FORMAT_VERSION, check_follows,
};
use kvlake_schemas::layout::{DEAD_LETTER_TABLE, RAW_TABLE, staging_path};
use kvlake_schemas::time::format_timestamp_micros;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::config::BatchLimits;
use crate::encode::{FinishedBatch, OpenBatch};
use crate::error::HotError;
use crate::lake::Lake;
use crate::log::{Fence, PartitionLog};
use crate::messages::{Chunk, Msg, PartitionReport};
use crate::progress::Progress;
use crate::publish::{PartitionSlot, Tables};
use crate::source::{KafkaConsumer, commit_offset};
use crate::spans::{self, BatchSpans};

/// Where a partition task starts, decided by the pipeline from the log and the run mode.
#[derive(Debug, Clone)]
pub struct StartPoint {
    /// Sequence number of the next plan.
    pub seq: u64,
    /// First offset to read.
    pub offset: i64,
    /// An uncommitted plan to re-run first.
    pub rerun: Option<BatchPlan>,
    /// Stop once the partition reaches this offset (until-caught-up).
    pub stop_offset: Option<i64>,
    /// Oldest offset the broker still has: a re-run whose range is all below it is
    /// committed empty at once (its messages are gone and will never arrive).
    pub low_watermark: i64,
}

/// Everything a partition task shares with the others.
#[derive(Clone)]
pub struct Shared {
    /// Topic.
    pub topic: String,
    /// The lake (with any output prefix).
    pub lake: Lake,
    /// Batch limits.
    pub limits: BatchLimits,
    /// File-size target for this partition, after the memory budget.
    pub file_target_bytes: u64,
    /// Decoded rows encoded together (see [`OpenBatch::with_flush_rows`]).
    pub flush_rows: usize,
    /// For Kafka offset commits.
    pub consumer: Option<Arc<KafkaConsumer>>,
    /// Bounds concurrent decode/encode jobs to the cores.
    pub encode_permits: Arc<Semaphore>,
    /// Replay window start (ms).
    pub starting_timestamp_ms: Option<i64>,
    /// Replay window end (ms).
    pub ending_timestamp_ms: Option<i64>,
    /// Writer id for the log.
    pub writer_id: String,
    /// Commit Kafka offsets after lake commits (not for replays: they must not move the live group).
    pub commit_kafka_offsets: bool,
    /// The router's count of message bytes in flight; a task subtracts each chunk it takes.
    pub queued_bytes: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Told of each committed batch (progress bars).
    pub progress: Progress,
    /// The Delta tables each commit is published to.
    pub tables: Tables,
    /// A forced record shape (file conversion); `None` detects each record's shape.
    pub shape: Option<kvlake_schemas::Shape>,
    /// The speed layer, fed with each chunk's records (`None`: off).
    pub speed: Option<crate::speed::SpeedHandle>,
    /// Told of a partition that has read all it will read (its last batch may still be
    /// publishing): the router gives its place to the next partition (`None`: no router).
    pub reading_done: Option<mpsc::UnboundedSender<i32>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("topic", &self.topic)
            .field("lake", &self.lake.display())
            .finish_non_exhaustive()
    }
}

/// Signals a partition task watches.
#[derive(Debug, Clone)]
pub struct Signals {
    /// Stop consuming, commit the open batch, finish.
    pub stop: CancellationToken,
    /// The partition was revoked: drop everything uncommitted, now.
    pub revoked: CancellationToken,
}

#[derive(Debug)]
struct Open {
    batch: OpenBatch,
    start: i64,
    opened_at: Instant,
    spans: BatchSpans,
    /// Counted among the batches the raw table's publisher waits for.
    raw_slot: PartitionSlot,
}

/// One partition's task state.
#[derive(Debug)]
pub struct PartitionTask {
    shared: Shared,
    partition: i32,
    log: PartitionLog,
    seq: u64,
    /// Next offset expected: everything before it is in a committed or planned batch.
    pos: i64,
    rerun: Option<BatchPlan>,
    stop_offset: Option<i64>,
    open: Option<Open>,
    inflight: Option<JoinHandle<Result<Committed, HotError>>>,
    /// End offset of the last batch handed to the writer.
    planned_end: i64,
    report: PartitionReport,
    finished: bool,
    low_watermark: i64,
    revoked: CancellationToken,
}

/// What writing one batch came to.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) end: i64,
    pub(crate) raw_rows: u64,
    pub(crate) dead_letter_rows: u64,
    pub(crate) bytes: u64,
    pub(crate) lost_to: Option<String>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl PartitionTask {
    /// A task for `partition`, starting at `start`.
    pub fn new(shared: Shared, partition: i32, start: StartPoint) -> Self {
        let log = PartitionLog::new(shared.lake.clone(), &shared.topic, partition);
        let finished = start
            .stop_offset
            .is_some_and(|s| start.offset >= s && start.rerun.is_none());
        PartitionTask {
            log,
            partition,
            seq: start.seq,
            pos: start.offset,
            rerun: start.rerun,
            stop_offset: start.stop_offset,
            open: None,
            inflight: None,
            planned_end: start.offset,
            report: PartitionReport {
                partition,
                end_offset: start.offset,
                ..PartitionReport::default()
            },
            finished,
            low_watermark: start.low_watermark,
            revoked: CancellationToken::new(),
            shared,
        }
    }

    /// Runs until the partition is done (caught up), stopped, revoked or lost.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Chunk>,
        signals: Signals,
    ) -> Result<PartitionReport, HotError> {
        self.revoked = signals.revoked.clone();
        if let Some(plan) = &self.rerun
            && plan.end_offset <= self.low_watermark
        {
            let end = plan.end_offset;
            tracing::error!(partition = self.partition, offsets = %format!("{}..{}", plan.start_offset, end), "the messages of an uncommitted batch were deleted by retention; committing its range empty");
            self.close(Some(end)).await?;
            self.rerun = None;
        }
        let result = self.run_inner(&mut rx, &signals).await;
        // Chunks still queued are dropped with the channel: take them off the count.
        rx.close();
        while let Ok(c) = rx.try_recv() {
            self.taken(c.bytes);
        }
        if (signals.revoked.is_cancelled() || self.report.lost_to.is_some())
            && let Some(speed) = &self.shared.speed
        {
            speed.released(self.partition).await;
        }
        if signals.revoked.is_cancelled() {
            if let Some(h) = self.inflight.take() {
                h.abort();
            }
            tracing::info!(
                partition = self.partition,
                "partition revoked: uncommitted batch dropped"
            );
            return Ok(self.report);
        }
        result?;
        // Read to its end: another partition may be read while this one's last batch is
        // published (a scheduled job reads in waves).
        if self.finished
            && let Some(done) = &self.shared.reading_done
        {
            let _ = done.send(self.partition);
        }
        self.settle_inflight().await?;
        Ok(self.report)
    }

    async fn run_inner(
        &mut self,
        rx: &mut mpsc::Receiver<Chunk>,
        signals: &Signals,
    ) -> Result<(), HotError> {
        while !self.finished && self.report.lost_to.is_none() {
            let deadline = self
                .open
                .as_ref()
                .map(|o| o.opened_at + self.shared.limits.max_wait);
            tokio::select! {
                biased;
                _ = signals.revoked.cancelled() => return Ok(()),
                _ = signals.stop.cancelled() => {
                    // A re-run must reach its planned end; a partial one is left for the next start.
                    if self.rerun.is_none() {
                        self.close(None).await?;
                    }
                    return Ok(());
                }
                chunk = rx.recv() => match chunk {
                    Some(c) => {
                        self.taken(c.bytes);
                        self.accept(c).await?
                    }
                    None => return Ok(()),
                },
                _ = sleep_until(deadline), if deadline.is_some() && self.rerun.is_none() => {
                    self.close(None).await?;
                }
            }
        }
        Ok(())
    }

    fn taken(&self, bytes: usize) {
        if let Some(q) = &self.shared.queued_bytes {
            q.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn accept(&mut self, chunk: Chunk) -> Result<(), HotError> {
        let mut take: Vec<Msg> = Vec::with_capacity(chunk.msgs.len());
        let last_offset = chunk.msgs.last().map_or(-1, |m| m.offset);
        for m in chunk.msgs {
            if self.finished || m.offset < self.pos {
                continue; // already in the log, or past what this run reads
            }
            if let Some(stop) = self.stop_offset
                && m.offset >= stop
                && self.rerun.is_none()
            {
                self.report.seen_past_end = last_offset + 1 - stop;
                self.encode(std::mem::take(&mut take)).await?;
                self.close(None).await?;
                self.finished = true;
                break;
            }
            if let Some(plan) = &self.rerun
                && m.offset >= plan.end_offset
            {
                let end = plan.end_offset;
                self.encode(std::mem::take(&mut take)).await?;
                self.close(Some(end)).await?;
                self.rerun = None;
            }
            if let (Some(end_ts), Some(ts)) = (self.shared.ending_timestamp_ms, m.timestamp_ms)
                && ts >= end_ts
                && self.rerun.is_none()
            {
                self.encode(std::mem::take(&mut take)).await?;
                self.pos = m.offset;
                self.close(Some(m.offset)).await?;
                self.finished = true;
                break;
            }
            if self.open.is_none() {
                let limits = &self.shared.limits;
                self.open = Some(Open {
                    batch: OpenBatch::with_flush_rows(
                        limits.max_message_bytes,
                        limits.row_group_rows,
                        self.shared.flush_rows,
                    )
                    .with_speed(self.shared.speed.is_some()),
                    raw_slot: self.shared.tables.raw_in_flight().enter(self.app_id()),
                    start: self.planned_end,
                    opened_at: Instant::now(),
                    spans: BatchSpans::open(&self.shared.topic, self.partition, self.planned_end),
                });
            }
            self.pos = m.offset + 1;
            let before_window = matches!((self.shared.starting_timestamp_ms, m.timestamp_ms), (Some(s), Some(ts)) if ts < s);
            if !before_window {
                take.push(m);
            }
        }
        self.encode(take).await?;
        if let Some(plan) = &self.rerun
            && self.pos >= plan.end_offset
        {
            let end = plan.end_offset;
            self.close(Some(end)).await?;
            self.rerun = None;
        }
        if self.rerun.is_none() {
            let full = self.open.as_ref().is_some_and(|o| {
                o.batch.records() >= self.shared.limits.max_records
                    || o.batch.memory_bytes() >= self.shared.file_target_bytes
            });
            let caught_up = self.stop_offset.is_some_and(|s| self.pos >= s);
            if full || caught_up {
                self.close(None).await?;
            }
            if caught_up {
                self.finished = true;
            }
        }
        Ok(())
    }

    /// Decodes and encodes messages into the open batch, on a blocking thread.
    async fn encode(&mut self, msgs: Vec<Msg>) -> Result<(), HotError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let permit = self
            .shared
            .encode_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HotError::Task(e.to_string()))?;
        let (topic, partition) = (self.shared.topic.clone(), self.partition);
        let span = open.spans.decode(msgs.len());
        let (open, events) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _span = span.enter();
            open.batch
                .add(&msgs, &topic, partition, now_micros())
                .map(|()| {
                    let events = open.batch.take_events();
                    (open, events)
                })
        })
        .await
        .map_err(|e| HotError::Task(e.to_string()))??;
        self.open = Some(open);
        if let Some(speed) = &self.shared.speed {
            speed.events(self.partition, events).await;
        }
        Ok(())
    }

    /// The partition's txn app id in the tables.
    fn app_id(&self) -> String {
        crate::publish::app_id(&self.shared.topic, self.partition)
    }

    /// Closes the open batch at `end` (default: the current position) and hands it to the writer.
    async fn close(&mut self, end: Option<i64>) -> Result<(), HotError> {
        // A re-run commits its exact range even when none of its messages arrived.
        if self.open.is_none() && end.is_some() && self.rerun.is_some() {
            let limits = &self.shared.limits;
            self.open = Some(Open {
                batch: OpenBatch::new(limits.max_message_bytes, limits.row_group_rows),
                start: self.planned_end,
                opened_at: Instant::now(),
                spans: BatchSpans::open(&self.shared.topic, self.partition, self.planned_end),
                raw_slot: self.shared.tables.raw_in_flight().enter(self.app_id()),
            });
        }
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let end = end.unwrap_or(self.pos);
        let Open {
            batch,
            start,
            opened_at,
            mut spans,
            raw_slot,
        } = open;
        let (messages, message_bytes) = (batch.messages(), batch.message_bytes());
        spans.closed(self.seq, start, end, messages);
        let flush = spans.flush();
        let finished = tokio::task::spawn_blocking(move || flush.in_scope(|| batch.finish()))
            .await
            .map_err(|e| HotError::Task(e.to_string()))?;
        // The publishers wait for this batch only if it has rows for them.
        let has = |t: &str| finished.staged.iter().any(|s| s.table == t);
        let mut in_flight = Vec::with_capacity(2);
        if has(RAW_TABLE) {
            in_flight.push(raw_slot);
        } else {
            drop(raw_slot);
        }
        if has(DEAD_LETTER_TABLE) {
            in_flight.push(
                self.shared
                    .tables
                    .dead_letter_in_flight()
                    .enter(self.app_id()),
            );
        }
        // The previous batch must be committed before this one is planned. Meanwhile
        // this partition takes nothing in, so its publishers stop lingering over that
        // batch (a partition at the end of its run waits too, but holds up no intake:
        // there they linger, and more partitions share a commit).
        let waiting = self
            .inflight
            .as_ref()
            .filter(|h| !h.is_finished())
            .map(|_| self.shared.tables.waiting().enter(self.app_id()));
        self.settle_inflight().await?;
        drop(waiting);
        if self.report.lost_to.is_some() {
            return Ok(());
        }
        let plan = BatchPlan {
            version: LOG_FORMAT_VERSION,
            topic: self.shared.topic.clone(),
            partition: self.partition,
            seq: self.seq,
            start_offset: start,
            end_offset: end,
            messages,
            writer: self.shared.writer_id.clone(),
            planned_at: format_timestamp_micros(now_micros()),
        };
        check_follows(&self.shared.topic, self.partition, self.planned_end, &plan)?;
        self.seq += 1;
        self.planned_end = end;
        let (shared, log, revoked) = (self.shared.clone(), self.log.clone(), self.revoked.clone());
        let meta = BatchMeta {
            message_bytes,
            opened_at,
            revoked: Some(revoked),
            span: spans.batch,
            progress_units: u64::try_from(end - start).unwrap_or(0),
            in_flight,
        };
        self.inflight = Some(tokio::spawn(write_batch(shared, log, plan, finished, meta)));
        Ok(())
    }

    async fn settle_inflight(&mut self) -> Result<(), HotError> {
        let Some(h) = self.inflight.take() else {
            return Ok(());
        };
        let c = h.await.map_err(|e| HotError::Task(e.to_string()))??;
        if let Some(by) = c.lost_to {
            tracing::warn!(partition = self.partition, other_writer = %by, "another writer owns this partition's log: letting go");
            self.report.lost_to = Some(by);
            return Ok(());
        }
        self.report.batches += 1;
        self.report.raw_rows += c.raw_rows;
        self.report.dead_letter_rows += c.dead_letter_rows;
        self.report.bytes += c.bytes;
        self.report.end_offset = c.end;
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What `write_batch` needs besides the files.
#[derive(Debug)]
pub(crate) struct BatchMeta {
    /// Message bytes in the batch.
    pub(crate) message_bytes: u64,
    /// When its first message arrived.
    pub(crate) opened_at: Instant,
    /// Cancelled when the partition is revoked.
    pub(crate) revoked: Option<CancellationToken>,
    /// The batch's root span: the write and commit spans are its children.
    pub(crate) span: Span,
    /// Work this batch completes, for the progress display (messages; 0 for file batches).
    pub(crate) progress_units: u64,
    /// Its places among the batches the tables' publishers wait for (released when the
    /// write ends, published or not).
    pub(crate) in_flight: Vec<PartitionSlot>,
}

/// Plan → files → commit → Kafka offset, for one closed batch, inside its batch span
/// (so every log line of the write carries the partition and offset range).
pub(crate) async fn write_batch(
    shared: Shared,
    log: PartitionLog,
    plan: BatchPlan,
    finished: FinishedBatch,
    meta: BatchMeta,
) -> Result<Committed, HotError> {
    let span = meta.span.clone();
    write_batch_in_span(shared, log, plan, finished, meta)
        .instrument(span)
        .await
}

async fn write_batch_in_span(
    shared: Shared,
    log: PartitionLog,
    plan: BatchPlan,
    finished: FinishedBatch,
    meta: BatchMeta,
) -> Result<Committed, HotError> {
    let started = Instant::now();
    let BatchMeta {
        message_bytes,
        opened_at,
        revoked,
        span: batch_span,
        progress_units,
        in_flight: _in_flight,
    } = meta;
    let FinishedBatch {
        staged,
        dead_letter_reasons,
    } = finished;
    let (p, start, end) = (plan.partition, plan.start_offset, plan.end_offset);
    // A revoked partition belongs to another instance now: write nothing more of it.
    let lost = |what: &str| Committed {
        end,
        raw_rows: 0,
        dead_letter_rows: 0,
        bytes: 0,
        lost_to: Some(what.to_string()),
    };
    if revoked
        .as_ref()
        .is_some_and(CancellationToken::is_cancelled)
    {
        return Ok(lost("revoked before its plan"));
    }
    let write_span = tracing::info_span!(parent: &batch_span, "write", files = staged.len() as i64);
    if let Fence::Lost { by } = log.write_plan(&plan).instrument(write_span.clone()).await? {
        return Ok(lost(&by));
    }
    fail::fail_point!("after-plan");
    // The batch's rows are staged (Arrow IPC, one file per table) rather than encoded
    // here: the table's publisher merges every waiting batch's rows of an hour into one
    // Parquet file, so the tables get one file per hour per commit across partitions.
    let mut committed = Vec::with_capacity(staged.len());
    let mut rows_by_table = BTreeMap::new();
    let (mut raw_rows, mut dead_letter_rows) = (0, 0);
    let mut puts = Vec::with_capacity(staged.len());
    for s in staged {
        if s.table == RAW_TABLE {
            raw_rows += s.rows;
        } else {
            dead_letter_rows += s.rows;
        }
        let path = staging_path(&shared.topic, p, plan.seq, s.table);
        let rows = Arc::new(s.batches);
        let for_ipc = Arc::clone(&rows);
        let bytes = tokio::task::spawn_blocking(move || crate::stage::to_ipc(&for_ipc))
            .await
            .map_err(|e| HotError::Task(e.to_string()))?
            .map_err(|e| HotError::Task(format!("staging {path}: {e}")))?;
        committed.push(CommittedFile {
            path: path.clone(),
            table: s.table.to_string(),
            rows: s.rows,
            bytes: bytes.len() as u64,
            stats: None,
        });
        rows_by_table.insert(s.table, rows);
        let lake = shared.lake.clone();
        puts.push(async move { lake.put(&path, bytes).await });
    }
    futures::future::try_join_all(puts)
        .instrument(write_span.clone())
        .await?;
    drop(write_span);
    fail::fail_point!("after-files");
    if revoked
        .as_ref()
        .is_some_and(CancellationToken::is_cancelled)
    {
        return Ok(lost("revoked before its commit"));
    }
    // The speed layer's state of this partition covers the batch before the batch
    // commits: a restart or a new owner never resumes behind what it counted.
    if let Some(speed) = &shared.speed {
        speed.checkpoint(p).await?;
    }
    let commit = BatchCommit {
        version: LOG_FORMAT_VERSION,
        topic: plan.topic.clone(),
        partition: p,
        seq: plan.seq,
        start_offset: start,
        end_offset: end,
        files: committed,
        raw_rows,
        dead_letter_rows,
        writer: shared.writer_id.clone(),
        committed_at: format_timestamp_micros(now_micros()),
    };
    let commit_span = tracing::info_span!(parent: &batch_span, "commit", seq = plan.seq as i64);
    if let Fence::Lost { by } = log
        .write_commit(&commit)
        .instrument(commit_span.clone())
        .await?
    {
        return Ok(lost(&by));
    }
    fail::fail_point!("after-commit");
    // The Delta tables follow the log: readers of the tables see the batch from here on.
    // A crash before this point leaves it for the next start (`PartitionLog::resume`).
    shared
        .tables
        .publish(&commit, rows_by_table)
        .instrument(commit_span.clone())
        .await?;
    fail::fail_point!("after-delta");
    if let Some(c) = shared
        .consumer
        .as_ref()
        .filter(|_| shared.commit_kafka_offsets)
    {
        commit_span.in_scope(|| commit_offset(c, &shared.topic, p, end));
    }
    drop(commit_span);
    spans::record_rows(&batch_span, raw_rows, dead_letter_rows);
    shared
        .progress
        .advance(progress_units, raw_rows + dead_letter_rows);
    tracing::info!(
        partition = p,
        seq = plan.seq,
        offsets = %format!("{start}..{end}"),
        files = commit.files.len(),
        rows = raw_rows,
        dead_letters = dead_letter_rows,
        message_bytes,
                took_ms = started.elapsed().as_millis() as u64,
        "batch committed"
    );
    crate::metrics::storage_ok();
    crate::metrics::committed_offset(p, end);
    crate::metrics::batch_committed(
        &crate::metrics::BatchFigures {
            rows: raw_rows,
            dead_letters: dead_letter_reasons,
            message_bytes,
            batch_duration: opened_at.elapsed(),
            commit_latency: started.elapsed(),
        },
        now_micros() as f64 / 1e6,
    );
    Ok(Committed {
        end,
        raw_rows,
        dead_letter_rows,
        bytes: message_bytes,
        lost_to: None,
    })
}
