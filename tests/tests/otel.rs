//! OpenTelemetry from a real `kvlake hot --until-caught-up` run against the test broker,
//! into an OTLP/HTTP collector stand-in: one trace per committed batch whose spans carry
//! the partition and the batch's offset range (the same ranges as the lake's commit log),
//! the batch stages as child spans, and the metrics flushed at exit agreeing with the
//! records produced. Also: every JSON log line inside a batch carries the same fields.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use kvlake_tests::otlp::{OtlpReceiver, Value};
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";
const PARTITIONS: i32 = 3;

/// (start, end) of every committed batch in the lake's log, by partition.
fn committed_ranges(lake: &Path) -> Result<BTreeMap<i64, BTreeSet<(i64, i64)>>> {
    let mut out: BTreeMap<i64, BTreeSet<(i64, i64)>> = BTreeMap::new();
    for f in find_files(&lake.join("_kvlake/log").join(TOPIC), ".commit.json") {
        let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&f)?)?;
        let field = |k: &str| c[k].as_i64().with_context(|| format!("{k} in {f:?}"));
        out.entry(field("partition")?)
            .or_default()
            .insert((field("start_offset")?, field("end_offset")?));
    }
    Ok(out)
}

#[test]
fn every_committed_batch_is_one_trace_with_its_partition_and_offset_range() -> Result<()> {
    let (broker, ledger) = loaded_broker(TOPIC, PARTITIONS, 91, 0.05, 240)?;
    let receiver = OtlpReceiver::start()?;
    let lake = tempfile::tempdir()?;
    let lake_url = lake.path().to_str().context("utf-8 path")?;
    let endpoint = receiver.endpoint();
    // Prometheus too: with both on, the metrics recorder fans out to both.
    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    let cmd = hot_command(
        &broker.bootstrap,
        TOPIC,
        lake_url,
        &[
            "--until-caught-up",
            "--batch-max-records",
            "400",
            "--otlp-endpoint",
            &endpoint,
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    let (code, _out, err) = run_to_end(cmd, Duration::from_secs(120))?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        log_lines(&err, "serving /metrics, /healthz and /readyz").count(),
        1
    );

    let spans = receiver.spans();
    assert!(
        receiver.unexpected().is_empty(),
        "{:?}",
        receiver.unexpected()
    );
    let (resource, _) = spans.first().context("no span received")?;
    assert_eq!(
        resource.get("service.name"),
        Some(&Value::Str("kvlake".into()))
    );

    // Batch spans: their ranges are exactly the commit log's, by partition.
    let batches: Vec<_> = spans.iter().filter(|(_, s)| s.name == "batch").collect();
    let mut traced: BTreeMap<i64, BTreeSet<(i64, i64)>> = BTreeMap::new();
    let mut rows = 0;
    for (_, s) in &batches {
        let a = kvlake_tests::otlp::attributes(&s.attributes);
        let int = |k: &str| {
            a.get(k)
                .and_then(Value::int)
                .with_context(|| format!("{k}: {a:?}"))
        };
        let (p, start, end) = (int("partition")?, int("offset.start")?, int("offset.end")?);
        assert_eq!(
            a.get("offsets").and_then(Value::str),
            Some(format!("{start}..{end}").as_str())
        );
        assert_eq!(a.get("topic").and_then(Value::str), Some(TOPIC));
        assert!(int("seq").is_ok(), "{a:?}");
        rows += int("rows")? + int("dead_letters")?;
        assert!(
            traced.entry(p).or_default().insert((start, end)),
            "one span per batch: {p} {start}..{end} twice"
        );
    }
    let committed = committed_ranges(lake.path())?;
    assert_eq!(traced, committed, "batch spans = committed batches");
    assert_eq!(traced.len(), PARTITIONS as usize);
    // Each partition's batches run contiguously from 0 to its last produced offset + 1.
    for (p, ranges) in &traced {
        let last = ledger
            .messages
            .keys()
            .filter(|(q, _)| i64::from(*q) == *p)
            .map(|(_, o)| o + 1)
            .max();
        let mut pos = 0;
        for (s, e) in ranges {
            assert_eq!(*s, pos, "partition {p}: contiguous ranges {ranges:?}");
            pos = *e;
        }
        assert_eq!(Some(pos), last, "partition {p} read to its end");
    }
    assert_eq!(
        rows as usize,
        ledger.records(),
        "span rows = records produced"
    );

    // Each batch is its own trace, with the stages as children of the batch span.
    let trace_ids: BTreeSet<_> = batches.iter().map(|(_, s)| s.trace_id.clone()).collect();
    assert_eq!(trace_ids.len(), batches.len(), "one trace per batch");
    for (_, b) in &batches {
        assert!(b.parent_span_id.is_empty(), "a batch span is a root");
        let children: BTreeSet<&str> = spans
            .iter()
            .filter(|(_, s)| s.trace_id == b.trace_id && s.parent_span_id == b.span_id)
            .map(|(_, s)| s.name.as_str())
            .collect();
        for stage in ["poll", "decode", "flush", "write", "commit"] {
            assert!(
                children.contains(stage),
                "batch without a {stage} span: {children:?}"
            );
        }
    }

    // Metrics: exported at exit, the same names as /metrics, agreeing with the records.
    let names = receiver.metric_names();
    for m in [
        "kvlake_hot_records_consumed_total",
        "kvlake_hot_batch_duration_seconds",
        "kvlake_hot_committed_offset",
        "kvlake_hot_partitions_assigned",
    ] {
        assert!(names.contains(m), "{m} not exported: {names:?}");
    }
    assert_eq!(
        receiver.last_sum("kvlake_hot_records_consumed_total"),
        Some(ledger.records() as f64)
    );
    assert_eq!(
        receiver.last_sum("kvlake_hot_batches_committed_total"),
        Some(batches.len() as f64)
    );

    // Logs: every JSON line inside a batch carries the batch's partition and offsets.
    let mut inside = 0;
    for line in err.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(batch) = v["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "batch"))
        {
            inside += 1;
            assert!(
                batch["partition"].is_i64() && batch["offset.start"].is_i64(),
                "{line}"
            );
        }
        if v["message"] == "batch committed" {
            assert!(
                v["partition"].is_i64() && v["offsets"].is_string(),
                "{line}"
            );
            assert!(v["spans"].is_array(), "committed inside its span: {line}");
        }
    }
    assert!(inside >= batches.len(), "batch log lines: {inside}");
    Ok(())
}

#[test]
fn without_an_endpoint_nothing_is_exported() -> Result<()> {
    let (broker, _ledger) = loaded_broker(TOPIC, 1, 92, 0.0, 20)?;
    let receiver = OtlpReceiver::start()?;
    let lake = tempfile::tempdir()?;
    let mut cmd = hot_command(
        &broker.bootstrap,
        TOPIC,
        lake.path().to_str().context("utf-8 path")?,
        &["--until-caught-up"],
    );
    // Even the SDK's own variables are ignored unless kvlake is told to export.
    cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint());
    let (code, _out, err) = run_to_end(cmd, Duration::from_secs(60))?;
    assert_eq!(code, 0, "{err}");
    assert!(receiver.spans().is_empty());
    assert!(receiver.metric_names().is_empty());
    Ok(())
}

#[test]
fn an_https_endpoint_fails_at_start_saying_what_to_use() -> Result<()> {
    let mut cmd = hot_command("127.0.0.1:1", TOPIC, "/nonexistent", &[]);
    cmd.args(["--otlp-endpoint", "https://collector.example:4318"]);
    let (code, _out, err) = run_to_end(cmd, Duration::from_secs(30))?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--otlp-endpoint") && err.contains("http://"),
        "{err}"
    );
    Ok(())
}
