//! kvlake's streaming engine: reads the AuditEvent stream from a Kafka endpoint, writes
//! micro-batches to the lake's Delta tables and checkpoints them in the lake, exactly once.
//!
//! Start at [`pipeline`]: it draws the stages and wires them. Each stage is a module:
//! [`source`] (Kafka), [`partition`] (batching per topic partition), [`encode`] (decode
//! and Parquet encoding), [`stage`] (a committed batch's rows until they are published),
//! [`log`] (checkpoint log), [`publish`] (the Delta tables, one file per hour per commit)
//! and [`lake`] (object store).

pub mod backfill;
pub mod config;
pub mod encode;
pub mod error;
pub mod files;
pub mod lake {
    //! The lake lives in `kvlake-lake`; re-exported for the binary.
    pub use kvlake_lake::LakeError;
    pub use kvlake_lake::store::*;
}
pub mod log;
pub mod messages;
pub mod metrics;
pub mod migrate;
pub mod partition;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod source;
pub(crate) mod spans;
pub mod speed;
pub mod stage;

pub use config::{Assignment, BatchLimits, HotConfig, RunMode, StartPosition};
pub use error::HotError;
pub use lake::{Lake, LakeAuth};
pub use pipeline::{RunSummary, run, run_with_progress};
