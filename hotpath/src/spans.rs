//! The spans of one batch: a `batch` root with `poll`, `decode`, `flush`, `write` and
//! `commit` children, carrying the topic, partition and offset range.
//!
//! Logs emitted inside them carry those fields (text and JSON formats print the span),
//! and the binary exports them as one OpenTelemetry trace per batch when asked to. They
//! are created once per batch (a `decode` once per chunk), never once per record, so
//! they cost next to nothing when nothing exports them.

use tracing::Span;
use tracing::field::Empty;

/// The spans of the batch being built.
#[derive(Debug)]
pub(crate) struct BatchSpans {
    /// The root: lives until the batch is committed (or dropped).
    pub(crate) batch: Span,
    /// From the batch's first message until it closes: the time spent reading it.
    poll: Option<Span>,
}

impl BatchSpans {
    /// Opens the spans of a batch starting at `start`.
    pub(crate) fn open(topic: &str, partition: i32, start: i64) -> Self {
        // A root of its own: one trace per batch, whatever span the caller is in.
        let batch = tracing::info_span!(
            parent: None,
            "batch",
            topic,
            partition,
            offset.start = start,
            offset.end = Empty,
            offsets = Empty,
            seq = Empty,
            messages = Empty,
            rows = Empty,
            dead_letters = Empty,
        );
        let poll = tracing::info_span!(parent: &batch, "poll", partition, offset.start = start);
        BatchSpans {
            batch,
            poll: Some(poll),
        }
    }

    /// A span around decoding and encoding `messages` messages of this batch.
    pub(crate) fn decode(&self, messages: usize) -> Span {
        tracing::info_span!(parent: &self.batch, "decode", messages = messages as i64)
    }

    /// The batch closed: reading it is over; its sequence number and range are known.
    pub(crate) fn closed(&mut self, seq: u64, start: i64, end: i64, messages: u64) {
        self.poll.take();
        record_range(&self.batch, seq, start, end, messages);
    }

    /// A span around writing the Parquet footers of the closed batch.
    pub(crate) fn flush(&self) -> Span {
        tracing::info_span!(parent: &self.batch, "flush")
    }
}

/// Counts as i64: exporters turn u64 values into strings (they may not fit OTLP's int).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Fills in what is known once a batch closes.
pub(crate) fn record_range(batch: &Span, seq: u64, start: i64, end: i64, messages: u64) {
    batch.record("seq", int(seq));
    batch.record("offset.end", end);
    // `offsets` is the "start..end" form every batch log line uses.
    batch.record(
        "offsets",
        tracing::field::display(format_args!("{start}..{end}")),
    );
    batch.record("messages", int(messages));
}

/// What a committed batch came to, on its root span.
pub(crate) fn record_rows(batch: &Span, rows: u64, dead_letters: u64) {
    batch.record("rows", int(rows));
    batch.record("dead_letters", int(dead_letters));
}
