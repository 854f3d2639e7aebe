//! The alert sinks the service delivers to (the speed layer's `Sink` trait, implemented
//! here because this crate owns the HTTP client, the secrets and the identity).
//!
//! `webhook`: a JSON POST, signed with HMAC-SHA256 when a secret is set. `logs`: the Azure
//! Monitor Logs Ingestion API with the service identity's token.

pub mod logs;
pub mod webhook;

use std::time::Duration;

use kvlake_hotpath::speed::SinkError;

/// A failed HTTP exchange, as a retry: 429 and 5xx honour Retry-After (seconds).
pub(crate) fn status_error(
    sink: &str,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> SinkError {
    let after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(600)));
    SinkError::Retry {
        reason: format!("{sink} answered {status}"),
        after,
        throttled: status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    }
}

/// A transport error, without the URL's query (which could hold a signature).
pub(crate) fn transport_error(sink: &str, e: reqwest::Error) -> SinkError {
    SinkError::retry(format!("{sink}: {}", e.without_url()))
}
