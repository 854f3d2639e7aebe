//! Speed-layer latency harness: from the moment the broker acknowledges a triggering record
//! to the moment a webhook receives its alert, with `kvlake hot` on its default batch
//! settings (files still closing every 5 minutes), over background traffic.
//!
//! `cargo build -p kvlake -p kvlake-benches && target/debug/alert-latency [alerts] [gap-ms]`
//! (default 120 alerts, one trigger every 150 ms, over 4 partitions carrying ~200 records/s
//! of generated traffic). Each trigger is a successful `SecretPurge` by a caller of its own,
//! so each raises one `sensitive_operation` alert; the acknowledge time is taken in the
//! producer's delivery callback, the receipt time by the webhook stand-in when the body has
//! arrived. Prints p50/p90/p99/max of ack → receipt, and its two parts: ack → `detected_at`
//! (detection) and `detected_at` → receipt (delivery).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use kvlake_generator::{Generator, GeneratorConfig};
use kvlake_tests::sinks::WebhookReceiver;
use kvlake_tests::{Broker, Proc, free_port, http_get, kvlake_bin, prometheus_sum};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde_json::{Value, json};

const TOPIC: &str = "kv-audit";
const PARTITIONS: i32 = 4;

/// Records the broker's acknowledgement time of each trigger, by caller.
#[derive(Default)]
struct AckTimes(Mutex<HashMap<String, SystemTime>>);

impl ClientContext for AckTimes {}

impl ProducerContext for AckTimes {
    type DeliveryOpaque = Box<String>;

    fn delivery(&self, result: &DeliveryResult<'_>, caller: Box<String>) {
        if result.is_ok() {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*caller, SystemTime::now());
        }
    }
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn trigger(caller: &str, t: i64) -> Value {
    let vault = "kv-latency";
    let host = format!("https://{vault}.vault.azure.net");
    json!({"records": [{
        "time": kvlake_schemas::time::format_timestamp_micros(t),
        "resourceId": format!("/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{}", vault.to_uppercase()),
        "operationName": "SecretPurge",
        "operationVersion": "7.4",
        "category": "AuditEvent",
        "resultType": "Success",
        "resultSignature": "OK",
        "durationMs": 5,
        "callerIpAddress": "203.0.113.50",
        "correlationId": format!("lat-{caller}"),
        "identity": {"claim": {"oid": caller, "appid": "11111111-2222-3333-4444-555555555555"}},
        "properties": {
            "id": format!("{host}/secrets/s-{caller}"),
            "requestUri": format!("{host}/secrets/s-{caller}?api-version=7.4"),
            "httpStatusCode": 200
        }
    }]})
}

/// Generated traffic at about `per_second` records a second, event time = now, until `stop`.
fn background(bootstrap: String, per_second: f64, stop: Arc<AtomicBool>) -> Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let mut g = Generator::new(GeneratorConfig {
        seed: 5,
        start_time_micros: micros(SystemTime::now()),
        events_per_second: per_second,
        ..GeneratorConfig::default()
    });
    let started = Instant::now();
    let (mut records, mut i) = (0u64, 0usize);
    while !stop.load(Ordering::Relaxed) {
        let m = g.next_message();
        if let kvlake_generator::MessageKind::Good { records: n } = m.kind {
            records += n as u64;
        }
        let rec = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition((i % PARTITIONS as usize) as i32)
            .payload(&m.bytes)
            .timestamp(m.event_time_micros / 1000);
        i += 1;
        if let Err((e, _)) = producer.send(rec) {
            bail!("background produce: {e}");
        }
        producer.poll(Duration::ZERO);
        // Keep event time with wall time: no faster than `per_second`.
        let ahead = records as f64 / per_second - started.elapsed().as_secs_f64();
        if ahead > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(ahead.min(0.5)));
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(records)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{name:<28} p50 {:>7.3}s  p90 {:>7.3}s  p99 {:>7.3}s  max {:>7.3}s",
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let alerts: usize = args
        .get(1)
        .map_or(Ok(120), |s| s.parse())
        .context("first argument: number of alerts")?;
    let gap = Duration::from_millis(
        args.get(2)
            .map_or(Ok(150), |s| s.parse())
            .context("second argument: ms between triggers")?,
    );
    let broker = Broker::start(TOPIC, PARTITIONS)?;
    let hook = WebhookReceiver::start(0)?;
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let log = dir.path().join("hot.log");
    let port = free_port()?;
    // Default batch settings: no --batch-max-wait (5 minutes), default sizes.
    let mut hot = Proc(
        Command::new(kvlake_bin())
            .args(["hot", "--brokers", &broker.bootstrap, "--topic", TOPIC])
            .args(["--group", "kvlake-bench", "--lake"])
            .arg(&lake)
            .args(["--log-format", "json", "--alert-webhook", &hook.url])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env_remove("KVLAKE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let ready = Instant::now();
    while http_get(port, "/metrics").map_or(true, |(_, m)| {
        prometheus_sum(&m, "kvlake_hot_partitions_assigned") < f64::from(PARTITIONS)
    }) {
        ensure!(
            ready.elapsed() < Duration::from_secs(120),
            "kvlake hot did not take its partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let (b, s) = (broker.bootstrap.clone(), stop.clone());
        std::thread::spawn(move || background(b, 200.0, s))
    };
    std::thread::sleep(Duration::from_secs(3)); // background traffic flowing first

    let producer: BaseProducer<AckTimes> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "0")
        .create_with_context(AckTimes::default())?;
    let mut callers = Vec::new();
    for i in 0..alerts {
        let caller = format!("1a7e0000-0000-4000-8000-{:012x}", i);
        let body = serde_json::to_vec(&trigger(&caller, micros(SystemTime::now())))?;
        let rec =
            BaseRecord::<(), [u8], Box<String>>::with_opaque_to(TOPIC, Box::new(caller.clone()))
                .partition((i % PARTITIONS as usize) as i32)
                .payload(&body);
        if let Err((e, _)) = producer.send(rec) {
            bail!("produce: {e}");
        }
        callers.push(caller);
        let next = Instant::now() + gap;
        while Instant::now() < next {
            producer.poll(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let acked = producer
        .context()
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();

    let deadline = Instant::now() + Duration::from_secs(120);
    let received = loop {
        let mut got: HashMap<String, (SystemTime, i64)> = HashMap::new();
        for r in hook.received() {
            let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&r.body) else {
                continue;
            };
            for a in items {
                if let (Some(c), Some(d)) =
                    (a["caller_object_id"].as_str(), a["detected_at"].as_i64())
                {
                    got.entry(c.to_string()).or_insert((r.at, d));
                }
            }
        }
        if callers.iter().all(|c| got.contains_key(c)) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::Relaxed);
    let bg_records = bg
        .join()
        .map_err(|_| anyhow::anyhow!("background panicked"))??;
    kvlake_tests::signal(&hot.0, "TERM");
    let _ = hot.finish();

    let (mut total, mut detect, mut deliver) = (Vec::new(), Vec::new(), Vec::new());
    for c in &callers {
        let (Some(ack), Some((at, detected))) = (acked.get(c), received.get(c)) else {
            continue;
        };
        let ack = micros(*ack);
        total.push((micros(*at) - ack) as f64 / 1e6);
        detect.push((detected - ack) as f64 / 1e6);
        deliver.push((micros(*at) - detected) as f64 / 1e6);
    }
    ensure!(
        total.len() == callers.len(),
        "only {} of {} alerts arrived (acknowledged: {})",
        total.len(),
        callers.len(),
        acked.len()
    );
    let profile = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    };
    println!(
        "kvlake speed layer latency ({profile}; binary {}): {} alerts, one trigger every {} ms, \
         {PARTITIONS} partitions, {bg_records} background records (~200/s), default batch settings",
        kvlake_bin().display(),
        total.len(),
        gap.as_millis()
    );
    println!("{}", summary("broker ack -> webhook", total));
    println!("{}", summary("  broker ack -> detected_at", detect));
    println!("{}", summary("  detected_at -> webhook", deliver));
    println!(
        "anchor: Microsoft Sentinel NRT rules run every minute with a 2-minute delay (~60-180 s)"
    );
    Ok(())
}
