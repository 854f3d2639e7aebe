//! The cold path treats rows the same whatever brought them: the same generated events
//! (nine days, every attack kind) loaded through the hot path from the broker, through
//! `kvlake convert` of each shape, and through `kvlake backfill` of each Log Analytics
//! table, give equal aggregates, baselines and anomalies in every lake.
//!
//! Nothing is excluded from the comparison: the cold path's tables carry no source
//! coordinates (`_source`, `_partition`, `_offset` differ by source and stay in raw).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, ensure};
use kvlake_tests::agg::{difference, read_table};
use kvlake_tests::loganalytics::LogAnalyticsStandIn;
use kvlake_tests::standin::AzureStandIn;
use kvlake_tests::{Broker, hot_command, kvlake_bin, run_to_end};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const WS: &str = "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

const ATTACKS: [&str; 7] = [
    "mass-secret-retrieval@8d10h",
    "list-then-read@8d11h",
    "sensitive-operation@8d12h:KeyBackup",
    "new-identity-on-vault@8d13h",
    "volume-spike@8d14h",
    "denied-burst@8d16h",
    "new-ip-for-identity@8d18h",
];

fn kvlake(args: &[&str]) -> Result<String> {
    let out = Command::new(kvlake_bin())
        .args(args)
        .env("KVLAKE_LOG", "warn")
        .env_remove("KVLAKE_CONFIG")
        .output()?;
    ensure!(
        out.status.success(),
        "kvlake {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The same events in one shape, as JSON lines.
fn generated(shape: &str) -> Result<String> {
    let mut args = vec![
        "generate",
        "--records",
        "25000",
        "--events-per-second",
        "0.03",
        "--format",
        "lines",
        "--seed",
        "11",
        "--shape",
        shape,
    ];
    for a in ATTACKS {
        args.extend(["--attack", a]);
    }
    kvlake(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Envelopes of ten records each, round-robin over the partitions.
fn produce(bootstrap: &str, topic: &str, partitions: i32, lines: &str) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let records: Vec<&str> = lines.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, chunk) in records.chunks(10).enumerate() {
        let payload = format!("{{\"records\":[{}]}}", chunk.join(","));
        let rec = BaseRecord::<(), str>::to(topic)
            .partition((i % partitions as usize) as i32)
            .payload(&payload);
        if let Err((e, _)) = producer.send(rec) {
            anyhow::bail!("produce: {e}");
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn every_source_gives_the_same_aggregates_and_anomalies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let ds = generated("diagnostic-settings")?;

    // (a) The hot path from the broker.
    let topic = "kv-audit";
    let broker = Broker::start(topic, 12)?;
    produce(&broker.bootstrap, topic, 12, &ds)?;
    let hot = root.join("hot");
    let (code, _, err) = run_to_end(
        hot_command(&broker.bootstrap, topic, s(&hot), &["--until-caught-up"]),
        Duration::from_secs(300),
    )?;
    ensure!(code == 0, "hot: {err}");
    let mut lakes = vec![("hot".to_string(), hot)];

    // (b) convert of each shape.
    let mut shapes = Vec::new();
    for shape in ["diagnostic-settings", "azurediagnostics", "azkvauditlogs"] {
        let text = if shape == "diagnostic-settings" {
            ds.clone()
        } else {
            generated(shape)?
        };
        let file = root.join(format!("{shape}.json"));
        std::fs::write(&file, &text)?;
        let lake = root.join(format!("convert-{shape}"));
        kvlake(&["convert", "--lake", s(&lake), s(&file)])?;
        lakes.push((format!("convert {shape}"), lake));
        shapes.push((shape, text));
    }

    // (c) backfill of each Log Analytics table from the stand-in.
    let id = AzureStandIn::start(root)?;
    let la = LogAnalyticsStandIn::start(&id, WS)?;
    for (shape, text) in &shapes {
        match *shape {
            "azurediagnostics" => la.load_lines("AzureDiagnostics", text)?,
            "azkvauditlogs" => la.load_lines("AZKVAuditLogs", text)?,
            _ => 0,
        };
    }
    for table in ["AZKVAuditLogs", "AzureDiagnostics"] {
        let lake = root.join(format!("backfill-{table}"));
        let mut c = Command::new(kvlake_bin());
        c.args([
            "backfill",
            "--workspace",
            WS,
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-12",
        ])
        .args([
            "--table",
            table,
            "--lake",
            s(&lake),
            "--endpoint",
            &la.endpoint(),
        ])
        .args([
            "--ca-file",
            s(&id.ca_file),
            "--credential",
            "managed-identity",
        ])
        .env("KVLAKE_LOG", "warn")
        .env_remove("KVLAKE_CONFIG")
        .stdin(Stdio::null());
        for (k, v) in id.identity_env() {
            c.env(k, v);
        }
        let out = c.output()?;
        ensure!(
            out.status.success(),
            "backfill {table}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{}", String::from_utf8_lossy(&out.stdout));
        lakes.push((format!("backfill {table}"), lake));
    }

    for (_, lake) in &lakes {
        kvlake(&["cold", "--lake", s(lake)])?;
    }
    let (reference_name, reference) = &lakes[0];
    let anomalies = read_table(reference, "anomalies")?;
    let kinds: std::collections::BTreeSet<&str> = anomalies
        .iter()
        .filter_map(|r| r.get("kind")?.as_str())
        .collect();
    ensure!(
        kinds.len() >= 7,
        "every attack kind is found in the hot lake: {kinds:?}"
    );
    for (name, lake) in &lakes[1..] {
        for t in kvlake_coldpath::TABLES {
            let a = read_table(reference, t.name)?;
            let b = read_table(lake, t.name)?;
            ensure!(!a.is_empty(), "{reference_name}: {} is empty", t.name);
            if let Some(d) = difference(&a, &b) {
                anyhow::bail!(
                    "{} differs between {reference_name} and {name}: {d}",
                    t.name
                );
            }
        }
    }
    Ok(())
}
