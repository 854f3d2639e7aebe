//! The speed layer end to end: an attack whose records are spread over every partition
//! (as diagnostic settings spread one identity's records) is found in transit with one
//! instance and with two (`--scale-out`), each alert exactly once in `<lake>/alerts/`
//! (after a kill -9 and a restart too), delivered to a webhook through an outage, signed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kvlake_tests::sinks::{WebhookReceiver, alert_rows};
use kvlake_tests::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

const TOPIC: &str = "kv-audit";
const PARTITIONS: i32 = 4;
const ATTACKER: &str = "a77a77a7-0000-4000-8000-00000000a77a";
const SECRET: &str = "webhook-signing-secret";

/// 2026-11-01T00:00:00Z in ms.
const DAY1_MS: i64 = 1_793_491_200_000;
const DAY_MS: i64 = 86_400_000;

fn record(t_ms: i64, op: &str, oid: &str, vault: &str, status: i32, secret: Option<&str>) -> Value {
    let time = kvlake_schemas::time::format_timestamp_micros(t_ms * 1000);
    let host = format!("https://{vault}.vault.azure.net");
    let (id, uri) = match secret {
        Some(s) => (
            format!("{host}/secrets/{s}/0123456789abcdef"),
            format!("{host}/secrets/{s}?api-version=7.4"),
        ),
        None => (host.clone(), format!("{host}/secrets?api-version=7.4")),
    };
    json!({
        "time": time,
        "resourceId": format!("/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{}", vault.to_uppercase()),
        "operationName": op,
        "operationVersion": "7.4",
        "category": "AuditEvent",
        "resultType": "Success",
        "resultSignature": if status < 400 { "OK" } else { "Forbidden" },
        "durationMs": 4,
        "callerIpAddress": "203.0.113.9",
        "correlationId": format!("c-{t_ms}"),
        "identity": {"claim": {"oid": oid, "appid": "11111111-2222-3333-4444-555555555555"}},
        "properties": {"id": id, "requestUri": uri, "httpStatusCode": status}
    })
}

/// The traffic: a quiet first day on every partition (the lake's warm-up, with
/// `warmup_days = 1`), then on day two one attacker whose records go round-robin over
/// every partition: a SecretList, 40 SecretGet of different secrets within 10 minutes
/// (no partition alone sees more than the threshold of 25), 12 denials, one SecretPurge.
fn traffic() -> Vec<(i32, i64, Value)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..3 {
            let t = DAY1_MS + 10 * 3_600_000 + i64::from(p * 10 + i) * 1000;
            out.push((
                p,
                t,
                record(
                    t,
                    "SecretGet",
                    "b0b00000-0000-4000-8000-00000000b0b0",
                    "kv-ops",
                    200,
                    Some("db"),
                ),
            ));
        }
    }
    let day2 = DAY1_MS + DAY_MS + 9 * 3_600_000;
    let mut n = 0;
    let mut next = |out: &mut Vec<(i32, i64, Value)>,
                    dt: i64,
                    op: &str,
                    status: i32,
                    secret: Option<String>| {
        let t = day2 + dt;
        out.push((
            (n % PARTITIONS),
            t,
            record(t, op, ATTACKER, "kv-pay", status, secret.as_deref()),
        ));
        n += 1;
    };
    next(&mut out, 0, "SecretList", 200, None);
    for i in 0..40 {
        next(
            &mut out,
            1000 + i * 5000,
            "SecretGet",
            200,
            Some(format!("s{i}")),
        );
    }
    for i in 0..12 {
        next(
            &mut out,
            300_000 + i * 10_000,
            "SecretSet",
            403,
            Some(format!("x{i}")),
        );
    }
    next(&mut out, 500_000, "SecretPurge", 200, Some("s1".into()));
    out
}

/// What day two must raise, by kind.
const KINDS: [&str; 5] = [
    "denied_burst",
    "list_then_read",
    "mass_secret_retrieval",
    "new_identity_on_vault",
    "sensitive_operation",
];

fn produce_records(bootstrap: &str, records: &[(i32, i64, Value)]) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for (p, t, r) in records {
        let body = serde_json::to_vec(&json!({"records": [r]}))?;
        let rec = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition(*p)
            .payload(&body)
            .timestamp(*t);
        if let Err((e, _)) = producer.send(rec) {
            bail!("produce: {e}");
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !ok()? {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn kinds_of(rows: &[kvlake_tests::sinks::AlertRow]) -> BTreeSet<String> {
    rows.iter().map(|r| r.kind.clone()).collect()
}

fn thresholds(dir: &std::path::Path) -> Result<String> {
    let path = dir.join("thresholds.toml");
    std::fs::write(&path, "warmup_days = 1\n")?;
    Ok(path.display().to_string())
}

/// Every alert once in the table, every kind raised, the mass retrieval about the
/// attacker, triggered by a record of the lake (source coordinates).
fn check_table(lake: &std::path::Path, coords: bool) -> Result<Vec<kvlake_tests::sinks::AlertRow>> {
    let rows = alert_rows(lake)?;
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.alert_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        rows.len(),
        "an alert is in the table twice: {rows:#?}"
    );
    assert_eq!(
        kinds_of(&rows),
        KINDS.iter().map(|k| k.to_string()).collect(),
        "{rows:#?}"
    );
    assert_eq!(rows.len(), KINDS.len(), "one alert per kind: {rows:#?}");
    let mass = rows
        .iter()
        .find(|r| r.kind == "mass_secret_retrieval")
        .context("mass")?;
    assert_eq!(mass.caller_object_id.as_deref(), Some(ATTACKER));
    assert_eq!(mass.date, "2026-11-02");
    // With two instances the crossing can be seen through the other's contribution,
    // which carries no triggering record of this instance.
    assert!(
        !coords || (mass.partition.is_some() && mass.offset.is_some()),
        "{mass:?}"
    );
    Ok(rows)
}

#[test]
fn an_attack_spread_over_every_partition_is_alerted_once_through_a_webhook_outage_and_a_kill()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let url = lake.display().to_string();
    let hook = WebhookReceiver::start(3)?;
    let broker = Broker::start(TOPIC, PARTITIONS)?;
    produce_records(&broker.bootstrap, &traffic())?;
    let t = thresholds(dir.path())?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let secret_env = "env:KVLAKE_TEST_HOOK_SECRET".to_string();
    let args = [
        "--thresholds",
        &t,
        "--alert-webhook",
        &hook.url,
        "--alert-webhook-secret",
        &secret_env,
        "--metrics-addr",
        &addr,
    ];
    let mut cmd = hot_command(&broker.bootstrap, TOPIC, &url, &args);
    cmd.env("KVLAKE_TEST_HOOK_SECRET", SECRET);
    let mut hot = Proc(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?,
    );
    // The webhook refuses the first three deliveries; everything still arrives.
    wait_for(
        "every alert at the webhook",
        Duration::from_secs(90),
        || {
            let got: BTreeSet<String> = hook
                .alerts()
                .iter()
                .filter_map(|a| a["kind"].as_str().map(str::to_string))
                .collect();
            Ok(got.len() == KINDS.len())
        },
    )?;
    assert!(hook.refused() >= 3, "the outage happened");
    wait_for("every alert in the table", Duration::from_secs(30), || {
        Ok(alert_rows(&lake)?.len() >= KINDS.len())
    })?;
    let (_, metrics) = http_get(port, "/metrics")?;
    assert!(
        prometheus_sum(&metrics, "kvlake_hot_alerts_total") >= KINDS.len() as f64,
        "{metrics}"
    );
    assert!(
        metrics.contains("kvlake_alert_deliveries_total"),
        "{metrics}"
    );
    assert!(metrics.contains("kvlake_alert_outbox_pending"), "{metrics}");
    assert!(
        metrics.contains("kvlake_alert_delivery_latency_seconds"),
        "{metrics}"
    );
    for r in hook.received() {
        let sig = r
            .headers
            .get("x-kvlake-signature")
            .context("signature header")?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let hex = sig.strip_prefix("sha256=").context("sha256=")?;
        let tag: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()?;
        ring::hmac::verify(&key, &r.body, &tag).map_err(|_| anyhow::anyhow!("bad signature"))?;
    }
    let hooked = hook.alerts();
    let mass = hooked
        .iter()
        .find(|a| a["kind"] == "mass_secret_retrieval")
        .context("mass at the hook")?;
    assert_eq!(mass["caller_object_id"], ATTACKER);
    for key in [
        "alert_id",
        "description",
        "window_start",
        "window_end",
        "observed",
        "threshold",
        "detected_at",
        "_source",
        "_partition",
        "_offset",
        "_record_index",
    ] {
        assert!(!mass[key].is_null(), "webhook body lacks {key}: {mass}");
    }
    let before = check_table(&lake, true)?;
    // kill -9, then a restart that reads everything again from its checkpoint: no
    // alert is raised twice, in the table or at the webhook.
    signal(&hot.0, "KILL");
    let _ = hot.finish();
    let mut again = hot_command(
        &broker.bootstrap,
        TOPIC,
        &url,
        &[
            "--thresholds",
            &t,
            "--alert-webhook",
            &hook.url,
            "--until-caught-up",
        ],
    );
    again.env_remove("KVLAKE_TEST_HOOK_SECRET");
    let (code, _, stderr) = run_to_end(again, Duration::from_secs(120))?;
    assert_eq!(code, 0, "{stderr}");
    let after = check_table(&lake, true)?;
    assert_eq!(
        before.iter().map(|r| &r.alert_id).collect::<BTreeSet<_>>(),
        after.iter().map(|r| &r.alert_id).collect::<BTreeSet<_>>()
    );
    let delivered: BTreeMap<String, usize> =
        hook.alerts().iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a["alert_id"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
            m
        });
    assert_eq!(delivered.len(), KINDS.len(), "{delivered:?}");
    Ok(())
}

#[test]
fn two_scaled_out_instances_combine_their_counts_and_raise_each_alert_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let url = lake.display().to_string();
    let hook = WebhookReceiver::start(0)?;
    let broker = Broker::start(TOPIC, PARTITIONS)?;
    let t = thresholds(dir.path())?;
    let ports = [free_port()?, free_port()?];
    let assigned = |port: u16| {
        http_get(port, "/metrics").map_or(0.0, |(_, m)| {
            prometheus_sum(&m, "kvlake_hot_partitions_assigned")
        })
    };
    let logs = [dir.path().join("hot-0.log"), dir.path().join("hot-1.log")];
    let mut procs = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let addr = format!("127.0.0.1:{port}");
        let args = [
            "--thresholds",
            &t,
            "--alert-webhook",
            &hook.url,
            "--metrics-addr",
            &addr,
            "--scale-out",
            "--kafka-option",
            "session.timeout.ms=6000",
            "--kafka-option",
            "heartbeat.interval.ms=500",
        ];
        // Logs go to files: a pipe nobody reads until the end could fill and stall it.
        procs.push(Proc(
            hot_command(&broker.bootstrap, TOPIC, &url, &args)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&logs[i])?)
                .spawn()?,
        ));
        // The first instance takes every partition before the second starts (what a
        // loaded machine does by chance, here every time): the second's join must
        // split them, and the first must hand its share over.
        if i == 0 {
            wait_for(
                "the first instance to hold every partition",
                Duration::from_secs(120),
                || Ok(assigned(port) == f64::from(PARTITIONS)),
            )?;
        }
    }
    // Both instances hold partitions before anything is produced, so neither sees the
    // whole attack alone: the counts can only meet through the exchange.
    wait_for(
        "both instances to hold partitions",
        Duration::from_secs(120),
        || {
            let each = ports.map(assigned);
            Ok(each.iter().all(|n| *n > 0.0) && each.iter().sum::<f64>() == f64::from(PARTITIONS))
        },
    )?;
    produce_records(&broker.bootstrap, &traffic())?;
    wait_for("every alert in the table", Duration::from_secs(90), || {
        Ok(kinds_of(&alert_rows(&lake)?).len() == KINDS.len())
    })?;
    wait_for(
        "every alert at the webhook",
        Duration::from_secs(30),
        || {
            Ok(hook
                .alerts()
                .iter()
                .filter_map(|a| a["alert_id"].as_str().map(str::to_string))
                .collect::<BTreeSet<_>>()
                .len()
                == KINDS.len())
        },
    )?;
    for p in &mut procs {
        signal(&p.0, "TERM");
    }
    let mut raised = 0.0;
    for (p, log) in procs.iter_mut().zip(&logs) {
        let (code, _) = p.finish()?;
        let stderr = std::fs::read_to_string(log)?;
        assert_eq!(
            code,
            Some(0),
            "{}",
            stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        raised += log_lines(&stderr, "alert raised").count() as f64;
    }
    check_table(&lake, false)?;
    assert_eq!(
        raised,
        KINDS.len() as f64,
        "each alert raised by one instance only"
    );
    Ok(())
}

/// Delivery markers a sink wrote (one file per alert it delivered).
fn delivered_marks(lake: &std::path::Path, sink: &str) -> usize {
    find_files(&lake.join("_kvlake/alerts/delivered").join(sink), "").count()
}

#[test]
fn alerts_land_in_log_analytics_through_the_logs_ingestion_api_once_each() -> Result<()> {
    use kvlake_tests::logsingestion::{AUDIENCE, LogsIngestionStandIn, MAX_BODY};
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let url = lake.display().to_string();
    let id = kvlake_tests::standin::AzureStandIn::start(dir.path())?;
    let rule = "dcr-0123456789abcdef0123456789abcdef";
    let dce = LogsIngestionStandIn::start(&id, rule, "Custom-KvlakeAlerts")?;
    // The endpoint throttles the first call: 429 with Retry-After: 1.
    dce.throttle_next(1);
    let broker = Broker::start(TOPIC, PARTITIONS)?;
    produce_records(&broker.bootstrap, &traffic())?;
    let t = thresholds(dir.path())?;
    let ca = id.ca_file.display().to_string();
    let endpoint = dce.endpoint();
    let args = [
        "--thresholds",
        &t,
        "--alert-logs-endpoint",
        &endpoint,
        "--alert-logs-rule",
        rule,
        "--ca-file",
        &ca,
        "--credential",
        "managed-identity",
    ];
    let log = dir.path().join("hot.log");
    let mut cmd = hot_command(&broker.bootstrap, TOPIC, &url, &args);
    cmd.envs(id.identity_env());
    let mut hot = Proc(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    };
    let ids_at = |rows: &[serde_json::Map<String, Value>]| -> BTreeMap<String, usize> {
        rows.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r["AlertId"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
            m
        })
    };
    let waited = wait_for(
        "every alert in the custom table",
        Duration::from_secs(90),
        || Ok(ids_at(&dce.rows()).len() >= KINDS.len()),
    );
    if let Err(e) = waited {
        bail!("{e}: {:?}\n{}", dce.stats(), tail());
    }
    // Marked delivered before the kill, so that a restart has nothing to resend.
    wait_for("the delivery markers", Duration::from_secs(30), || {
        Ok(delivered_marks(&lake, "logs-ingestion") >= KINDS.len())
    })?;
    let stats = dce.stats();
    assert_eq!(stats.throttled, 1, "{stats:?}");
    assert!(stats.refused.is_empty(), "{stats:?}");
    assert!(stats.largest_body <= MAX_BODY, "{stats:?}");
    // Retry-After honoured: the call after the 429 came at least a second later.
    let after_429 = stats
        .answers
        .windows(2)
        .find(|w| w[0].1 == 429)
        .map(|w| w[1].0 - w[0].0)
        .context("no call after the 429")?;
    assert!(after_429 >= Duration::from_millis(950), "{after_429:?}");
    assert!(
        id.token_requests().iter().any(|r| r == AUDIENCE),
        "no token for {AUDIENCE}: {:?}",
        id.token_requests()
    );
    let rows = dce.rows();
    let mass = rows
        .iter()
        .find(|r| r["Kind"] == "mass_secret_retrieval")
        .context("mass retrieval row")?;
    assert_eq!(mass["CallerObjectId"], ATTACKER);
    assert!(mass["Description"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(mass["TimeGenerated"].is_string() && mass["SourceOffset"].is_number());

    // kill -9 and a full re-read: the custom table gets nothing twice.
    signal(&hot.0, "KILL");
    let _ = hot.finish();
    let mut again = hot_command(
        &broker.bootstrap,
        TOPIC,
        &url,
        &[&args[..], &["--until-caught-up"]].concat(),
    );
    again.envs(id.identity_env());
    let (code, _, stderr) = run_to_end(again, Duration::from_secs(120))?;
    assert_eq!(code, 0, "{stderr}");
    let table: BTreeSet<String> = check_table(&lake, true)?
        .into_iter()
        .map(|r| r.alert_id)
        .collect();
    let at_sink = ids_at(&dce.rows());
    assert!(at_sink.values().all(|n| *n == 1), "{at_sink:?}");
    assert_eq!(at_sink.keys().cloned().collect::<BTreeSet<_>>(), table);
    Ok(())
}

#[test]
fn the_data_collection_rule_declares_exactly_the_columns_the_stand_in_accepts() -> Result<()> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/bicep/modules/alerts.bicep"
    );
    let text = std::fs::read_to_string(path)?;
    let block = text
        .split_once("var columns = [")
        .and_then(|(_, rest)| rest.split_once("\n]"))
        .map(|(b, _)| b)
        .context("no `var columns = [` list")?;
    let declared: Vec<&str> = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: '")?.strip_suffix('\''))
        .collect();
    assert_eq!(declared, kvlake_tests::logsingestion::COLUMNS);
    Ok(())
}
