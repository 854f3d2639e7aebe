//! The Azure Monitor Logs Query API client of `kvlake backfill`: one KQL query over one
//! time slice, with the service identity's token, throttling and truncation handled.
//!
//! `POST {endpoint}/v1/workspaces/{id}/query` with `{"query", "timespan"}`; the answer is
//! `{"tables":[{"name","columns","rows"}]}`, plus an `error` object with code
//! `PartialError` when the result was cut (more than 500,000 rows or ~64 MB compressed,
//! or a partial failure). A cut result is never used: the caller splits the slice.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::identity::Identity;

/// The public endpoint (Azure public cloud). Sovereign clouds have their own
/// (`https://api.loganalytics.azure.cn`, `https://api.loganalytics.us`); a private link
/// (AMPLS) keeps this name and resolves it to a private address.
pub const DEFAULT_ENDPOINT: &str = "https://api.loganalytics.io";

/// The role a caller needs on the workspace to query it.
pub const READER_ROLE: &str = "Log Analytics Reader";

/// The token scope for an endpoint: its cloud's Log Analytics audience.
pub fn default_scope(endpoint: &str) -> String {
    let host = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    let audience = if host.ends_with(".azure.cn") {
        "https://api.loganalytics.azure.cn"
    } else if host.ends_with(".us") {
        "https://api.loganalytics.us"
    } else {
        "https://api.loganalytics.io"
    };
    format!("{audience}/.default")
}

/// A column of a result table.
#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Kusto type (`string`, `datetime`, `long`, `real`, `bool`, `dynamic`, `guid`, …).
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// A result table.
#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    /// Usually `PrimaryResult`.
    #[serde(default)]
    pub name: String,
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    tables: Vec<Table>,
    #[serde(default)]
    error: Option<ApiError>,
}

/// The OneAPI error object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
    #[serde(default)]
    innererror: Option<Value>,
}

impl ApiError {
    /// `code: message`, and the first detail's message when there is one.
    fn describe(&self) -> String {
        let detail = self
            .details
            .first()
            .and_then(|d| d.get("message"))
            .and_then(Value::as_str)
            .or_else(|| {
                self.innererror
                    .as_ref()
                    .and_then(|i| i.get("message"))
                    .and_then(Value::as_str)
            });
        match detail {
            Some(d) if !d.is_empty() => format!("{}: {} ({d})", self.code, self.message),
            _ => format!("{}: {}", self.code, self.message),
        }
    }

    fn mentions(&self, what: &str) -> bool {
        self.message.contains(what)
            || self.details.iter().any(|d| d.to_string().contains(what))
            || self
                .innererror
                .as_ref()
                .is_some_and(|i| i.to_string().contains(what))
    }
}

/// What one query came to.
#[derive(Debug)]
pub enum Outcome {
    /// The whole result.
    Complete(Table),
    /// The service cut the result (too many rows or bytes) or timed out: split the slice.
    TooBig(String),
}

/// Why a query failed for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogsError {
    /// No token from the identity chain.
    #[error("cannot get a token for {scope} to query workspace {workspace}: {detail}")]
    Token {
        workspace: String,
        scope: String,
        detail: String,
    },
    /// 401: the token was refused (wrong audience, expired, another tenant).
    #[error(
        "Log Analytics refused the token for workspace {workspace} (401 {detail}): the token must be for {scope} (--token-scope) in the workspace's tenant"
    )]
    Unauthorized {
        workspace: String,
        scope: String,
        detail: String,
    },
    /// 403: the identity may not read the workspace.
    #[error(
        "the identity may not query workspace {workspace} (403 {detail}): grant it the {READER_ROLE} role on the workspace"
    )]
    Forbidden { workspace: String, detail: String },
    /// 404 or a workspace-not-found answer.
    #[error(
        "workspace {workspace} was not found at {endpoint} ({detail}): --workspace takes the Workspace ID, the GUID on the workspace's Overview page"
    )]
    WorkspaceNotFound {
        workspace: String,
        endpoint: String,
        detail: String,
    },
    /// The table does not exist in the workspace.
    #[error("workspace {workspace} has no table {table}")]
    NoSuchTable { workspace: String, table: String },
    /// Throttled or failing beyond the retry budget.
    #[error("query of workspace {workspace} failed after {attempts} attempts: {detail}")]
    GaveUp {
        workspace: String,
        attempts: u32,
        detail: String,
    },
    /// Any other refusal (a bad query, a bad request).
    #[error("query of workspace {workspace} refused ({status} {detail})")]
    Refused {
        workspace: String,
        status: u16,
        detail: String,
    },
}

/// Counters of one client, for the run's report.
#[derive(Debug, Default)]
pub struct Counters {
    /// Queries answered 200.
    pub queries: std::sync::atomic::AtomicU64,
    /// Answers 429.
    pub throttled: std::sync::atomic::AtomicU64,
    /// Cut results and timeouts.
    pub too_big: std::sync::atomic::AtomicU64,
    /// Other retried failures (5xx, network).
    pub retried: std::sync::atomic::AtomicU64,
}

/// One workspace's query client.
#[derive(Debug)]
pub struct LogsClient {
    http: reqwest::Client,
    url: String,
    endpoint: String,
    workspace: String,
    identity: Identity,
    scope: String,
    wait: Duration,
    max_retries: u32,
    /// What the client did.
    pub counters: Counters,
}

/// Longest wait a `Retry-After` may ask for before we wait less and try again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

impl LogsClient {
    /// A client for `workspace` at `endpoint`, asking the service to wait up to `wait`
    /// for a query (`Prefer: wait=`; at most 10 minutes) and retrying 429, 5xx and
    /// network failures up to `max_retries` times.
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        workspace: &str,
        identity: Identity,
        scope: String,
        wait: Duration,
        max_retries: u32,
    ) -> LogsClient {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        LogsClient {
            http,
            url: format!("{endpoint}/v1/workspaces/{workspace}/query"),
            endpoint,
            workspace: workspace.to_string(),
            identity,
            scope,
            wait: wait.clamp(Duration::from_secs(1), Duration::from_secs(600)),
            max_retries,
            counters: Counters::default(),
        }
    }

    /// Runs `query` over `timespan` (`<start>/<end>`, ISO 8601).
    pub async fn query(
        &self,
        table: &str,
        query: &str,
        timespan: &str,
    ) -> Result<Outcome, LogsError> {
        use std::sync::atomic::Ordering::Relaxed;
        let body = serde_json::json!({ "query": query, "timespan": timespan }).to_string();
        let mut attempt = 0u32;
        let mut backoff = Duration::from_millis(500);
        loop {
            attempt += 1;
            let give_up = |detail: String| LogsError::GaveUp {
                workspace: self.workspace.clone(),
                attempts: attempt,
                detail,
            };
            let token = self
                .identity
                .token(&self.scope)
                .await
                .map_err(|e| LogsError::Token {
                    workspace: self.workspace.clone(),
                    scope: self.scope.clone(),
                    detail: e.to_string(),
                })?;
            let sent = self
                .http
                .post(&self.url)
                .bearer_auth(token.token.secret())
                .header("Prefer", format!("wait={}", self.wait.as_secs()))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (status, retry_after, bytes) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match resp.bytes().await {
                        Ok(b) => (status, retry_after, b),
                        Err(e) => {
                            self.counters.retried.fetch_add(1, Relaxed);
                            if attempt > self.max_retries {
                                return Err(give_up(format!("reading the answer: {e}")));
                            }
                            tracing::warn!(error = %e, attempt, "log analytics: answer cut off; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            continue;
                        }
                    }
                }
                Err(e) if e.is_timeout() && !e.is_connect() => {
                    // The service did not answer within its own wait: the slice is too slow.
                    self.counters.too_big.fetch_add(1, Relaxed);
                    return Ok(Outcome::TooBig(format!("no answer within {:?}", self.wait)));
                }
                Err(e) => {
                    self.counters.retried.fetch_add(1, Relaxed);
                    if attempt > self.max_retries {
                        return Err(give_up(format!("{e}")));
                    }
                    tracing::warn!(error = %e, attempt, "log analytics: request failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let parsed: Result<Answer, _> = serde_json::from_slice(&bytes);
            let error = parsed
                .as_ref()
                .ok()
                .and_then(|a| a.error.clone())
                .unwrap_or_default();
            match status {
                200 => {
                    let answer = parsed.map_err(|e| {
                        give_up(format!("the answer is not the Logs Query API's JSON: {e}"))
                    })?;
                    if let Some(err) = &answer.error {
                        // A result with an error beside it is partial: never use it.
                        self.counters.too_big.fetch_add(1, Relaxed);
                        return Ok(Outcome::TooBig(err.describe()));
                    }
                    self.counters.queries.fetch_add(1, Relaxed);
                    let table = answer
                        .tables
                        .into_iter()
                        .find(|t| t.name == "PrimaryResult" || t.name.is_empty())
                        .ok_or_else(|| give_up("the answer has no PrimaryResult table".into()))?;
                    return Ok(Outcome::Complete(table));
                }
                429 => {
                    self.counters.throttled.fetch_add(1, Relaxed);
                    if attempt > self.max_retries {
                        return Err(give_up(format!("throttled (429 {})", error.describe())));
                    }
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(10))
                        .min(MAX_RETRY_AFTER);
                    tracing::info!(
                        retry_after_s = wait.as_secs(),
                        attempt,
                        "log analytics: throttled (429); waiting as Retry-After says"
                    );
                    tokio::time::sleep(wait).await;
                }
                401 => {
                    return Err(LogsError::Unauthorized {
                        workspace: self.workspace.clone(),
                        scope: self.scope.clone(),
                        detail: error.describe(),
                    });
                }
                403 => {
                    return Err(LogsError::Forbidden {
                        workspace: self.workspace.clone(),
                        detail: error.describe(),
                    });
                }
                404 => {
                    return Err(LogsError::WorkspaceNotFound {
                        workspace: self.workspace.clone(),
                        endpoint: self.endpoint.clone(),
                        detail: error.describe(),
                    });
                }
                400 if error.mentions("Failed to resolve table") => {
                    return Err(LogsError::NoSuchTable {
                        workspace: self.workspace.clone(),
                        table: table.to_string(),
                    });
                }
                400 if error.code.contains("WorkspaceNotFound")
                    || error.mentions("WorkspaceNotFound") =>
                {
                    return Err(LogsError::WorkspaceNotFound {
                        workspace: self.workspace.clone(),
                        endpoint: self.endpoint.clone(),
                        detail: error.describe(),
                    });
                }
                // The service gave up on the query's time: a smaller slice is faster.
                504 => {
                    self.counters.too_big.fetch_add(1, Relaxed);
                    return Ok(Outcome::TooBig(format!("504 {}", error.describe())));
                }
                500..=599 => {
                    self.counters.retried.fetch_add(1, Relaxed);
                    if attempt > self.max_retries {
                        return Err(give_up(format!("{status} {}", error.describe())));
                    }
                    tracing::warn!(status, attempt, "log analytics: server error; retrying");
                    tokio::time::sleep(retry_after.unwrap_or(backoff).min(MAX_RETRY_AFTER)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                _ => {
                    return Err(LogsError::Refused {
                        workspace: self.workspace.clone(),
                        status,
                        detail: if error.code.is_empty() {
                            String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
                        } else {
                            error.describe()
                        },
                    });
                }
            }
        }
    }
}

/// Whether `s` is a workspace id (a GUID).
pub fn is_workspace_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sovereign_endpoints_get_their_own_audience() {
        assert_eq!(
            default_scope(DEFAULT_ENDPOINT),
            "https://api.loganalytics.io/.default"
        );
        assert_eq!(
            default_scope("https://api.loganalytics.azure.cn"),
            "https://api.loganalytics.azure.cn/.default"
        );
        assert_eq!(
            default_scope("https://api.loganalytics.us/"),
            "https://api.loganalytics.us/.default"
        );
        assert_eq!(
            default_scope("https://127.0.0.1:8443"),
            "https://api.loganalytics.io/.default"
        );
    }

    #[test]
    fn workspace_ids_are_guids() {
        assert!(is_workspace_id("0b4a5c7e-1d2f-4a3b-9c8d-7e6f5a4b3c2d"));
        assert!(!is_workspace_id("my-workspace"));
        assert!(!is_workspace_id(
            "/subscriptions/x/resourceGroups/y/providers/Microsoft.OperationalInsights/workspaces/z"
        ));
    }

    #[test]
    fn a_partial_error_is_described_with_its_detail() {
        let e: ApiError = serde_json::from_value(serde_json::json!({
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [{"code": "EngineError", "message": "Query result set has exceeded the internal record count limit 500000 records"}]
        }))
        .unwrap();
        assert!(e.describe().starts_with("PartialError: There were"));
        assert!(e.describe().contains("500000 records"));
    }
}
