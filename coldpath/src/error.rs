//! The cold path's errors: what failed (storage, a definition, a setting, the state file)
//! and where, so the binary can say what to fix.

use thiserror::Error;

/// Anything `kvlake cold` can fail on.
#[derive(Debug, Error)]
pub enum ColdError {
    /// The lake could not be read or written.
    #[error("lake storage at `{path}`: {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A definition failed to plan or run in DataFusion.
    #[error("definition `{table}`: {source}")]
    Query {
        table: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// A result could not be shaped into its table's schema or written as Parquet.
    #[error("table `{table}`: {message}")]
    Output { table: String, message: String },
    /// A setting is out of range.
    #[error("setting `{name}`: {reason}")]
    Setting { name: String, reason: String },
    /// A Delta table of the lake could not be read or committed.
    #[error(transparent)]
    Lake(#[from] kvlake_lake::LakeError),
    /// A checkpoint-log entry or the cold path's own state file is unreadable.
    #[error("`{path}` is not a valid kvlake file: {reason}")]
    Corrupt { path: String, reason: String },
}

impl ColdError {
    pub(crate) fn storage(path: impl Into<String>, source: object_store::Error) -> ColdError {
        ColdError::Storage {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn query(table: &str, source: datafusion::error::DataFusionError) -> ColdError {
        ColdError::Query {
            table: table.to_string(),
            source: Box::new(source),
        }
    }

    pub(crate) fn output(table: &str, message: impl std::fmt::Display) -> ColdError {
        ColdError::Output {
            table: table.to_string(),
            message: message.to_string(),
        }
    }
}
