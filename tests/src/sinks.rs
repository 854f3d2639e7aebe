//! Stand-ins for the alert sinks, speaking their protocols over real sockets: a webhook
//! receiver (HTTP/1.1 POST, keeps every body and the signature header) that can play an
//! outage, and readers of the `alerts` table for assertions.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// When its body had arrived.
    pub at: std::time::SystemTime,
}

/// A webhook receiver on a free local port.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests still to refuse with 503 (an outage).
    refuse: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl WebhookReceiver {
    /// Starts the receiver; it answers 503 to the first `refuse` requests, then 200.
    pub fn start(refuse: usize) -> Result<WebhookReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let r = WebhookReceiver {
            url,
            received: Arc::default(),
            refuse: Arc::new(AtomicUsize::new(refuse)),
            refused: Arc::default(),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || {
                    let _ = me.serve(stream);
                });
            }
        });
        Ok(r)
    }

    fn serve(&self, stream: std::net::TcpStream) -> Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut out = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = BTreeMap::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h)?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            let refuse = self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let status = if refuse {
                self.refused.fetch_add(1, Ordering::SeqCst);
                "503 Service Unavailable\r\nRetry-After: 1"
            } else {
                self.received
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Received {
                        path,
                        headers,
                        body,
                        at: std::time::SystemTime::now(),
                    });
                "200 OK"
            };
            write!(out, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n")?;
            out.flush()?;
        }
    }

    /// Every accepted request.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Every alert object of every accepted body (bodies are JSON arrays).
    pub fn alerts(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .flat_map(|v| match v {
                Value::Array(a) => a,
                other => vec![other],
            })
            .collect()
    }
}

/// One row of the `alerts` table.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// alert_id.
    pub alert_id: String,
    /// kind.
    pub kind: String,
    /// subject_type (vault, identity or ip).
    pub subject_type: String,
    /// subject.
    pub subject: String,
    /// identity.
    pub identity: Option<String>,
    /// ip.
    pub ip: Option<String>,
    /// window_start, UTC micros.
    pub window_start: Option<i64>,
    /// window_end, UTC micros.
    pub window_end: Option<i64>,
    /// observed.
    pub observed: Option<f64>,
    /// detected_at, UTC micros.
    pub detected_at: Option<i64>,
    /// Event time of the triggering record, UTC micros.
    pub event_time: Option<i64>,
    /// caller_object_id.
    pub caller_object_id: Option<String>,
    /// vault_name.
    pub vault_name: Option<String>,
    /// The triggering record's partition.
    pub partition: Option<i32>,
    /// Its offset.
    pub offset: Option<i64>,
    /// date (from the partition folder).
    pub date: String,
}

/// Every row of `<lake>/alerts/`, through the test kit's own Delta replay.
pub fn alert_rows(lake: &Path) -> Result<Vec<AlertRow>> {
    let root = lake.join("alerts");
    if !root.join("_delta_log").is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for f in crate::delta::live_files(&root)? {
        let date = f
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("date="))
            .unwrap_or("")
            .to_string();
        let file = std::fs::File::open(&f).with_context(|| format!("{}", f.display()))?;
        for b in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let b = b?;
            let s = |name: &str, i: usize| {
                b.column_by_name(name).and_then(|c| {
                    let a = c.as_string::<i32>();
                    (!a.is_null(i)).then(|| a.value(i).to_string())
                })
            };
            let part = b
                .column_by_name("_partition")
                .map(|c| c.as_primitive::<Int32Type>().clone());
            let off = b
                .column_by_name("_offset")
                .map(|c| c.as_primitive::<Int64Type>().clone());
            let ts = |name: &str, i: usize| {
                b.column_by_name(name).and_then(|c| {
                    let a = c.as_primitive::<TimestampMicrosecondType>();
                    (!a.is_null(i)).then(|| a.value(i))
                })
            };
            for i in 0..b.num_rows() {
                out.push(AlertRow {
                    subject_type: s("subject_type", i).unwrap_or_default(),
                    identity: s("identity", i),
                    ip: s("ip", i),
                    window_start: ts("window_start", i),
                    window_end: ts("window_end", i),
                    observed: b.column_by_name("observed").and_then(|c| {
                        let a = c.as_primitive::<Float64Type>();
                        (!a.is_null(i)).then(|| a.value(i))
                    }),
                    detected_at: ts("detected_at", i),
                    event_time: ts("event_time", i),
                    alert_id: s("alert_id", i).unwrap_or_default(),
                    kind: s("kind", i).unwrap_or_default(),
                    subject: s("subject", i).unwrap_or_default(),
                    caller_object_id: s("caller_object_id", i),
                    vault_name: s("vault_name", i),
                    partition: part
                        .as_ref()
                        .and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
                    offset: off
                        .as_ref()
                        .and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
                    date: date.clone(),
                });
            }
        }
    }
    Ok(out)
}
