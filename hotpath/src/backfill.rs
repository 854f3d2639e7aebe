//! The lake side of `kvlake backfill`: rows read from a query API land through the same
//! plan → files → commit sequence as the stream, one checkpoint log per source hour.
//!
//! A source (e.g. one Log Analytics table of one workspace) is a topic-like name; each
//! UTC hour of it is a partition of that topic (hours since the epoch), and offsets are
//! microseconds into the hour: a batch is a time slice `[start, end)` of the hour, and
//! its rows (one message each) take the offsets `start`, `start + 1`, … in a
//! deterministic order. So an hour is loaded once, resumes where its log ends after a
//! crash, and a re-run finds every slice committed and writes nothing.

use std::sync::Arc;

use kvlake_schemas::checkpoint::{BatchPlan, LOG_FORMAT_VERSION, Resume};
use kvlake_schemas::time::format_timestamp_micros;
use tokio::sync::Semaphore;

use crate::config::BatchLimits;
use crate::encode::OpenBatch;
use crate::error::HotError;
use crate::lake::Lake;
use crate::log::PartitionLog;
use crate::messages::Msg;
use crate::partition::{BatchMeta, Shared, write_batch};
use crate::publish::Tables;
use crate::spans::BatchSpans;

/// Microseconds in one hour: the offset space of one hour's log.
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// Where one hour of a source stands in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HourState {
    /// Everything before this offset (µs into the hour) is committed; 0 for a fresh hour.
    From(i64),
    /// A slice was planned but not committed (a crash): it must be written again with
    /// exactly this range before anything else.
    Rerun {
        /// Slice start, µs into the hour.
        start: i64,
        /// Slice end, µs into the hour.
        end: i64,
    },
}

/// What committing one slice wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct SliceWritten {
    /// Raw rows.
    pub raw_rows: u64,
    /// Dead-letter rows.
    pub dead_letter_rows: u64,
    /// Row bytes decoded.
    pub bytes: u64,
}

/// One source's sink into the lake: its topic-like name and the tables every hour's
/// commits are published to (one group-committing publisher per table for the run).
#[derive(Debug, Clone)]
pub struct SourceSink {
    shared: Shared,
}

impl SourceSink {
    /// A sink for `source` (also the `_source` of every row) in `lake`, with the tables
    /// opened by [`Tables::open`].
    pub fn new(lake: &Lake, tables: &Tables, source: &str, writer_id: &str) -> SourceSink {
        let limits = BatchLimits::default();
        SourceSink {
            shared: Shared {
                topic: source.to_string(),
                lake: lake.clone(),
                file_target_bytes: limits.file_target_bytes,
                limits,
                flush_rows: 8192,
                consumer: None,
                encode_permits: Arc::new(Semaphore::new(1)),
                starting_timestamp_ms: None,
                ending_timestamp_ms: None,
                writer_id: writer_id.to_string(),
                commit_kafka_offsets: false,
                queued_bytes: None,
                progress: crate::progress::none(),
                tables: tables.clone(),
                shape: None,
                // History has no place in detections raised in transit (as replays).
                speed: None,
                reading_done: None,
            },
        }
    }

    /// The log of `hour` (hours since the epoch) and where it stands, after publishing
    /// its last commit to the Delta tables if a crash came between the two.
    pub async fn hour(&self, hour: i32) -> Result<HourLog, HotError> {
        let log = PartitionLog::new(self.shared.lake.clone(), &self.shared.topic, hour);
        let (seq, state) = match log.resume_published(&self.shared.tables).await? {
            Resume::Fresh => (0, HourState::From(0)),
            Resume::From { seq, offset } => (seq, HourState::From(offset)),
            Resume::Rerun(plan) => (
                plan.seq,
                HourState::Rerun {
                    start: plan.start_offset,
                    end: plan.end_offset,
                },
            ),
        };
        Ok(HourLog {
            shared: self.shared.clone(),
            log,
            hour,
            seq,
            state,
        })
    }
}

/// One hour's checkpoint log, taking slices in order.
#[derive(Debug)]
pub struct HourLog {
    shared: Shared,
    log: PartitionLog,
    hour: i32,
    seq: u64,
    state: HourState,
}

impl HourLog {
    /// Where the hour stands.
    pub fn state(&self) -> &HourState {
        &self.state
    }

    /// Plan → files → commit for the slice `[start, end)` (µs into the hour) holding
    /// `rows` (one JSON record each, in their final order): row `i` gets offset
    /// `start + i`. The slice must start where the hour's log ends (or be exactly the
    /// uncommitted slice to re-run), and hold at most `end - start` rows.
    pub async fn commit(
        &mut self,
        start: i64,
        end: i64,
        rows: Vec<Vec<u8>>,
    ) -> Result<SliceWritten, HotError> {
        let expected = match self.state {
            HourState::From(pos) => (pos, None),
            HourState::Rerun { start, end } => (start, Some(end)),
        };
        let fits = usize::try_from(end - start).is_ok_and(|w| rows.len() <= w);
        if start != expected.0 || expected.1.is_some_and(|e| e != end) || end <= start || !fits {
            return Err(HotError::Task(format!(
                "{}[{}]: slice {start}..{end} with {} rows does not follow the log (expected a slice from {}{})",
                self.shared.topic,
                self.hour,
                rows.len(),
                expected.0,
                expected.1.map_or(String::new(), |e| format!(" to {e}"))
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let msgs: Vec<Msg> = rows
            .into_iter()
            .zip(start..)
            .map(|(payload, offset)| Msg {
                offset,
                timestamp_ms: None,
                payload,
            })
            .collect();
        let mut spans = BatchSpans::open(&self.shared.topic, self.hour, start);
        let n = msgs.len() as u64;
        spans.closed(self.seq, start, end, n);
        let (source, hour, limits) = (
            self.shared.topic.clone(),
            self.hour,
            self.shared.limits.clone(),
        );
        let decode_span = spans.decode(msgs.len());
        let flush_span = spans.flush();
        // Decoding and Parquet encoding are CPU work: off the runtime's threads.
        let (finished, bytes) = tokio::task::spawn_blocking(move || {
            let mut batch = OpenBatch::new(limits.max_message_bytes, limits.row_group_rows);
            decode_span.in_scope(|| batch.add(&msgs, &source, hour, now))?;
            let bytes = batch.message_bytes();
            Ok::<_, HotError>((flush_span.in_scope(|| batch.finish()), bytes))
        })
        .await
        .map_err(|e| HotError::Task(e.to_string()))??;
        let plan = BatchPlan {
            version: LOG_FORMAT_VERSION,
            topic: self.shared.topic.clone(),
            partition: self.hour,
            seq: self.seq,
            start_offset: start,
            end_offset: end,
            messages: n,
            writer: self.shared.writer_id.clone(),
            planned_at: format_timestamp_micros(now),
        };
        let meta = BatchMeta {
            message_bytes: bytes,
            opened_at: tokio::time::Instant::now(),
            revoked: None,
            in_flight: Vec::new(),
            span: spans.batch,
            progress_units: 0,
        };
        let c = write_batch(self.shared.clone(), self.log.clone(), plan, finished, meta).await?;
        if let Some(by) = c.lost_to {
            return Err(HotError::Task(format!(
                "{}[{}]: another writer ({by}) is loading this hour",
                self.shared.topic, self.hour
            )));
        }
        self.seq += 1;
        self.state = HourState::From(end);
        Ok(SliceWritten {
            raw_rows: c.raw_rows,
            dead_letter_rows: c.dead_letter_rows,
            bytes: c.bytes,
        })
    }
}
