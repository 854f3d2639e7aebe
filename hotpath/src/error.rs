//! Errors of the streaming engine. Each says what failed and, where it can, what to do.

use kvlake_schemas::checkpoint::LogError;

/// What can stop the hot path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HotError {
    /// Input the command was given is unusable (a file to convert, ...).
    #[error("{url}: {detail}")]
    LakeConfig {
        /// What was given.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The lake (storage or a Delta table) failed.
    #[error(transparent)]
    Lake(#[from] kvlake_lake::LakeError),
    /// The checkpoint log cannot be continued.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A checkpoint-log record could not be read.
    #[error("checkpoint log record {path} is unreadable: {detail}")]
    LogRecord {
        /// Path.
        path: String,
        /// Parse error.
        detail: String,
    },
    /// The Kafka client failed.
    #[error("kafka: {context}: {source}{hint}")]
    Kafka {
        /// What kvlake was doing.
        context: String,
        /// Cause.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
        /// A hint at the fix, with a leading separator, or empty.
        hint: String,
    },
    /// The Kafka endpoint refused this client (credentials, or no Kafka endpoint).
    #[error("kafka: {brokers} {refusal}")]
    KafkaRefused {
        /// `bootstrap.servers`.
        brokers: String,
        /// What it refused, with librdkafka's reason.
        refusal: crate::source::Refusal,
    },
    /// The topic does not exist or has no partitions.
    #[error("topic {topic}: {detail}")]
    Topic {
        /// Topic.
        topic: String,
        /// What is wrong.
        detail: String,
    },
    /// Parquet encoding failed (a bug or resource exhaustion, not bad input).
    #[error("parquet encoding: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl HotError {
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        let text = source.to_string();
        let hint = if text.contains("SASL")
            || text.contains("Authentication")
            || text.contains("authentication")
        {
            " (check the connection string or identity; the Event Hubs Basic tier has no Kafka endpoint: use Standard or above)"
        } else if text.contains("resolve")
            || text.contains("Connect")
            || text.contains("transport")
            || text.contains("timed out")
            || text.contains("Timed out")
        {
            " (check --brokers, DNS and the network path; Event Hubs listens on port 9093)"
        } else {
            ""
        };
        HotError::Kafka {
            context: context.into(),
            source: Box::new(source),
            hint: hint.to_string(),
        }
    }
}
