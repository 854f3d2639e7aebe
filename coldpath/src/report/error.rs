//! What `kvlake report` can fail on: the lake, a table that is not what the cold path
//! writes, a query, or a lake with nothing to report yet.

use thiserror::Error;

/// Anything building a report can fail on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] kvlake_lake::LakeError),
    /// The cold path has not written its tables yet.
    #[error("the lake has no `{table}` table yet: run `kvlake cold` on it first")]
    NoTables { table: String },
    /// A table holds files the report cannot read as that table.
    #[error("table `{table}`: {message}")]
    Table { table: String, message: String },
    /// A query of the report failed in DataFusion.
    #[error("report query `{what}`: {source}")]
    Query {
        what: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// An option is out of range.
    #[error("option `{name}`: {reason}")]
    Option { name: String, reason: String },
}

impl ReportError {
    pub(crate) fn table(table: &str, message: impl std::fmt::Display) -> ReportError {
        ReportError::Table {
            table: table.to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn query(what: &str, source: datafusion::error::DataFusionError) -> ReportError {
        ReportError::Query {
            what: what.to_string(),
            source: Box::new(source),
        }
    }
}
