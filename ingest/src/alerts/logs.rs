//! The Azure Monitor Logs Ingestion API: `POST {dce}/dataCollectionRules/{dcr}/streams/
//! {stream}?api-version=2023-01-01` with a bearer token for `https://monitor.azure.com/.default`
//! from the service identity, at most 1 MB per call, honouring 429 and Retry-After. Alerts
//! land in the custom table the DCR routes the stream to (deploy/bicep/modules/alerts.bicep).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kvlake_hotpath::speed::{Alert, Sink, SinkError, SinkFuture};
use kvlake_schemas::time::format_timestamp_micros;
use serde::Serialize;

use crate::identity::Identity;

/// The token scope of Azure Monitor.
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com/.default";
/// The API version kvlake speaks.
pub const API_VERSION: &str = "2023-01-01";
/// The default stream (the DCR's stream declaration in deploy/bicep/modules/alerts.bicep).
pub const DEFAULT_STREAM: &str = "Custom-KvlakeAlerts";

/// One row of the stream: Log Analytics column names (no leading underscore).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row<'a> {
    time_generated: String,
    alert_id: &'a str,
    kind: &'a str,
    subject_type: &'a str,
    subject: &'a str,
    vault_name: Option<&'a str>,
    identity: Option<&'a str>,
    caller_object_id: Option<&'a str>,
    caller_ip: Option<&'a str>,
    window_start: String,
    window_end: String,
    observed: f64,
    threshold: f64,
    description: &'a str,
    detected_at: String,
    event_time: Option<String>,
    source_topic: Option<&'a str>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    source_record_index: Option<i32>,
}

fn row(a: &Alert) -> Row<'_> {
    Row {
        time_generated: format_timestamp_micros(a.detected_at),
        alert_id: &a.alert_id,
        kind: &a.kind,
        subject_type: &a.subject_type,
        subject: &a.subject,
        vault_name: a.vault_name.as_deref(),
        identity: a.identity.as_deref(),
        caller_object_id: a.caller_object_id.as_deref(),
        caller_ip: a.ip.as_deref(),
        window_start: format_timestamp_micros(a.window_start),
        window_end: format_timestamp_micros(a.window_end),
        observed: a.observed,
        threshold: a.threshold,
        description: &a.description,
        detected_at: format_timestamp_micros(a.detected_at),
        event_time: a.event_time.map(format_timestamp_micros),
        source_topic: a.source.as_deref(),
        source_partition: a.partition,
        source_offset: a.offset,
        source_record_index: a.record_index,
    }
}

/// The Logs Ingestion sink.
pub struct LogsIngestion {
    url: reqwest::Url,
    http: reqwest::Client,
    identity: Identity,
    token: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for LogsIngestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsIngestion")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl LogsIngestion {
    /// The sink for `endpoint` (the data collection endpoint's logs ingestion URL), the
    /// DCR's immutable id and a stream name.
    pub fn new(
        endpoint: &str,
        rule: &str,
        stream: &str,
        http: reqwest::Client,
        identity: Identity,
    ) -> anyhow::Result<LogsIngestion> {
        if rule.is_empty() || !rule.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            anyhow::bail!(
                "--alert-logs-rule `{rule}`: write the DCR's immutable id (dcr-<32 hex digits>)"
            );
        }
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            anyhow::bail!(
                "--alert-logs-stream `{stream}`: write a stream name such as {DEFAULT_STREAM}"
            );
        }
        let url = format!(
            "{}/dataCollectionRules/{rule}/streams/{stream}?api-version={API_VERSION}",
            endpoint.trim_end_matches('/')
        );
        let url = reqwest::Url::parse(&url)
            .map_err(|e| anyhow::anyhow!("--alert-logs-endpoint `{endpoint}`: not a URL ({e})"))?;
        if url.scheme() != "https" {
            anyhow::bail!(
                "--alert-logs-endpoint `{endpoint}`: must be https:// (the data collection endpoint)"
            );
        }
        Ok(LogsIngestion {
            url,
            http,
            identity,
            token: Mutex::new(None),
        })
    }

    async fn bearer(&self) -> Result<String, SinkError> {
        if let Some((t, exp)) = &*self.token.lock().unwrap_or_else(|p| p.into_inner())
            && *exp - 300 > now_s()
        {
            return Ok(t.clone());
        }
        let t = self
            .identity
            .token(MONITOR_SCOPE)
            .await
            .map_err(|e| SinkError::retry(format!("no token for {MONITOR_SCOPE}: {e}")))?;
        let secret = t.token.secret().to_string();
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((secret.clone(), t.expires_on.unix_timestamp()));
        Ok(secret)
    }
}

impl Sink for LogsIngestion {
    fn name(&self) -> &str {
        "logs-ingestion"
    }

    fn max_batch_bytes(&self) -> usize {
        // The API's limit is 1 MB per call; the rows are larger than the alerts' JSON.
        700 * 1024
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> SinkFuture<'a> {
        Box::pin(async move {
            let rows: Vec<Row<'_>> = alerts.iter().map(row).collect();
            let body = serde_json::to_vec(&rows).map_err(|e| SinkError::retry(e.to_string()))?;
            if body.len() > 1_000_000 {
                return Err(SinkError::retry(
                    "a batch is over 1 MB (an alert too large?)",
                ));
            }
            let token = self.bearer().await?;
            let resp = self
                .http
                .post(self.url.clone())
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| super::transport_error("logs-ingestion", e))?;
            if resp.status().is_success() {
                return Ok(());
            }
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(super::status_error(
                "logs-ingestion",
                resp.status(),
                resp.headers(),
            ))
        })
    }
}
