//! Cold-path benchmark: `kvlake cold` against DuckDB running the same SQL definitions on the
//! same committed raw files.
//!
//! 1. Builds (once, cached) a local lake of `--days` generated days: one generator for the
//!    whole span (so identities and baselines are consistent), a few attacks after day 8,
//!    written a day at a time as JSON lines into a temp file, converted with
//!    `kvlake_hotpath::files::convert` and deleted, so the disk never holds the JSON of the
//!    month. A marker file next to the lake holds the row count; with it, re-runs measure
//!    only the queries.
//! 2. Runs, `--runs` times, a full `kvlake cold` (the release binary next to this one; its
//!    state and `agg/` are removed first) and `benches/cold_duckdb.py` (DuckDB: `raw` = the committed raw files,
//!    `events` the view of `events.sql`, each definition materialized in order with the
//!    same substitutions and written as Parquet partitioned by date), each as a child of
//!    GNU `time` (wall, user+sys CPU and peak RSS from the child's `wait4` rusage).
//! 3. Prints medians, the ratio kvlake/DuckDB and the time each definition took.
//!
//! ```sh
//! flock /var/tmp/kvlake-cargo.lock cargo build --release -p kvlake -p kvlake-benches
//! target/release/cold-bench [--runs 3] [--days 30] [--events-per-second 8] [--dir /var/tmp/kvlake-bench]
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kvlake_coldpath::settings::substitute;
use kvlake_coldpath::{TABLES, Thresholds};
use kvlake_generator::{Attack, Format, Generator, GeneratorConfig};
use kvlake_hotpath::{BatchLimits, Lake};
use kvlake_schemas::time::{format_date, parse_date};
use serde_json::{Value, json};

const SEED: u64 = 20_261_101;
const START_DATE: &str = "2026-11-01";
const DAY_MICROS: i64 = 86_400 * 1_000_000;
/// Records per generator call; lines are routed to their day one by one.
const BLOCK: usize = 8192;

#[derive(Debug, Clone)]
struct Options {
    dir: PathBuf,
    days: i64,
    events_per_second: f64,
    runs: usize,
    kvlake: PathBuf,
    python: String,
    script: PathBuf,
    min_rows: u64,
}

fn usage() -> &'static str {
    "cold-bench [--dir DIR] [--days N] [--events-per-second R] [--runs N] [--kvlake PATH] \
     [--python PATH] [--script PATH] [--min-rows N]"
}

fn options() -> Result<Options> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut o = Options {
        dir: std::env::var_os("KVLAKE_BENCH_DIR")
            .map_or_else(|| PathBuf::from("/var/tmp/kvlake-bench"), PathBuf::from),
        days: 30,
        events_per_second: 8.0,
        runs: 3,
        // Built next to this binary (the workspace's target dir is set in .cargo/config.toml).
        kvlake: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("kvlake")))
            .unwrap_or_else(|| root.join("target/release/kvlake")),
        python: "python3".into(),
        script: root.join("benches/cold_duckdb.py"),
        min_rows: 20_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value; {}", usage()))?;
        match flag.as_str() {
            "--dir" => o.dir = value.into(),
            "--days" => o.days = value.parse().context("--days")?,
            "--events-per-second" => {
                o.events_per_second = value.parse().context("--events-per-second")?;
            }
            "--runs" => o.runs = value.parse().context("--runs")?,
            "--kvlake" => o.kvlake = value.into(),
            "--python" => o.python = value,
            "--script" => o.script = value.into(),
            "--min-rows" => o.min_rows = value.parse().context("--min-rows")?,
            _ => bail!("unknown argument {flag}; {}", usage()),
        }
    }
    ensure!(o.days >= 1 && o.runs >= 1, "--days and --runs must be ≥ 1");
    Ok(o)
}

fn main() -> Result<()> {
    let o = options()?;
    ensure!(
        o.kvlake.exists(),
        "{} not found: flock /var/tmp/kvlake-cargo.lock cargo build --release -p kvlake -p kvlake-benches",
        o.kvlake.display()
    );
    std::fs::create_dir_all(&o.dir)?;
    let lake = o.dir.join("lake");
    let built = build_lake(&o, &lake)?;
    let raw = committed_raw(&lake)?;
    ensure!(
        raw.rows == built.rows,
        "the raw table holds {} rows, the marker {}",
        raw.rows,
        built.rows
    );
    let first = raw.days.first().cloned().unwrap_or_default();
    let last = raw.days.last().cloned().unwrap_or_default();
    eprintln!(
        "lake {}: {} raw rows in {} files ({:.1} MiB), {} days ({first} to {last})",
        lake.display(),
        raw.rows,
        raw.files.len(),
        raw.bytes as f64 / MIB,
        raw.days.len()
    );
    let manifest = write_manifest(&o, &raw, &first, &last)?;

    let mut kv: Vec<Run> = Vec::new();
    let mut duck: Vec<Run> = Vec::new();
    for i in 0..o.runs {
        // Alternate which engine goes first, so neither always gets the warmer machine.
        let order: [bool; 2] = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for kvlake_turn in order {
            if kvlake_turn {
                let r = run_kvlake(&o, &lake, raw.rows)?;
                eprintln!("run {}: kvlake {}", i + 1, r.line());
                kv.push(r);
            } else {
                let r = run_duckdb(&o, &manifest)?;
                eprintln!("run {}: duckdb {}", i + 1, r.line());
                duck.push(r);
            }
        }
    }
    report(&o, &raw, &kv, &duck)
}

const MIB: f64 = 1024.0 * 1024.0;

/// What the marker next to the lake records.
#[derive(Debug)]
struct Built {
    rows: u64,
}

fn attacks() -> Vec<Attack> {
    let day = DAY_MICROS;
    let hour = 3_600_000_000;
    vec![
        Attack::MassSecretRetrieval {
            at_micros: 9 * day + 14 * hour,
            count: 120,
        },
        Attack::ListThenRead {
            at_micros: 11 * day + 10 * hour,
            gets: 30,
        },
        Attack::SensitiveOperation {
            at_micros: 13 * day + 16 * hour,
            operation: "SecretPurge".into(),
        },
        Attack::NewIdentityOnVault {
            at_micros: 15 * day + 9 * hour,
        },
        Attack::VolumeSpike {
            at_micros: 17 * day + 11 * hour,
            factor: 8.0,
        },
        Attack::DeniedBurst {
            at_micros: 19 * day + 15 * hour,
            count: 40,
        },
        Attack::NewIpForIdentity {
            at_micros: 21 * day + 13 * hour,
        },
    ]
}

/// The lake, built unless the marker says it is there with the same shape.
fn build_lake(o: &Options, lake: &Path) -> Result<Built> {
    let marker = o.dir.join("lake.built.json");
    let shape = json!({
        "seed": SEED,
        "start": START_DATE,
        "days": o.days,
        "events_per_second": o.events_per_second,
    });
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let m: Value = serde_json::from_str(&text).context("lake.built.json")?;
        if m["shape"] == shape
            && let Some(rows) = m["rows"].as_u64()
        {
            eprintln!(
                "lake already built ({rows} rows, marker {})",
                marker.display()
            );
            return Ok(Built { rows });
        }
        eprintln!(
            "marker {} is for another shape: rebuilding",
            marker.display()
        );
    }
    let _ = std::fs::remove_file(&marker);
    if lake.exists() {
        std::fs::remove_dir_all(lake).with_context(|| format!("removing {}", lake.display()))?;
    }
    let spool = o.dir.join("spool");
    if spool.exists() {
        std::fs::remove_dir_all(&spool)?;
    }
    std::fs::create_dir_all(&spool)?;
    std::fs::create_dir_all(lake)?;

    let start_day = parse_date(START_DATE).context("start date")?;
    let day_names: Vec<String> = (0..o.days).map(|d| format_date(start_day + d)).collect();
    let config = GeneratorConfig {
        seed: SEED,
        start_time_micros: start_day * DAY_MICROS,
        events_per_second: o.events_per_second,
        attacks: attacks(),
        ..GeneratorConfig::default()
    };
    let started = Instant::now();
    // The generator writes day d+1 while day d is converted; the rendezvous channel keeps
    // at most two days of JSON on disk.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, PathBuf, u64)>(0);
    let gen_spool = spool.clone();
    let generator = std::thread::spawn(move || -> Result<()> {
        let mut generator = Generator::new(config);
        let mut buf = Vec::with_capacity(BLOCK * 1500);
        let open = |d: usize| -> Result<(PathBuf, BufWriter<std::fs::File>)> {
            // A distinct name per day: convert keeps one log per input path.
            let path = gen_spool.join(format!("day-{d:03}.json"));
            let file = std::fs::File::create(&path)?;
            Ok((path, BufWriter::with_capacity(1 << 20, file)))
        };
        let mut day = 0usize;
        let (mut path, mut out) = open(day)?;
        let mut lines = 0u64;
        'generate: loop {
            buf.clear();
            generator.write_records(BLOCK, Format::Lines, &mut buf);
            for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let date = date_of(line).context("a generated line without a time")?;
                while date > day_names[day].as_bytes() {
                    out.flush()?;
                    drop(out);
                    if tx.send((day, path.clone(), lines)).is_err() {
                        return Ok(());
                    }
                    day += 1;
                    lines = 0;
                    if day == day_names.len() {
                        break 'generate;
                    }
                    (path, out) = open(day)?;
                }
                out.write_all(line)?;
                out.write_all(b"\n")?;
                lines += 1;
            }
        }
        Ok(())
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let lake_handle = Lake::open(&lake.to_string_lossy(), &[], None)?;
    let limits = BatchLimits::default();
    let mut rows = 0u64;
    let mut dead = 0u64;
    for (day, path, lines) in rx {
        let summary = rt
            .block_on(kvlake_hotpath::files::convert(
                std::slice::from_ref(&path),
                &lake_handle,
                &limits,
                "cold-bench",
            ))
            .with_context(|| format!("converting {}", path.display()))?;
        std::fs::remove_file(&path)?;
        ensure!(
            summary.raw_rows + summary.dead_letter_rows == lines,
            "day {day}: {lines} lines gave {} rows and {} dead letters",
            summary.raw_rows,
            summary.dead_letter_rows
        );
        rows += summary.raw_rows;
        dead += summary.dead_letter_rows;
        eprintln!(
            "day {:>2}/{}: {} rows ({:.0} MB of JSON); {rows} in all, {:.0} s",
            day + 1,
            o.days,
            summary.raw_rows,
            summary.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))??;
    std::fs::remove_dir_all(&spool)?;
    ensure!(dead == 0, "{dead} dead letters from clean generator lines");
    std::fs::write(
        &marker,
        serde_json::to_vec_pretty(&json!({
            "shape": shape,
            "rows": rows,
            "build_seconds": started.elapsed().as_secs_f64(),
        }))?,
    )?;
    eprintln!(
        "built the lake: {rows} rows in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Built { rows })
}

/// `YYYY-MM-DD` of a generated line's `time` field.
fn date_of(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"time\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    line.get(at..at + 10)
}

/// The committed raw files, from the commit entries of the checkpoint log.
#[derive(Debug, Default)]
struct Raw {
    files: Vec<PathBuf>,
    rows: u64,
    bytes: u64,
    days: Vec<String>,
}

fn committed_raw(lake: &Path) -> Result<Raw> {
    // The raw table's live files, from its Delta log (the test kit's own replay): the
    // checkpoint log names a batch's staged rows, which are gone once published.
    let root = lake.join("raw");
    let state = kvlake_tests::delta::replay(&root)?;
    let mut raw = Raw::default();
    let mut days = std::collections::BTreeSet::new();
    for (rel, stats) in &state.files {
        let path = root.join(rel);
        raw.rows += stats
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|v| v.get("numRecords")?.as_u64())
            .with_context(|| format!("{rel}: no numRecords in its add's stats"))?;
        raw.bytes += std::fs::metadata(&path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        if let Some(day) = rel.split("date=").nth(1).and_then(|s| s.get(..10)) {
            days.insert(day.to_string());
        }
        raw.files.push(path);
    }
    raw.files.sort();
    raw.days = days.into_iter().collect();
    ensure!(!raw.files.is_empty(), "no committed raw file in the lake");
    Ok(raw)
}

/// The job description `cold_duckdb.py` reads: files, filled-in SQL, sort keys, output.
fn write_manifest(o: &Options, raw: &Raw, first: &str, last: &str) -> Result<PathBuf> {
    let mut values = Thresholds::default().sql_values();
    values.insert("from", first.to_string());
    values.insert("to", last.to_string());
    let tables = TABLES
        .iter()
        .map(|t| {
            Ok(json!({
                "name": t.name,
                "sql": substitute(t.name, t.sql, &values)?,
                "sort": t.sort,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let manifest = json!({
        "raw_files": raw.files,
        "events_sql": kvlake_coldpath::definitions::EVENTS_SQL,
        "tables": tables,
        "out": o.dir.join("duckdb-out"),
        "temp_directory": o.dir.join("duckdb-tmp"),
        "threads": threads,
    });
    let path = o.dir.join("duckdb-manifest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    Ok(path)
}

/// One measured run of an engine.
#[derive(Debug, Clone, Default)]
struct Run {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    /// Seconds per definition, in run order (`scan` first for kvlake).
    steps: Vec<(String, f64)>,
    /// Rows written per table.
    rows: BTreeMap<String, u64>,
    /// Chunks of days the daily tables were computed in.
    chunks: usize,
}

impl Run {
    fn line(&self) -> String {
        format!(
            "wall {:.1} s, cpu {:.1} s, peak RSS {:.0} MiB; {}",
            self.wall,
            self.cpu,
            self.rss_mib,
            self.steps
                .iter()
                .map(|(t, s)| format!("{t} {s:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// `cmd` as a child of GNU time: (wall, user+sys, max RSS KiB) of the child, from wait4.
fn timed(cmd: &[&std::ffi::OsStr], usage: &Path) -> Command {
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f").arg("%e %U %S %M").arg("-o").arg(usage);
    c.args(cmd);
    c
}

fn read_usage(usage: &Path) -> Result<(f64, f64, f64)> {
    let text = std::fs::read_to_string(usage)?;
    let last = text.lines().last().unwrap_or_default();
    let v: Vec<f64> = last
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("GNU time wrote `{text}`"))?;
    ensure!(v.len() == 4, "GNU time wrote `{text}`");
    Ok((v[0], v[1] + v[2], v[3] / 1024.0))
}

fn message(v: &Value) -> Option<&str> {
    v.pointer("/fields/message")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| v.get(name))
}

fn run_kvlake(o: &Options, lake: &Path, raw_rows: u64) -> Result<Run> {
    // A full run, as on the fresh lake: no state, no tables.
    for rel in ["agg", "_kvlake/cold"] {
        let p = lake.join(rel);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
    }
    let usage = o.dir.join("kvlake.time");
    let mut cmd = timed(
        &[
            o.kvlake.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
            "cold".as_ref(),
            "--lake".as_ref(),
            lake.as_os_str(),
        ],
        &usage,
    );
    cmd.env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only the defaults, as DuckDB gets.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KVLAKE_") {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .context("starting kvlake cold under /usr/bin/time")?;
    let stdout = child.stdout.take().context("stdout")?;
    let out_thread = std::thread::spawn(move || -> String {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let stderr = child.stderr.take().context("stderr")?;
    let mut marks: Vec<(String, Duration)> = vec![("scan".into(), Duration::ZERO)];
    let mut tail = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        let at = started.elapsed();
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && message(&v) == Some("cold: computing")
        {
            let table = field(&v, "table")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            marks.push((table, at));
        }
        tail.push(line);
    }
    let status = child.wait()?;
    let end = started.elapsed();
    let stdout = out_thread.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "kvlake cold failed ({status}):\n{}",
            tail.iter()
                .rev()
                .take(15)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let (wall, cpu, rss_mib) = read_usage(&usage)?;
    // A table computed in several chunks of days is logged once per chunk: add them up.
    // Loading a chunk's raw rows logs no line of its own, so the first chunk's load counts
    // under `scan` and each later one under the step before it (the last daily table).
    let chunks = marks.get(1).map_or(0, |(first, _)| {
        marks.iter().filter(|(n, _)| n == first).count()
    });
    let mut steps: Vec<(String, f64)> = Vec::new();
    for (i, (name, at)) in marks.iter().enumerate() {
        let next = marks.get(i + 1).map_or(end, |(_, t)| *t);
        let secs = next.saturating_sub(*at).as_secs_f64();
        match steps.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s += secs,
            None => steps.push((name.clone(), secs)),
        }
    }
    // "cold: … (N rows)" and "  table   rows rows" lines.
    let mut rows = BTreeMap::new();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("  ")
            && parts.len() == 3
            && parts[2] == "rows"
            && let Ok(n) = parts[1].parse()
        {
            rows.insert(parts[0].to_string(), n);
        }
    }
    ensure!(
        stdout.contains(&format!("({raw_rows} rows)")),
        "kvlake cold did not read all {raw_rows} raw rows: {stdout}"
    );
    Ok(Run {
        wall,
        cpu,
        rss_mib,
        steps,
        rows,
        chunks,
    })
}

fn run_duckdb(o: &Options, manifest: &Path) -> Result<Run> {
    let usage = o.dir.join("duckdb.time");
    let mut cmd = timed(
        &[
            o.python.as_ref(),
            o.script.as_os_str(),
            manifest.as_os_str(),
        ],
        &usage,
    );
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("starting cold_duckdb.py under /usr/bin/time")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("cold_duckdb.py failed ({}): {stdout}", out.status);
    }
    let (wall, cpu, rss_mib) = read_usage(&usage)?;
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("cold_duckdb.py printed no JSON result")?;
    let mut steps = Vec::new();
    let mut rows = BTreeMap::new();
    if let Some(s) = result["setup_seconds"].as_f64() {
        steps.push(("setup".to_string(), s));
    }
    for t in result["tables"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("?").to_string();
        steps.push((name.clone(), t["seconds"].as_f64().unwrap_or(0.0)));
        rows.insert(name, t["rows"].as_u64().unwrap_or(0));
    }
    Ok(Run {
        wall,
        cpu,
        rss_mib,
        steps,
        rows,
        chunks: 1,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn medians(runs: &[Run]) -> (f64, f64, f64) {
    (
        median(runs.iter().map(|r| r.wall).collect()),
        median(runs.iter().map(|r| r.cpu).collect()),
        median(runs.iter().map(|r| r.rss_mib).collect()),
    )
}

/// Median seconds of each step, in the order of the first run.
fn step_medians(runs: &[Run]) -> Vec<(String, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .steps
        .iter()
        .map(|(name, _)| {
            let v = runs
                .iter()
                .filter_map(|r| r.steps.iter().find(|(n, _)| n == name).map(|(_, s)| *s))
                .collect();
            (name.clone(), median(v))
        })
        .collect()
}

fn report(o: &Options, raw: &Raw, kv: &[Run], duck: &[Run]) -> Result<()> {
    let (kw, kc, kr) = medians(kv);
    let (dw, dc, dr) = medians(duck);
    let rows = raw.rows as f64;
    println!();
    println!(
        "cold path, {} raw rows ({:.1} MiB of Parquet in {} files), {} days; medians of {} runs",
        raw.rows,
        raw.bytes as f64 / MIB,
        raw.files.len(),
        raw.days.len(),
        o.runs
    );
    println!(
        "{:<8} {:>8} {:>8} {:>14} {:>12}",
        "engine", "wall s", "CPU s", "peak RSS MiB", "rows/s"
    );
    for (name, w, c, r) in [("kvlake", kw, kc, kr), ("duckdb", dw, dc, dr)] {
        println!(
            "{name:<8} {w:>8.1} {c:>8.1} {r:>14.0} {:>12.0}",
            rows / w.max(1e-9)
        );
    }
    let ratio = kw / dw.max(1e-9);
    println!(
        "kvlake/duckdb: wall {ratio:.2}x, CPU {:.2}x, RSS {:.2}x (floor: wall ≤ 1.5x) {}",
        kc / dc.max(1e-9),
        kr / dr.max(1e-9),
        if ratio <= 1.5 { "PASS" } else { "FAIL" }
    );
    println!("seconds per definition (medians):");
    let ks = step_medians(kv);
    let ds = step_medians(duck);
    let mut names: Vec<String> = ks.iter().map(|(n, _)| n.clone()).collect();
    for (n, _) in &ds {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    println!("  {:<22} {:>8} {:>8}", "definition", "kvlake", "duckdb");
    let get = |v: &[(String, f64)], n: &str| {
        v.iter()
            .find(|(m, _)| m == n)
            .map_or("-".to_string(), |(_, s)| format!("{s:.1}"))
    };
    for n in &names {
        println!("  {n:<22} {:>8} {:>8}", get(&ks, n), get(&ds, n));
    }
    if let Some(k) = kv.first().filter(|k| k.chunks > 1) {
        let last_daily = TABLES
            .iter()
            .rev()
            .find(|t| t.stage == kvlake_coldpath::definitions::Stage::Daily)
            .map_or("?", |t| t.name);
        println!(
            "  (kvlake computed the daily tables in {} chunks of days; loading chunk 1 is in \
             `scan`, loading chunks 2-{} in `{last_daily}`)",
            k.chunks, k.chunks
        );
    }
    println!("rows written (kvlake / duckdb):");
    if let (Some(k), Some(d)) = (kv.first(), duck.first()) {
        for t in TABLES {
            let kr = k.rows.get(t.name).copied().unwrap_or(0);
            let dr = d.rows.get(t.name).copied().unwrap_or(0);
            println!(
                "  {:<22} {kr:>10} {dr:>10}{}",
                t.name,
                if kr == dr { "" } else { "  (differ)" }
            );
        }
    }
    let summary = json!({
        "raw_rows": raw.rows,
        "raw_bytes": raw.bytes,
        "raw_files": raw.files.len(),
        "days": raw.days.len(),
        "runs": o.runs,
        "kvlake_chunks": kv.first().map_or(0, |k| k.chunks),
        "kvlake": {"wall": kw, "cpu": kc, "rss_mib": kr, "steps": ks,
                   "each": kv.iter().map(|r| json!([r.wall, r.cpu, r.rss_mib])).collect::<Vec<_>>()},
        "duckdb": {"wall": dw, "cpu": dc, "rss_mib": dr, "steps": ds,
                   "each": duck.iter().map(|r| json!([r.wall, r.cpu, r.rss_mib])).collect::<Vec<_>>()},
        "ratio_wall": ratio,
    });
    let path = o.dir.join("cold-bench-report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
    println!("(also in {})", path.display());
    Ok(())
}
