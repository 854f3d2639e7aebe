//! An OTLP/HTTP collector stand-in: accepts `POST /v1/traces` and `POST /v1/metrics`
//! (protobuf), decodes them with opentelemetry-proto and keeps them for the test to read.
//!
//! Plain HTTP/1.1 with keep-alive on loopback, one thread per connection, enough for the
//! exporter's requests; it answers 200 with an empty (valid) protobuf response.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Debug, Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    other: Vec<String>,
}

/// The receiver; stops accepting when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    port: u16,
    received: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port.
    pub fn start() -> Result<OtlpReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let r = r.clone();
                    std::thread::spawn(move || {
                        let _ = serve(c, &r);
                    });
                }
            }
        });
        Ok(OtlpReceiver {
            port,
            received,
            stop,
        })
    }

    /// The base URL to give kvlake (`--otlp-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received, with its resource's attributes.
    pub fn spans(&self) -> Vec<(Attributes, Span)> {
        let r = lock(&self.received);
        let mut out = Vec::new();
        for req in &r.traces {
            for rs in &req.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// The last value of a metric's sum (added over its data points' attribute sets), as
    /// received: OTLP sums are cumulative, so the last export holds the total.
    pub fn last_sum(&self, name: &str) -> Option<f64> {
        let r = lock(&self.received);
        let mut last = None;
        for req in &r.metrics {
            for rm in &req.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in sm.metrics.iter().filter(|m| m.name == name) {
                        if let Some(metric::Data::Sum(s)) = &m.data {
                            last = Some(s.data_points.iter().map(number).sum());
                        }
                    }
                }
            }
        }
        last
    }

    /// Names of every metric received.
    pub fn metric_names(&self) -> std::collections::BTreeSet<String> {
        let r = lock(&self.received);
        r.metrics
            .iter()
            .flat_map(|q| &q.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Requests to paths other than the two signals (should be none).
    pub fn unexpected(&self) -> Vec<String> {
        lock(&self.received).other.clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn number(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match p.value {
        Some(Value::AsDouble(d)) => d,
        Some(Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Span or resource attributes by key.
pub type Attributes = BTreeMap<String, Value>;

/// An attribute value, as the tests compare them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// Anything else, debug-printed.
    Other(String),
}

impl Value {
    /// The integer, if it is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The string, if it is one.
    pub fn str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Attributes as a map.
pub fn attributes(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
        .collect()
}

fn value(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        other => Value::Other(format!("{other:?}")),
    }
}

/// Serves one connection: requests until the client closes it.
fn serve(conn: TcpStream, received: &Mutex<Received>) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .context("no path")?
            .to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                bail!("connection closed in the headers");
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                }
                if k.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked bodies are not expected from the OTLP exporter");
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        {
            let mut r = lock(received);
            match path.as_str() {
                "/v1/traces" => r
                    .traces
                    .push(ExportTraceServiceRequest::decode(body.as_slice())?),
                "/v1/metrics" => r
                    .metrics
                    .push(ExportMetricsServiceRequest::decode(body.as_slice())?),
                p => r.other.push(p.to_string()),
            }
        }
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
        out.flush()?;
    }
}
