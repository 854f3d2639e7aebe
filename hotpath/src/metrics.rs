//! Every metric the hot path emits, named once here (Prometheus conventions,
//! `kvlake_hot_<what>_<unit>`), recorded once per batch, not once per record.
//! The `metrics` facade costs nothing until the binary installs an exporter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

/// Records (raw rows + dead letters) of committed batches.
pub const RECORDS_CONSUMED: &str = "kvlake_hot_records_consumed_total";
/// Message bytes of committed batches.
pub const BYTES_CONSUMED: &str = "kvlake_hot_bytes_consumed_total";
/// Raw rows committed.
pub const ROWS_WRITTEN: &str = "kvlake_hot_rows_written_total";
/// Dead-letter rows committed, by `reason`.
pub const DEAD_LETTERS: &str = "kvlake_hot_dead_letters_total";
/// Parquet files committed, by `table`.
pub const FILES_WRITTEN: &str = "kvlake_hot_files_written_total";
/// Parquet bytes committed.
pub const FILE_BYTES_WRITTEN: &str = "kvlake_hot_file_bytes_written_total";
/// Batches committed.
pub const BATCHES: &str = "kvlake_hot_batches_committed_total";
/// From a batch's first message to its commit.
pub const BATCH_DURATION: &str = "kvlake_hot_batch_duration_seconds";
/// From a batch's plan to its commit (files + log writes).
pub const COMMIT_LATENCY: &str = "kvlake_hot_commit_latency_seconds";
/// Unix time of the last commit; its age is `time() - kvlake_hot_last_commit_timestamp_seconds`.
pub const LAST_COMMIT: &str = "kvlake_hot_last_commit_timestamp_seconds";
/// Storage operations retried after a transient error (counted by the lake crate).
pub use kvlake_lake::store::STORAGE_RETRIES;
/// Errors the Kafka consumer reported (librdkafka retries them).
pub const BROKER_ERRORS: &str = "kvlake_hot_broker_errors_total";
/// Partitions this instance reads.
pub const PARTITIONS_ASSIGNED: &str = "kvlake_hot_partitions_assigned";
/// Per partition: the broker's high watermark minus the lake's committed offset.
pub const PARTITION_LAG: &str = "kvlake_hot_partition_lag_messages";
/// Per partition: the offset the lake's log has committed up to.
pub const COMMITTED_OFFSET: &str = "kvlake_hot_committed_offset";

/// Registers descriptions, so every metric shows up with help text.
pub fn describe() {
    metrics::describe_counter!(
        RECORDS_CONSUMED,
        "records of committed batches (raw rows + dead letters)"
    );
    metrics::describe_counter!(BYTES_CONSUMED, "message bytes of committed batches");
    metrics::describe_counter!(ROWS_WRITTEN, "raw rows committed");
    metrics::describe_counter!(DEAD_LETTERS, "dead-letter rows committed, by reason");
    metrics::describe_counter!(FILES_WRITTEN, "parquet files committed, by table");
    metrics::describe_counter!(FILE_BYTES_WRITTEN, "parquet bytes committed");
    metrics::describe_counter!(BATCHES, "batches committed");
    metrics::describe_histogram!(
        BATCH_DURATION,
        metrics::Unit::Seconds,
        "first message of a batch to its commit"
    );
    metrics::describe_histogram!(
        COMMIT_LATENCY,
        metrics::Unit::Seconds,
        "plan to commit of a batch"
    );
    metrics::describe_gauge!(
        LAST_COMMIT,
        metrics::Unit::Seconds,
        "unix time of the last commit"
    );
    metrics::describe_counter!(STORAGE_RETRIES, "storage operations retried");
    metrics::describe_counter!(BROKER_ERRORS, "errors reported by the kafka consumer");
    metrics::describe_gauge!(PARTITIONS_ASSIGNED, "partitions this instance reads");
    metrics::describe_gauge!(
        PARTITION_LAG,
        "high watermark minus the lake's committed offset, per partition"
    );
    metrics::describe_gauge!(
        COMMITTED_OFFSET,
        "offset the lake's log has committed up to, per partition"
    );
}

/// What one committed batch adds to the metrics.
#[derive(Debug, Default)]
pub struct BatchFigures {
    /// Raw rows.
    pub rows: u64,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// Message bytes.
    pub message_bytes: u64,
    /// First message to commit.
    pub batch_duration: Duration,
    /// Plan to commit.
    pub commit_latency: Duration,
}

/// Records the Parquet files a table's commit added (the merged files of every batch in
/// it: counted once per commit, not per batch).
pub fn files_published(table: &str, files: u64, bytes: u64) {
    metrics::counter!(FILES_WRITTEN, "table" => table.to_string()).increment(files);
    metrics::counter!(FILE_BYTES_WRITTEN).increment(bytes);
}

/// Records a committed batch.
pub fn batch_committed(f: &BatchFigures, now_unix_seconds: f64) {
    let dead: u64 = f.dead_letters.values().sum();
    metrics::counter!(RECORDS_CONSUMED).increment(f.rows + dead);
    metrics::counter!(BYTES_CONSUMED).increment(f.message_bytes);
    metrics::counter!(ROWS_WRITTEN).increment(f.rows);
    for (reason, n) in &f.dead_letters {
        metrics::counter!(DEAD_LETTERS, "reason" => reason.clone()).increment(*n);
    }
    metrics::counter!(BATCHES).increment(1);
    metrics::histogram!(BATCH_DURATION).record(f.batch_duration.as_secs_f64());
    metrics::histogram!(COMMIT_LATENCY).record(f.commit_latency.as_secs_f64());
    metrics::gauge!(LAST_COMMIT).set(now_unix_seconds);
    HEALTH
        .last_commit_unix_ms
        .store((now_unix_seconds * 1000.0) as i64, Ordering::Relaxed);
}

/// What `/readyz` looks at: process-wide, like the metrics registry.
#[derive(Debug)]
pub struct Health {
    /// Partitions being read.
    pub partitions: AtomicUsize,
    /// Unix ms of the last commit (0: none yet).
    pub last_commit_unix_ms: AtomicI64,
}

/// The process's health state.
pub static HEALTH: Health = Health {
    partitions: AtomicUsize::new(0),
    last_commit_unix_ms: AtomicI64::new(0),
};

/// False while a storage operation is failing and being retried.
pub fn storage_healthy() -> bool {
    kvlake_lake::store::storage_healthy()
}

/// A storage operation succeeded.
pub fn storage_ok() {
    kvlake_lake::store::storage_recovered();
}

/// Partitions read changed.
pub fn partitions_assigned(n: usize) {
    HEALTH.partitions.store(n, Ordering::Relaxed);
    metrics::gauge!(PARTITIONS_ASSIGNED).set(n as f64);
}

/// The lake-committed offset of each partition, for the lag gauge.
static COMMITTED: std::sync::Mutex<BTreeMap<i32, i64>> = std::sync::Mutex::new(BTreeMap::new());

/// A partition's log now ends at `offset` (after a commit, or where it resumes).
pub fn committed_offset(partition: i32, offset: i64) {
    COMMITTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(partition, offset);
    metrics::gauge!(COMMITTED_OFFSET, "partition" => partition.to_string()).set(offset as f64);
}

/// Sets the lag gauges from fresh high watermarks.
pub fn lag(high_watermarks: &BTreeMap<i32, i64>) {
    let committed = COMMITTED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (p, high) in high_watermarks {
        if let Some(c) = committed.get(p) {
            metrics::gauge!(PARTITION_LAG, "partition" => p.to_string())
                .set((high - c).max(0) as f64);
        }
    }
}

/// Alerts the speed layer raised (won in the outbox), by `kind`.
pub const ALERTS: &str = "kvlake_hot_alerts_total";
/// Alert deliveries, by `sink` and `outcome` (delivered, failed, throttled, deferred).
pub const ALERT_DELIVERIES: &str = "kvlake_alert_deliveries_total";
/// Alerts waiting for a sink, by `sink`.
pub const ALERT_OUTBOX_PENDING: &str = "kvlake_alert_outbox_pending";
/// From an alert's detection to its delivery, by `sink`.
pub const ALERT_DELIVERY_LATENCY: &str = "kvlake_alert_delivery_latency_seconds";
/// Records older than the speed layer's allowed lateness (left to the cold path).
pub const ALERT_LATE_RECORDS: &str = "kvlake_hot_alert_late_records_total";
/// Records the speed layer's rules were handed (a chunk's records, as decoded).
pub const ALERT_RECORDS: &str = "kvlake_hot_alert_records_total";
/// Bytes the speed layer's rule state holds, roughly.
pub const ALERT_STATE_BYTES: &str = "kvlake_hot_alert_state_bytes";

/// Registers the speed layer's metrics, with a zero for every kind and sink, so that
/// dashboards show them before the first alert.
pub fn describe_speed(sinks: impl Iterator<Item = String>) {
    metrics::describe_counter!(ALERTS, "alerts raised by the speed layer, by kind");
    metrics::describe_counter!(ALERT_DELIVERIES, "alert deliveries by sink and outcome");
    metrics::describe_gauge!(ALERT_OUTBOX_PENDING, "alerts waiting for delivery, by sink");
    metrics::describe_histogram!(
        ALERT_DELIVERY_LATENCY,
        metrics::Unit::Seconds,
        "detection of an alert to its delivery, by sink"
    );
    metrics::describe_counter!(
        ALERT_LATE_RECORDS,
        "records later than the speed layer's allowed lateness, left to the cold path"
    );
    metrics::describe_counter!(ALERT_RECORDS, "records handed to the speed layer's rules");
    metrics::describe_gauge!(
        ALERT_STATE_BYTES,
        "bytes held by the speed layer's rule state"
    );
    for k in crate::speed::alert::kind::ALL {
        metrics::counter!(ALERTS, "kind" => k).increment(0);
    }
    metrics::counter!(ALERT_LATE_RECORDS).increment(0);
    metrics::counter!(ALERT_RECORDS).increment(0);
    // The alerts table is a delivery target too: its series exist without any sink.
    for s in std::iter::once("table".to_string()).chain(sinks) {
        metrics::gauge!(ALERT_OUTBOX_PENDING, "sink" => s.clone()).set(0.0);
        metrics::counter!(ALERT_DELIVERIES, "sink" => s, "outcome" => "delivered").increment(0);
    }
}

/// An alert was raised.
pub fn alert_raised(kind: &str) {
    metrics::counter!(ALERTS, "kind" => kind.to_string()).increment(1);
}

/// A delivery attempt of one alert (or batch) ended with `outcome`.
pub fn delivery(sink: &str, outcome: &'static str) {
    metrics::counter!(ALERT_DELIVERIES, "sink" => sink.to_string(), "outcome" => outcome)
        .increment(1);
}

/// An alert reached a sink `seconds` after its detection.
pub fn delivery_latency(sink: &str, seconds: f64) {
    metrics::histogram!(ALERT_DELIVERY_LATENCY, "sink" => sink.to_string()).record(seconds);
}

/// Alerts waiting for a sink.
pub fn outbox_pending(sink: &str, n: usize) {
    metrics::gauge!(ALERT_OUTBOX_PENDING, "sink" => sink.to_string()).set(n as f64);
}

/// Records left to the cold path.
pub fn late_records(n: u64) {
    metrics::counter!(ALERT_LATE_RECORDS).increment(n);
}

/// Records handed to the rules.
pub fn speed_records(n: usize) {
    metrics::counter!(ALERT_RECORDS).increment(n as u64);
}

/// Size of the rule state.
pub fn state_bytes(n: usize) {
    metrics::gauge!(ALERT_STATE_BYTES).set(n as f64);
}
