//! How far a run has got, told to whoever displays it: the work a run has ahead of it
//! and each committed batch. The engine only calls these hooks; the binary draws bars.
//!
//! Calls come once per partition start and once per committed batch, never per record.

use std::sync::Arc;

/// Receives a run's progress. Every method has a no-op default.
pub trait ProgressSink: Send + Sync + std::fmt::Debug {
    /// `units` more work became known (messages to read for the stream, files for `convert`).
    fn add_total(&self, units: u64) {
        let _ = units;
    }
    /// `units` of work are done; `rows` raw rows and dead letters were committed with them.
    fn advance(&self, units: u64, rows: u64) {
        let _ = (units, rows);
    }
    /// What is being worked on now (e.g. the input file).
    fn working_on(&self, what: &str) {
        let _ = what;
    }
}

/// A sink that ignores everything: the default.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {}

/// The shared handle the engine keeps.
pub type Progress = Arc<dyn ProgressSink>;

/// The default handle.
pub fn none() -> Progress {
    Arc::new(NoProgress)
}
