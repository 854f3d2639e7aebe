//! An HTTPS stand-in for the Azure Monitor Logs Query API (`POST /v1/workspaces/{id}/query`):
//! tables of rows, the KQL subset `kvlake backfill` sends, the timespan, limits and throttling.
//!
//! It checks bearer tokens against the managed-identity stand-in's issued tokens (audience
//! `https://api.loganalytics.io`), runs `T | where … | summarize n = count() by
//! bin(TimeGenerated, 1h)` / `| order by TimeGenerated asc | take N`, reads the timespan's
//! end as inclusive (the pessimistic reading), cuts a result above its row limit with a
//! `PartialError`, answers 429 + `Retry-After` on a schedule, and can hold queries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::standin::{AzureStandIn, TokenBook};

/// The audience a query token must have.
pub const AUDIENCE: &str = "https://api.loganalytics.io";

/// What the stand-in saw and did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests received on the query path.
    pub received: u64,
    /// Queries answered with a complete result.
    pub answered: u64,
    /// Answers 429.
    pub throttled: u64,
    /// Results cut with a PartialError.
    pub truncated: u64,
    /// Queries waiting at the hold gate now.
    pub held: u64,
    /// Every query text, in order.
    pub queries: Vec<String>,
}

/// Table → rows (time µs, row), sorted by time.
type Tables = BTreeMap<String, Vec<(i64, Map<String, Value>)>>;

#[derive(Debug, Default)]
struct State {
    /// Table → rows (time µs, row), sorted by time.
    tables: Tables,
    row_limit: Option<usize>,
    throttle_every: Option<u64>,
    deny: bool,
    hold_after: Option<u64>,
    stats: Stats,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Log Analytics workspace over HTTPS (the identity stand-in's certificate).
#[derive(Debug)]
pub struct LogAnalyticsStandIn {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The workspace id it serves.
    pub workspace: String,
    state: Arc<Mutex<State>>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl LogAnalyticsStandIn {
    /// Starts serving `workspace`, trusting the tokens `identity` issues.
    pub fn start(identity: &AzureStandIn, workspace: &str) -> Result<LogAnalyticsStandIn> {
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.tls.clone());
        let book = identity.token_book();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (st, ws) = (state.clone(), workspace.to_string());
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
                    let (acceptor, st, book, ws) =
                        (acceptor.clone(), st.clone(), book.clone(), ws.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = serve(tls, st, book, &ws).await;
                        }
                    });
                }
            });
        });
        Ok(LogAnalyticsStandIn {
            port,
            workspace: workspace.to_string(),
            state,
            _stop: stop_tx,
        })
    }

    /// The endpoint URL (`--endpoint`).
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Adds rows to a table (creating it); each needs a `TimeGenerated`.
    pub fn load(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = Map<String, Value>>,
    ) -> Result<usize> {
        let mut s = lock(&self.state);
        let t = s.tables.entry(table.to_string()).or_default();
        let mut n = 0;
        for row in rows {
            let time = row
                .get("TimeGenerated")
                .and_then(Value::as_str)
                .and_then(kvlake_schemas::time::parse_timestamp_micros)
                .context("a row without a TimeGenerated")?;
            t.push((time, row));
            n += 1;
        }
        t.sort_by_key(|(time, _)| *time);
        Ok(n)
    }

    /// Adds JSON lines (one row object per line, e.g. `kvlake generate --shape … --format lines`).
    pub fn load_lines(&self, table: &str, text: &str) -> Result<usize> {
        let rows = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(m)) => Ok(m),
                _ => bail!("not a row object: {l}"),
            })
            .collect::<Result<Vec<_>>>()?;
        self.load(table, rows)
    }

    /// Cuts any result with more than `n` rows (a `PartialError` beside the first `n`).
    pub fn set_row_limit(&self, n: usize) {
        lock(&self.state).row_limit = Some(n);
    }

    /// Answers every `n`-th request 429 with `Retry-After: 1`.
    pub fn throttle_every(&self, n: u64) {
        lock(&self.state).throttle_every = Some(n.max(1));
    }

    /// Answers 403, as without the Log Analytics Reader role.
    pub fn deny(&self) {
        lock(&self.state).deny = true;
    }

    /// Answers the first `n` queries, then holds the others until [`Self::release`].
    pub fn hold_after(&self, n: u64) {
        lock(&self.state).hold_after = Some(n);
    }

    /// Lets held queries go.
    pub fn release(&self) {
        lock(&self.state).hold_after = None;
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
    workspace: &str,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1 << 20 {
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
    while buf.len() < head_end + len {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    let (status, extra, text) = handle(&request_line, &headers, &body, &st, &book, workspace).await;
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

async fn handle(
    request_line: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    st: &Mutex<State>,
    book: &TokenBook,
    workspace: &str,
) -> (&'static str, String, String) {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path: Vec<&str> = target
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let ["v1", "workspaces", ws, "query"] = path.as_slice() else {
        return (
            "404 Not Found",
            String::new(),
            err("PathNotFoundError", "The requested path does not exist"),
        );
    };
    if method != "POST" {
        return (
            "405 Method Not Allowed",
            String::new(),
            err("MethodNotAllowed", "POST only"),
        );
    }
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    match book.audience(token) {
        None => {
            return (
                "401 Unauthorized",
                String::new(),
                err(
                    "AuthorizationRequiredError",
                    "Valid authentication was not provided",
                ),
            );
        }
        Some(aud) if aud.trim_end_matches('/') != AUDIENCE => {
            return (
                "401 Unauthorized",
                String::new(),
                err(
                    "InvalidTokenError",
                    &format!(
                        "The provided authentication is not valid for this resource: audience {aud}"
                    ),
                ),
            );
        }
        Some(_) => {}
    }
    let number = {
        let mut s = lock(st);
        s.stats.received += 1;
        s.stats.received
    };
    if !ws.eq_ignore_ascii_case(workspace) {
        return (
            "404 Not Found",
            String::new(),
            err(
                "WorkspaceNotFoundError",
                &format!("Workspace {ws} could not be found"),
            ),
        );
    }
    if lock(st).deny {
        return (
            "403 Forbidden",
            String::new(),
            err(
                "InsufficientAccessError",
                "The provided credentials have insufficient access to perform the requested operation",
            ),
        );
    }
    if lock(st).throttle_every.is_some_and(|n| number % n == 0) {
        lock(st).stats.throttled += 1;
        return (
            "429 Too Many Requests",
            "retry-after: 1\r\n".into(),
            err(
                "ThrottledError",
                "Your request was throttled; retry after 1 second",
            ),
        );
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return (
                "400 Bad Request",
                String::new(),
                err("BadArgumentError", &format!("body: {e}")),
            );
        }
    };
    let query = req["query"].as_str().unwrap_or("").to_string();
    // The hold gate: answer `n` queries, then wait for the test.
    let mut counted_held = false;
    loop {
        let go = {
            let mut s = lock(st);
            let go = s
                .hold_after
                .is_none_or(|n| s.stats.answered + s.stats.truncated < n);
            if !go && !counted_held {
                s.stats.held += 1;
                counted_held = true;
            } else if go && counted_held {
                s.stats.held -= 1;
            }
            go
        };
        if go {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    lock(st).stats.queries.push(query.clone());
    let span = req["timespan"].as_str().and_then(|t| {
        let (a, b) = t.split_once('/')?;
        Some((
            kvlake_schemas::time::parse_timestamp_micros(a)?,
            kvlake_schemas::time::parse_timestamp_micros(b)?,
        ))
    });
    let mut s = lock(st);
    match run(&s.tables, &query, span) {
        Err(Refusal::NoTable(t)) => (
            "400 Bad Request",
            String::new(),
            json!({"error": {"code": "BadArgumentError", "message": "The request had some invalid properties",
                "innererror": {"code": "SemanticError", "message": format!("A semantic error occurred.: 'where' operator: Failed to resolve table or column expression named '{t}'")}}})
            .to_string(),
        ),
        Err(Refusal::Syntax(m)) => ("400 Bad Request", String::new(), err("BadArgumentError", &m)),
        Ok((columns, mut rows)) => {
            let limit = s.row_limit.unwrap_or(usize::MAX);
            let cut = rows.len() > limit;
            rows.truncate(limit);
            let mut answer = json!({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]});
            if cut {
                s.stats.truncated += 1;
                answer["error"] = json!({"code": "PartialError", "message": "There were some errors when processing your query.",
                    "details": [{"code": "EngineError", "message": format!("Query result set has exceeded the internal record count limit {limit} records")}]});
            } else {
                s.stats.answered += 1;
            }
            ("200 OK", String::new(), answer.to_string())
        }
    }
}

enum Refusal {
    NoTable(String),
    Syntax(String),
}

type Rows = Vec<Vec<Value>>;

fn datetime_arg(v: &str) -> Option<i64> {
    let inner = v.trim().strip_prefix("datetime(")?.strip_suffix(')')?;
    kvlake_schemas::time::parse_timestamp_micros(inner.trim())
}

/// Runs the KQL subset kvlake sends.
fn run(
    tables: &Tables,
    query: &str,
    span: Option<(i64, i64)>,
) -> Result<(Vec<Value>, Rows), Refusal> {
    let mut stages = query.split('|').map(str::trim);
    let name = stages.next().unwrap_or("");
    let table = tables
        .get(name)
        .ok_or_else(|| Refusal::NoTable(name.to_string()))?;
    let mut rows: Vec<&(i64, Map<String, Value>)> = table
        .iter()
        .filter(|(t, _)| span.is_none_or(|(a, b)| *t >= a && *t <= b))
        .collect();
    let syntax = |s: &str| Refusal::Syntax(format!("the stand-in does not understand `{s}`"));
    for stage in stages {
        if let Some(cond) = stage.strip_prefix("where ") {
            for clause in cond.split(" and ") {
                let clause = clause.trim();
                let (col, op, val) = ["==", ">=", "<=", "<", ">"]
                    .iter()
                    .find_map(|op| {
                        clause
                            .split_once(op)
                            .map(|(c, v)| (c.trim(), *op, v.trim()))
                    })
                    .ok_or_else(|| syntax(clause))?;
                if col == "TimeGenerated" {
                    let at = datetime_arg(val).ok_or_else(|| syntax(clause))?;
                    rows.retain(|(t, _)| match op {
                        ">=" => *t >= at,
                        ">" => *t > at,
                        "<" => *t < at,
                        "<=" => *t <= at,
                        _ => *t == at,
                    });
                } else if op == "==" {
                    let want = val.trim_matches('"');
                    rows.retain(|(_, r)| r.get(col).and_then(Value::as_str) == Some(want));
                } else {
                    return Err(syntax(clause));
                }
            }
        } else if stage == "summarize n = count() by bin(TimeGenerated, 1h)" {
            let mut bins: BTreeMap<i64, u64> = BTreeMap::new();
            for (t, _) in &rows {
                *bins
                    .entry(t.div_euclid(3_600_000_000) * 3_600_000_000)
                    .or_default() += 1;
            }
            let columns = vec![
                json!({"name": "TimeGenerated", "type": "datetime"}),
                json!({"name": "n", "type": "long"}),
            ];
            let out = bins
                .into_iter()
                .map(|(t, n)| {
                    vec![
                        Value::from(kvlake_schemas::time::format_timestamp_micros(t)),
                        Value::from(n),
                    ]
                })
                .collect();
            return Ok((columns, out));
        } else if stage == "order by TimeGenerated asc" {
            rows.sort_by_key(|(t, _)| *t);
        } else if let Some(n) = stage.strip_prefix("take ") {
            let n: usize = n.trim().parse().map_err(|_| syntax(stage))?;
            rows.truncate(n);
        } else {
            return Err(syntax(stage));
        }
    }
    // Every column any row has; dynamic when a value is an object or array, returned as
    // JSON text as the API does.
    let mut names = BTreeSet::new();
    let mut dynamic = BTreeSet::new();
    let mut kinds: BTreeMap<String, &'static str> = BTreeMap::new();
    for (_, r) in &rows {
        for (k, v) in r {
            names.insert(k.clone());
            let kind = match v {
                Value::Object(_) | Value::Array(_) => {
                    dynamic.insert(k.clone());
                    "dynamic"
                }
                Value::Bool(_) => "bool",
                Value::Number(n) if n.is_i64() => "long",
                Value::Number(_) => "real",
                Value::String(_) if k == "TimeGenerated" => "datetime",
                Value::String(_) => "string",
                Value::Null => continue,
            };
            kinds.entry(k.clone()).or_insert(kind);
        }
    }
    let columns = names
        .iter()
        .map(|n| {
            let kind = if dynamic.contains(n) {
                "dynamic"
            } else {
                kinds.get(n).copied().unwrap_or("string")
            };
            json!({"name": n, "type": kind})
        })
        .collect();
    let out = rows
        .iter()
        .map(|(_, r)| {
            names
                .iter()
                .map(|n| match r.get(n) {
                    None => Value::Null,
                    Some(v @ (Value::Object(_) | Value::Array(_))) => Value::String(v.to_string()),
                    Some(v) => v.clone(),
                })
                .collect()
        })
        .collect();
    Ok((columns, out))
}
