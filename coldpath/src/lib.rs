//! kvlake's batch engine: historical aggregates, baselines and anomaly rows built with
//! DataFusion from the raw data the hot path (or `kvlake convert`) has committed.
//!
//! The definitions are SQL files in `sql/`, in the subset Spark SQL also accepts, so the
//! same tables can be built on Spark (`deploy/spark/`). A run reads the checkpoint log
//! after its own last position, recomputes the days that gained data, then re-derives
//! baselines and anomalies from the first such day to the newest; every table-day is one
//! Parquet object, replaced in a single write.

pub mod commits;
pub mod definitions;
pub mod engine;
pub mod error;
pub mod job;
pub mod layout;
pub mod report;
pub mod settings;
pub mod state;

pub use definitions::{TABLES, Table};
pub use error::ColdError;
pub use job::{ColdJob, ColdReport, Rebuild, Step};
pub use settings::Thresholds;
