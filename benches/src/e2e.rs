//! End-to-end throughput harness: loads a broker (librdkafka's mock cluster in its own
//! process) with ≥ 1 GiB of generator output, runs `kvlake hot --until-caught-up` into a
//! local lake (`KVLAKE_BENCH_RUNS` times, default 3, each into a fresh lake), checks that
//! every record landed, and prints the medians of MB/s, records/s, CPU seconds and peak
//! RSS; then DuckDB (1 thread) and PySpark (local[1]) turn the same bytes into Parquet in
//! the same run (`benches/e2e_peers.py`) and the ratios are printed
//! (`KVLAKE_BENCH_PEERS=duckdb` or `off` leaves peers out).
//!
//! `cargo build --release -p kvlake -p kvlake-benches && target/release/e2e [GiB] [memory-budget]`
//! (`KVLAKE_BENCH_EVENTS_PER_SECOND`, default 50: event-time density of the corpus;
//! `target/release/e2e restart` measures restart to first commit after `kill -9`;
//! `KVLAKE_BENCH_LOG_DIR` keeps each run's log there).
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
    let corpus_dir = tempfile::tempdir_in(bench_dir())?;
    let corpus = corpus_dir.path().join("corpus.jsonl");
    let (bytes, records) = load(
        &broker.bootstrap,
        partitions,
        per_partition,
        target,
        &corpus,
    )?;
    eprintln!(
        "loaded {:.1} MB, {records} records in {:.1}s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // `KVLAKE_BENCH_RUNS` (default 3) runs kvlake that many times on the same backlog,
    // each into a fresh lake, and reports the medians.
    let runs: usize = std::env::var("KVLAKE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut figures = Vec::new();
    let mut broker_cpu = Vec::new();
    for run in 0..runs.max(1) {
        let before = broker.cpu_seconds();
        let f = run_kvlake(&broker.bootstrap, &budget, records)?;
        let used = broker.cpu_seconds().zip(before).map(|(a, b)| a - b);
        eprintln!(
            "run {}: wall {:.2}s, cpu {:.2}s, peak RSS {:.0} MiB, broker cpu {}",
            run + 1,
            f.wall,
            f.cpu,
            f.rss as f64 / f64::from(1 << 20),
            used.map_or("unknown".into(), |c| format!("{c:.2}s"))
        );
        broker_cpu.extend(used);
        figures.push(f);
    }
    let wall = median(figures.iter().map(|f| f.wall));
    let cpu = median(figures.iter().map(|f| f.cpu));
    let rss = figures.iter().map(|f| f.rss).max().unwrap_or(0);
    let last = figures.last().context("no run")?;
    let mb = bytes as f64 / 1e6;
    println!(
        "kvlake e2e: {mb:.1} MB ({records} records) over {partitions} partitions, memory budget {budget}, medians of {} runs ({})",
        figures.len(),
        if cfg!(debug_assertions) {
            "debug build of the harness"
        } else {
            "release build of the harness"
        }
    );
    println!(
        "  wall {wall:.2}s  -> {:.1} MB/s, {:.0} records/s",
        mb / wall,
        records as f64 / wall
    );
    println!(
        "  cpu  {cpu:.2}s  -> {:.1} MB/s per CPU-second ({:.2} cores busy)",
        mb / cpu.max(1e-9),
        cpu / wall
    );
    if !broker_cpu.is_empty() {
        let b = median(broker_cpu.iter().copied());
        println!(
            "  the broker process meanwhile: {b:.2} CPU-s ({:.2} cores): kvlake and it share the machine's {} cores",
            b / wall,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    println!(
        "  peak RSS {:.0} MiB (backlog {:.1}x the budget)",
        rss as f64 / (1 << 20) as f64,
        bytes as f64 / kvlake_budget_bytes(&budget) as f64
    );
    println!(
        "  {} partition batches in {} Delta commits, {} files in {} table-hours ({:.2} MB of input per file)",
        last.batches,
        last.commits,
        last.files,
        last.hours,
        mb / last.files.max(1) as f64
    );
    println!("  {}", last.summary);
    if std::env::var("KVLAKE_BENCH_PEERS").as_deref() != Ok("off") {
        peers(&corpus, mb, wall, cpu)?;
    }
    Ok(())
}

/// One kvlake run's figures.
struct RunFigures {
    wall: f64,
    cpu: f64,
    rss: u64,
    batches: usize,
    commits: i64,
    files: usize,
    hours: usize,
    summary: String,
}

/// `kvlake hot --until-caught-up` over the whole backlog into a fresh lake; checks that
/// every produced record was committed.
fn run_kvlake(bootstrap: &str, budget: &str, records: u64) -> Result<RunFigures> {
    let lake = tempfile::tempdir_in(bench_dir())?;
    let mut cmd = kvlake_tests::hot_command(
        bootstrap,
        TOPIC,
        lake.path().to_str().unwrap_or_default(),
        &[],
    );
    cmd.args([
        "--until-caught-up",
        "--memory-budget",
        budget,
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
    // `KVLAKE_BENCH_LOG_DIR` keeps each run's log (JSON lines) for a look at its timeline.
    if let Ok(dir) = std::env::var("KVLAKE_BENCH_LOG_DIR") {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let path = std::path::Path::new(&dir).join(format!("e2e-{}.log", at.as_micros()));
        std::fs::write(path, &stderr)?;
    }
    let res = log_lines(&stderr, "resources used")
        .next()
        .context("no resources line")?;
    let committed: u64 = log_lines(&stderr, "batch committed")
        .map(|l| l["rows"].as_u64().unwrap_or(0) + l["dead_letters"].as_u64().unwrap_or(0))
        .sum();
    ensure!(
        committed == records,
        "committed {committed} records, produced {records}"
    );
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
    Ok(RunFigures {
        wall,
        cpu: res["cpu_seconds"].as_f64().unwrap_or(0.0),
        rss: res["peak_rss_bytes"].as_u64().unwrap_or(0),
        batches: log_lines(&stderr, "batch committed").count(),
        commits,
        files,
        hours: hours.len(),
        summary: stdout.trim().to_string(),
    })
}

fn bench_dir() -> String {
    std::env::var("KVLAKE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into())
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// DuckDB (1 thread) and PySpark (local[1]) on the same bytes, same run: the JSON lines
/// the broker was loaded with, into zstd Parquet records (`benches/e2e_peers.py`).
/// `KVLAKE_BENCH_PEERS=duckdb` leaves PySpark out.
fn peers(corpus: &std::path::Path, mb: f64, wall: f64, cpu: f64) -> Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e_peers.py");
    let out = tempfile::tempdir_in(bench_dir())?;
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg(corpus)
        .arg(out.path())
        .arg(std::env::var("KVLAKE_BENCH_RUNS").unwrap_or_else(|_| "3".into()));
    if std::env::var("KVLAKE_BENCH_PEERS").as_deref() == Ok("duckdb") {
        cmd.arg("--no-spark");
    }
    let o = cmd.output().context("python3 benches/e2e_peers.py")?;
    ensure!(
        o.status.success(),
        "the peers failed: {}",
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).context("peers' JSON line")?;
    let list = |p: &str, k: &str| -> f64 {
        median(
            v[p][k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_f64),
        )
    };
    let (dw, dc) = (list("duckdb", "wall_s"), list("duckdb", "cpu_s"));
    println!(
        "  DuckDB, 1 thread, same bytes: wall {dw:.2}s -> {:.1} MB/s; cpu {dc:.2}s -> {:.1} MB/s per CPU-second; {} rows",
        mb / dw,
        mb / dc.max(1e-9),
        v["duckdb"]["rows"]
    );
    println!(
        "  kvlake / DuckDB: {:.2}x wall, {:.2}x per CPU-second",
        dw / wall,
        (mb / cpu.max(1e-9)) / (mb / dc.max(1e-9))
    );
    if v.get("pyspark").is_some() {
        let sw = list("pyspark", "wall_s");
        println!(
            "  PySpark local[1], same bytes: job wall {sw:.2}s -> {:.1} MB/s (session start {:.1}s not counted); {} rows",
            mb / sw,
            v["pyspark"]["startup_s"].as_f64().unwrap_or(0.0),
            v["pyspark"]["rows"]
        );
        println!("  kvlake / PySpark: {:.2}x wall", sw / wall);
    }
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
/// Also writes every message as one line of `corpus`, for the peers.
fn load(
    bootstrap: &str,
    partitions: i32,
    per_partition: u64,
    target: u64,
    corpus: &std::path::Path,
) -> Result<(u64, u64)> {
    use std::io::Write;
    let mut lines = std::io::BufWriter::new(std::fs::File::create(corpus)?);
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
        lines.write_all(&m.bytes)?;
        lines.write_all(b"\n")?;
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
    lines.flush()?;
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
