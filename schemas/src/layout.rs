//! The lake's layout: where tables, partitions, data files and the checkpoint log live.
//! Every path is relative to the lake root (plus an optional output prefix).

use crate::time::format_date;

/// Prefix of the raw table.
pub const RAW_TABLE: &str = "raw";
/// Prefix of the dead-letter table.
pub const DEAD_LETTER_TABLE: &str = "deadletter";
/// Prefix of kvlake's own metadata (checkpoint log).
pub const META_PREFIX: &str = "_kvlake";

/// `<table>/date=YYYY-MM-DD/hour=HH`: Hive-style, read as partitions by Spark, DuckDB,
/// Polars and DataFusion. The leading `_` of [`META_PREFIX`] makes those readers skip it.
pub fn partition_dir(table: &str, day: i32, hour: i32) -> String {
    format!(
        "{table}/date={}/hour={hour:02}",
        format_date(i64::from(day))
    )
}

/// A name safe in every object store path segment.
pub fn path_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Data file of one batch: derived only from the topic partition and the offset range,
/// so re-running a planned batch writes the very same names.
pub fn batch_file_name(topic: &str, partition: i32, start_offset: i64, end_offset: i64) -> String {
    format!(
        "{}-{partition:04}-{start_offset:020}-{end_offset:020}.parquet",
        path_safe(topic)
    )
}

/// Rows of one committed batch waiting to be merged into the table's Parquet files:
/// `_kvlake/staging/<topic>/<partition>/<seq>.<table>.arrow` (Arrow IPC), beside the
/// log whose commit names it, so a re-run writes the very same name.
pub fn staging_path(topic: &str, partition: i32, seq: u64, table: &str) -> String {
    format!(
        "{META_PREFIX}/staging/{}/{partition:04}/{seq:020}.{table}.arrow",
        path_safe(topic)
    )
}

/// The topic (path-safe), partition, sequence number and table of a staging path.
pub fn parse_staging_path(path: &str) -> Option<(&str, i32, u64, &str)> {
    let rest = path.strip_prefix(META_PREFIX)?.strip_prefix("/staging/")?;
    let mut parts = rest.split('/');
    let (topic, partition, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (seq, table) = name.strip_suffix(".arrow")?.split_once('.')?;
    (seq.len() == 20).then_some(())?;
    Some((topic, partition.parse().ok()?, seq.parse().ok()?, table))
}

/// 64-bit FNV-1a over a list of strings: a stable name for a set of inputs, the same
/// in every build and on every machine (compaction and merged batch files use it).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Folder of one topic partition's checkpoint log.
pub fn log_dir(topic: &str, partition: i32) -> String {
    format!("{META_PREFIX}/log/{}/{partition:04}", path_safe(topic))
}

/// What a checkpoint-log file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEntryKind {
    /// A batch plan: written before its files.
    Plan,
    /// A batch commit: written after its files.
    Commit,
}

impl LogEntryKind {
    fn suffix(self) -> &'static str {
        match self {
            LogEntryKind::Plan => "plan.json",
            LogEntryKind::Commit => "commit.json",
        }
    }
}

/// Path of a log entry: `<log_dir>/<seq:020>.plan.json` or `.commit.json`.
pub fn log_entry_path(topic: &str, partition: i32, seq: u64, kind: LogEntryKind) -> String {
    format!("{}/{seq:020}.{}", log_dir(topic, partition), kind.suffix())
}

/// Reads back the sequence number and kind from a log entry's file name.
pub fn parse_log_entry_name(file_name: &str) -> Option<(u64, LogEntryKind)> {
    let (seq, suffix) = file_name.split_once('.')?;
    let kind = match suffix {
        "plan.json" => LogEntryKind::Plan,
        "commit.json" => LogEntryKind::Commit,
        _ => return None,
    };
    (seq.len() == 20)
        .then(|| seq.parse().ok())
        .flatten()
        .map(|s| (s, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_sortable() {
        assert_eq!(
            partition_dir(RAW_TABLE, 20_416, 5),
            "raw/date=2025-11-24/hour=05"
        );
        assert_eq!(
            batch_file_name("kv/audit", 3, 100, 250),
            "kv_audit-0003-00000000000000000100-00000000000000000250.parquet"
        );
        let p = log_entry_path("audit", 1, 42, LogEntryKind::Commit);
        assert_eq!(p, "_kvlake/log/audit/0001/00000000000000000042.commit.json");
        let name = p.rsplit('/').next().unwrap();
        assert_eq!(parse_log_entry_name(name), Some((42, LogEntryKind::Commit)));
        assert_eq!(parse_log_entry_name("42.plan.json"), None);
        let staged = staging_path("kv/audit", 3, 7, RAW_TABLE);
        assert_eq!(
            staged,
            "_kvlake/staging/kv_audit/0003/00000000000000000007.raw.arrow"
        );
        assert_eq!(
            parse_staging_path(&staged),
            Some(("kv_audit", 3, 7, RAW_TABLE))
        );
        assert_eq!(parse_staging_path("_kvlake/staging/a/1/7.raw.arrow"), None);
        assert_eq!(stable_hash(&["a", "b"]), stable_hash(&["a", "b"]));
        assert_ne!(stable_hash(&["a", "b"]), stable_hash(&["ab"]));
        assert_eq!(
            parse_log_entry_name("00000000000000000042.plan.json.tmp"),
            None
        );
    }
}
