//! End-to-end throughput harness: loads a broker (librdkafka's mock cluster in its own
//! process) with ≥ 1 GiB of generator output, runs `kvlake hot --until-caught-up` into a
//! local lake, and prints MB/s, records/s, CPU seconds and peak RSS, then checks that
//! every record landed.
//!
//! `cargo build --release -p kvlake -p kvlake-benches && target/release/e2e [GiB] [memory-budget]`
//! (`KVLAKE_BENCH_EVENTS_PER_SECOND`, default 50: event-time density of the corpus;
//! `target/release/e2e restart` measures restart to first commit after `kill -9`).
//! The mock cluster keeps only 5 MiB per partition, so the corpus is spread over many
//! partitions (4.4 MiB each) and every low watermark is checked to be 0 before the run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kvlake_generator::{Generator, GeneratorConfig, MessageKind};
use kvlake_tests::{Broker, log_lines, run_to_end};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "kv-audit";
const PER_PARTITION: u64 = 4_400_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("restart") {
        return restart();
    }
    let gib: f64 = args
        .get(1)
        .map_or(Ok(1.05), |s| s.parse())
        .context("first argument: GiB to load")?;
    let budget = args.get(2).cloned().unwrap_or_else(|| "512MiB".into());
    let target = (gib * (1u64 << 30) as f64) as u64;
    // `KVLAKE_BENCH_PARTITIONS` spreads the same bytes over a given partition count
    // (at most 4.4 MiB each: the mock cluster's limit).
    let partitions = match std::env::var("KVLAKE_BENCH_PARTITIONS") {
        Ok(v) => v
            .parse::<i32>()
            .context("KVLAKE_BENCH_PARTITIONS: a partition count")?,
        Err(_) => target.div_ceil(PER_PARTITION) as i32,
    };
    let per_partition = target.div_ceil(u64::try_from(partitions.max(1))?);
    ensure!(
        per_partition <= PER_PARTITION,
        "{partitions} partitions would hold {per_partition} bytes each; the mock cluster keeps {PER_PARTITION}"
    );
    let broker = Broker::start(TOPIC, partitions)?;
    eprintln!(
        "loading {:.2} GiB over {partitions} partitions into {}",
        gib, broker.bootstrap
    );
    let t = Instant::now();
    let (bytes, records) = load(&broker.bootstrap, partitions, per_partition, target)?;
    eprintln!(
        "loaded {:.1} MB, {records} records in {:.1}s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let lake = tempfile::tempdir_in(
        std::env::var("KVLAKE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )?;
    let mut cmd = kvlake_tests::hot_command(
        &broker.bootstrap,
        TOPIC,
        lake.path().to_str().unwrap_or_default(),
        &[],
    );
    cmd.args([
        "--until-caught-up",
        "--memory-budget",
        &budget,
        "--batch-max-wait",
        "30s",
        "--log",
        "info,librdkafka=warn",
    ]);
    let started = Instant::now();
    let (code, stdout, stderr) = run_to_end(cmd, Duration::from_secs(3600))?;
    let wall = started.elapsed().as_secs_f64();
    if code != 0 {
        bail!(
            "kvlake failed ({code}): {}",
            stderr.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        );
    }
    let res = log_lines(&stderr, "resources used")
        .next()
        .context("no resources line")?;
    let rss = res["peak_rss_bytes"].as_u64().unwrap_or(0);
    let cpu = res["cpu_seconds"].as_f64().unwrap_or(0.0);
    let committed: u64 = log_lines(&stderr, "batch committed")
        .map(|l| l["rows"].as_u64().unwrap_or(0) + l["dead_letters"].as_u64().unwrap_or(0))
        .sum();
    ensure!(
        committed == records,
        "committed {committed} records, produced {records}"
    );
    let mb = bytes as f64 / 1e6;
    println!(
        "kvlake e2e: {mb:.1} MB ({records} records) over {partitions} partitions, memory budget {budget}"
    );
    println!(
        "  wall {wall:.1}s  -> {:.1} MB/s, {:.0} records/s",
        mb / wall,
        records as f64 / wall
    );
    println!(
        "  cpu  {cpu:.1}s  -> {:.1} MB/s per core used ({:.2} cores busy)",
        mb / cpu.max(1e-9),
        cpu / wall
    );
    println!(
        "  peak RSS {:.0} MiB (backlog {:.1}x the budget)",
        rss as f64 / (1 << 20) as f64,
        bytes as f64 / kvlake_budget_bytes(&budget) as f64
    );
    let batches = log_lines(&stderr, "batch committed").count();
    // The tables' files as their Delta logs list them (what every reader sees).
    let (mut files, mut commits, mut hours) = (0, 0, std::collections::BTreeSet::new());
    for table in ["raw", "deadletter"] {
        let root = lake.path().join(table);
        if !root.join("_delta_log").is_dir() {
            continue;
        }
        for f in kvlake_tests::delta::live_files(&root)? {
            files += 1;
            hours.insert((table, f.parent().map(std::path::Path::to_path_buf)));
        }
        commits += kvlake_tests::delta::replay(&root)?.version;
    }
    println!(
        "  {batches} partition batches in {commits} Delta commits, {files} files in {} table-hours ({:.2} MB of input per file)",
        hours.len(),
        mb / files.max(1) as f64
    );
    println!("  {}", stdout.trim());
    Ok(())
}

/// Restart to first commit after a `kill -9`, in assign mode and in scale-out mode:
/// `target/release/e2e restart`.
fn restart() -> Result<()> {
    for (mode, extra) in [
        ("assign (default)", &[][..]),
        (
            "scale-out, session.timeout.ms=10000",
            &["--scale-out", "--kafka-option", "session.timeout.ms=10000"][..],
        ),
    ] {
        let broker = Broker::start(TOPIC, 4)?;
        let mut ledger = kvlake_tests::Ledger::default();
        kvlake_tests::produce(
            &broker.bootstrap,
            TOPIC,
            4,
            kvlake_tests::small_messages(3, 0.0),
            400,
            &mut ledger,
        )?;
        let lake = tempfile::tempdir()?;
        let url = lake.path().to_str().unwrap_or_default().to_string();
        let mut args = vec!["--batch-max-wait", "100ms"];
        args.extend_from_slice(extra);
        let spawn = || -> Result<kvlake_tests::Proc> {
            Ok(kvlake_tests::Proc(
                kvlake_tests::hot_command(&broker.bootstrap, TOPIC, &url, &args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()?,
            ))
        };
        let first = spawn()?;
        kvlake_tests::wait_for_file(lake.path(), ".commit.json", Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_secs(1));
        kvlake_tests::signal(&first.0, "KILL");
        drop(first);
        let before = kvlake_tests::find_files(lake.path(), ".commit.json").count();
        kvlake_tests::produce(
            &broker.bootstrap,
            TOPIC,
            4,
            kvlake_tests::small_messages(4, 0.0),
            40,
            &mut ledger,
        )?;
        let started = Instant::now();
        let second = spawn()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while kvlake_tests::find_files(lake.path(), ".commit.json").count() == before {
            ensure!(Instant::now() < deadline, "no commit after restart");
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "restart to first commit after kill -9, {mode}: {:.2}s",
            started.elapsed().as_secs_f64()
        );
        drop(second);
    }
    Ok(())
}

fn kvlake_budget_bytes(s: &str) -> u64 {
    let n: u64 = s
        .trim_end_matches(char::is_alphabetic)
        .parse()
        .unwrap_or(512);
    if s.ends_with("GiB") { n << 30 } else { n << 20 }
}

/// Fills every partition to `per_partition` bytes, round-robin; returns bytes and records produced.
fn load(bootstrap: &str, partitions: i32, per_partition: u64, target: u64) -> Result<(u64, u64)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    // Event-time density: how many hour partitions a partition's backlog spans.
    let eps: f64 = std::env::var("KVLAKE_BENCH_EVENTS_PER_SECOND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50.0);
    eprintln!("generator: {eps} events/s of event time");
    let mut g = Generator::new(GeneratorConfig {
        seed: 1,
        events_per_second: eps,
        ..GeneratorConfig::default()
    });
    let mut sizes = vec![0u64; partitions as usize];
    let (mut bytes, mut records, mut i) = (0u64, 0u64, 0usize);
    while bytes < target {
        let p = i % partitions as usize;
        i += 1;
        if sizes[p] >= per_partition {
            if sizes.iter().all(|s| *s >= per_partition) {
                break;
            }
            continue;
        }
        let m = g.next_message();
        records += match m.kind {
            MessageKind::Good { records } => records as u64,
            MessageKind::Bad { .. } => 1,
        };
        sizes[p] += m.bytes.len() as u64;
        bytes += m.bytes.len() as u64;
        let mut rec = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition(p as i32)
            .payload(&m.bytes)
            .timestamp(m.event_time_micros / 1000);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("produce: {e}");
                    }
                    producer.poll(Duration::from_millis(10));
                    rec = r;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for p in 0..partitions {
        let (low, _) = c.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        ensure!(low == 0, "the broker dropped data of partition {p}");
    }
    Ok((bytes, records))
}
