//! kvlake's lake: one object store under one root (`store`: retries, create-if-absent,
//! listings from an offset) and the Delta tables in it (`delta`, `maintain`).
//!
//! Both the hot path (raw and dead-letter tables) and the cold path (aggregate tables)
//! write through it, so it sits between `schemas` and them: `schemas` ← `lake` ←
//! `hotpath`, `coldpath`.

pub mod delta;
pub mod maintain;
pub mod store;
pub mod tables;

pub use delta::{CommitOutcome, DeltaTable, TableDef};
pub use store::{Created, Lake, LakeAuth, StorageRetry};

/// What can go wrong in the lake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    /// The lake URL or its options are wrong.
    #[error("lake {url}: {detail}")]
    Config {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A storage operation failed for good (after retries).
    #[error("storage {op} {path} failed: {source}")]
    Storage {
        /// Operation.
        op: &'static str,
        /// Object path.
        path: String,
        /// Cause.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A Delta table could not be read or committed.
    #[error("delta table {table}: {detail}")]
    Delta {
        /// Table path under the lake.
        table: String,
        /// What failed.
        detail: String,
    },
    /// A blocking task panicked.
    #[error("internal task failed: {0}")]
    Task(String),
}
