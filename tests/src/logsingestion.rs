//! An HTTPS stand-in for the Azure Monitor Logs Ingestion API (a data collection endpoint):
//! `POST /dataCollectionRules/{immutableId}/streams/{stream}?api-version=2023-01-01`.
//!
//! It checks what the real endpoint checks: the rule and stream it serves, the API version,
//! a bearer token the managed-identity stand-in issued for `https://monitor.azure.com`, a
//! JSON array body (gzip accepted) of at most 1 MB whose columns the stream declares; it
//! answers 204, and 429 with `Retry-After` to as many requests as asked (throttling).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::standin::{AzureStandIn, TokenBook};

/// The audience an ingestion token must have (scope `https://monitor.azure.com/.default`).
pub const AUDIENCE: &str = "https://monitor.azure.com";
/// The API version the endpoint serves.
pub const API_VERSION: &str = "2023-01-01";
/// The largest body the endpoint accepts (1 MB).
pub const MAX_BODY: usize = 1024 * 1024;
/// The columns of the stream `Custom-KvlakeAlerts`, as deploy/bicep/modules/alerts.bicep
/// declares them (the docs test checks the two agree).
pub const COLUMNS: [&str; 20] = [
    "TimeGenerated",
    "AlertId",
    "Kind",
    "SubjectType",
    "Subject",
    "VaultName",
    "Identity",
    "CallerObjectId",
    "CallerIp",
    "WindowStart",
    "WindowEnd",
    "Observed",
    "Threshold",
    "Description",
    "DetectedAt",
    "EventTime",
    "SourceTopic",
    "SourcePartition",
    "SourceOffset",
    "SourceRecordIndex",
];

/// What the stand-in saw and did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests on the ingestion path.
    pub received: u64,
    /// Requests answered 204 (their rows kept).
    pub accepted: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests refused for another reason, with the status and message.
    pub refused: Vec<(u16, String)>,
    /// Largest body received, bytes (after gzip).
    pub largest_body: usize,
    /// When each request on the ingestion path was answered, and its status.
    pub answers: Vec<(std::time::Instant, u16)>,
}

#[derive(Debug, Default)]
struct State {
    rows: Vec<Map<String, Value>>,
    throttle: u64,
    stats: Stats,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A data collection endpoint serving one rule and stream, over HTTPS (the identity
/// stand-in's certificate, so `--ca-file` trusts it).
#[derive(Debug)]
pub struct LogsIngestionStandIn {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The DCR immutable id it serves.
    pub rule: String,
    /// The stream it serves.
    pub stream: String,
    state: Arc<Mutex<State>>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl LogsIngestionStandIn {
    /// Starts serving `rule`/`stream`, trusting the tokens `identity` issues.
    pub fn start(identity: &AzureStandIn, rule: &str, stream: &str) -> Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.tls.clone());
        let book = identity.token_book();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (st, route) = (state.clone(), (rule.to_string(), stream.to_string()));
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    if matches!(
                        stop_rx.try_recv(),
                        Err(std::sync::mpsc::TryRecvError::Disconnected)
                    ) {
                        return;
                    }
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_millis(200),
                        listener.accept(),
                    )
                    .await;
                    let Ok(Ok((tcp, _))) = accepted else { continue };
                    let (acceptor, st, book, route) =
                        (acceptor.clone(), st.clone(), book.clone(), route.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = serve(tls, st, book, &route).await;
                        }
                    });
                }
            });
        });
        Ok(LogsIngestionStandIn {
            port,
            rule: rule.to_string(),
            stream: stream.to_string(),
            state,
            _stop: stop_tx,
        })
    }

    /// The endpoint URL (`--alert-logs-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` requests with 429 and `Retry-After: 1`.
    pub fn throttle_next(&self, n: u64) {
        lock(&self.state).throttle = n;
    }

    /// Every row accepted, in order.
    pub fn rows(&self) -> Vec<Map<String, Value>> {
        lock(&self.state).rows.clone()
    }

    /// What it saw.
    pub fn stats(&self) -> Stats {
        lock(&self.state).stats.clone()
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    st: Arc<Mutex<State>>,
    book: TokenBook,
    route: &(String, String),
) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (status, extra, text) = if len > MAX_BODY {
        // The real endpoint refuses before reading a body over the limit.
        lock(&st).stats.refused.push((413, "body over 1 MB".into()));
        (
            "413 Payload Too Large",
            String::new(),
            err(
                "ContentLengthLimitExceeded",
                "The request body is over 1 MB.",
            ),
        )
    } else {
        while buf.len() < head_end + len {
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end..head_end + len].to_vec();
        handle(&request_line, &headers, &body, &st, &book, route)
    };
    let code = status
        .split(' ')
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    lock(&st)
        .stats
        .answers
        .push((std::time::Instant::now(), code));
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        text.len()
    );
    io.write_all(resp.as_bytes()).await?;
    io.write_all(text.as_bytes()).await?;
    io.shutdown().await?;
    Ok(())
}

fn err(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

fn handle(
    request_line: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    st: &Mutex<State>,
    book: &TokenBook,
    (rule, stream): &(String, String),
) -> (&'static str, String, String) {
    let refuse = |code: u16, status: &'static str, error: &str, msg: String| {
        lock(st).stats.refused.push((code, msg.clone()));
        (status, String::new(), err(error, &msg))
    };
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Ok(url) = url::Url::parse(&format!("https://127.0.0.1{target}")) else {
        return refuse(400, "400 Bad Request", "BadRequest", "bad target".into());
    };
    let path: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let ["dataCollectionRules", r, "streams", s] = path.as_slice() else {
        return refuse(
            404,
            "404 Not Found",
            "NotFound",
            format!("no route {target}"),
        );
    };
    lock(st).stats.received += 1;
    if method != "POST" {
        return refuse(
            405,
            "405 Method Not Allowed",
            "MethodNotAllowed",
            "POST only".into(),
        );
    }
    let version = url
        .query_pairs()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.to_string());
    if version.as_deref() != Some(API_VERSION) {
        return refuse(
            400,
            "400 Bad Request",
            "InvalidApiVersion",
            format!("api-version {version:?} is not supported"),
        );
    }
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    match book.audience(token) {
        Some(aud) if aud.trim_end_matches('/') == AUDIENCE => {}
        other => {
            return refuse(
                401,
                "401 Unauthorized",
                "InvalidToken",
                format!("a token for {AUDIENCE} is required (got audience {other:?})"),
            );
        }
    }
    if *r != rule.as_str() {
        return refuse(
            404,
            "404 Not Found",
            "DataCollectionRuleNotFound",
            format!("no data collection rule {r}"),
        );
    }
    if *s != stream.as_str() {
        return refuse(
            400,
            "400 Bad Request",
            "InvalidStream",
            format!("the rule declares no stream {s}"),
        );
    }
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return refuse(
            415,
            "415 Unsupported Media Type",
            "UnsupportedMediaType",
            "Content-Type must be application/json".into(),
        );
    }
    let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .is_err()
        {
            return refuse(400, "400 Bad Request", "BadRequest", "bad gzip".into());
        }
        out
    } else {
        body.to_vec()
    };
    {
        let mut s = lock(st);
        s.stats.largest_body = s.stats.largest_body.max(body.len());
        if s.throttle > 0 {
            s.throttle -= 1;
            s.stats.throttled += 1;
            return (
                "429 Too Many Requests",
                "retry-after: 1\r\n".into(),
                err("TooManyRequests", "Rate limit exceeded; retry after 1 s."),
            );
        }
    }
    let rows: Vec<Map<String, Value>> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => {
            let mut rows = Vec::new();
            for item in items {
                let Value::Object(o) = item else {
                    return refuse(
                        400,
                        "400 Bad Request",
                        "InvalidPayload",
                        "every item must be an object".into(),
                    );
                };
                rows.push(o);
            }
            rows
        }
        _ => {
            return refuse(
                400,
                "400 Bad Request",
                "InvalidPayload",
                "the body must be a JSON array".into(),
            );
        }
    };
    let declared: BTreeSet<&str> = COLUMNS.into_iter().collect();
    for row in &rows {
        if let Some(k) = row.keys().find(|k| !declared.contains(k.as_str())) {
            return refuse(
                400,
                "400 Bad Request",
                "InvalidPayload",
                format!("column {k} is not declared by the stream"),
            );
        }
        if !row.get("TimeGenerated").is_some_and(Value::is_string) {
            return refuse(
                400,
                "400 Bad Request",
                "InvalidPayload",
                "TimeGenerated is required".into(),
            );
        }
    }
    let mut s = lock(st);
    s.stats.accepted += 1;
    s.rows.extend(rows);
    ("204 No Content", String::new(), String::new())
}
