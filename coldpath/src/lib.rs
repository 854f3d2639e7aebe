//! kvlake's batch engine: historical aggregates, baselines and anomaly rows built from
//! the committed raw data. Not built yet: the crate holds its place in the workspace.
