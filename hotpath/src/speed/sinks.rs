//! What a delivery target implements: a batch of alerts in, delivered or a reason to retry
//! (with the server's Retry-After when it gave one). The HTTP sinks live in the binary,
//! which owns the HTTP client and the identity; the engine only sees this trait.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::alert::Alert;

/// The future a delivery returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A place alerts are delivered to, at least once (receivers de-duplicate by `alert_id`).
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// A stable name: the metrics label and the folder of its delivery markers.
    fn name(&self) -> &str;
    /// Largest request body the sink accepts (the Logs Ingestion API takes 1 MB).
    fn max_batch_bytes(&self) -> usize {
        1 << 20
    }
    /// Delivers `alerts` (one request).
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> SinkFuture<'a>;
}

/// Why a delivery did not go through; every failure is retried (an outage loses nothing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink refused or could not be reached.
    #[error("{reason}")]
    Retry {
        /// What happened (status, error), never a secret.
        reason: String,
        /// The server's Retry-After, when it said one.
        after: Option<Duration>,
        /// The server throttled (429).
        throttled: bool,
    },
}

impl SinkError {
    /// A failure to retry with the usual backoff.
    pub fn retry(reason: impl Into<String>) -> SinkError {
        SinkError::Retry {
            reason: reason.into(),
            after: None,
            throttled: false,
        }
    }
}
