//! Delta Lake's transaction-log format, as far as kvlake writes and reads it: actions,
//! table schemas, file statistics, checkpoints and the state a log replays to. Pure.
//!
//! kvlake's tables use protocol reader 1 / writer 2 (no deletion vectors, no column
//! mapping, no timestampNtz), which Synapse serverless, Fabric, Databricks, Spark,
//! DuckDB, Polars and delta-rs all read. The I/O (commits, checkpoints, maintenance)
//! is the hot path's `delta` module; this module only turns state into bytes and back.

pub mod actions;
pub mod checkpoint;
pub mod schema;
pub mod snapshot;
pub mod stats;

pub use actions::{Action, Add, CommitInfo, Metadata, Protocol, Remove, Txn};
pub use snapshot::Snapshot;

/// Folder of a table's transaction log, relative to the table root.
pub const LOG_DIR: &str = "_delta_log";

/// The pointer to the newest checkpoint, relative to the table root.
pub const LAST_CHECKPOINT: &str = "_delta_log/_last_checkpoint";

/// `_delta_log/<version:020>.json`: the commit of one table version.
pub fn commit_path(version: i64) -> String {
    format!("{LOG_DIR}/{version:020}.json")
}

/// `_delta_log/<version:020>.checkpoint.parquet`: a single-part checkpoint.
pub fn checkpoint_path(version: i64) -> String {
    format!("{LOG_DIR}/{version:020}.checkpoint.parquet")
}

/// What a file name in `_delta_log/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFile {
    /// A commit (`<v>.json`).
    Commit(i64),
    /// A single-part checkpoint (`<v>.checkpoint.parquet`).
    Checkpoint(i64),
}

/// Reads a `_delta_log/` file name; anything else (`_last_checkpoint`, `.crc`,
/// multi-part checkpoints, temporary files) is `None`.
pub fn parse_log_file(name: &str) -> Option<LogFile> {
    let (digits, rest) = name.split_at_checked(20)?;
    let version = digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse::<i64>().ok())??;
    match rest {
        ".json" => Some(LogFile::Commit(version)),
        ".checkpoint.parquet" => Some(LogFile::Checkpoint(version)),
        _ => None,
    }
}

/// The content of `_last_checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastCheckpoint {
    /// Version the checkpoint holds the state of.
    pub version: i64,
    /// Number of actions in it.
    pub size: i64,
}

/// Why a log or checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaFormatError {
    /// A commit line is not a Delta action kvlake understands.
    #[error("delta log version {version}: {detail}")]
    Commit {
        /// Table version.
        version: i64,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint could not be written or read.
    #[error("delta checkpoint: {0}")]
    Checkpoint(String),
    /// A data file's footer could not be read for statistics.
    #[error("parquet footer: {0}")]
    Footer(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_round_trip() {
        assert_eq!(commit_path(7), "_delta_log/00000000000000000007.json");
        assert_eq!(
            parse_log_file("00000000000000000007.json"),
            Some(LogFile::Commit(7))
        );
        assert_eq!(
            parse_log_file("00000000000000000020.checkpoint.parquet"),
            Some(LogFile::Checkpoint(20))
        );
        assert_eq!(parse_log_file("_last_checkpoint"), None);
        assert_eq!(parse_log_file("00000000000000000007.crc"), None);
        assert_eq!(parse_log_file("0000000000000000000x.json"), None);
        assert_eq!(
            checkpoint_path(20),
            "_delta_log/00000000000000000020.checkpoint.parquet"
        );
    }
}
