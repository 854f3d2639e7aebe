//! Start-up benchmark: what `kvlake hot` spends on a many-partition hub before it does
//! work, measured from outside the process, as a scheduler or an operator sees it.
//!
//! On librdkafka's mock cluster (`kvlake mock-broker`, `--partitions`, default 64), with the
//! lake on the local filesystem or, with `--azurite`, on Azurite over HTTP (each lake
//! round trip then costs what a storage request costs, as on ADLS, only less):
//! 1. **fresh**: a new lake, `--until-caught-up`: spawn → first batch committed, and the
//!    whole run;
//! 2. **no-op**: the same lake again, nothing new to read: the whole run (a scheduled job
//!    that finds nothing to do);
//! 3. **restart**: the service (no `--until-caught-up`) killed with SIGKILL right after
//!    its first commit, new messages produced, started again: spawn → its first batch
//!    committed. `--batch-max-wait` (default 100ms here) is part of that figure when the
//!    kill left no uncommitted plan to re-run.
//!
//! "Committed" is the service's own `batch committed` log line (its timestamp, against the
//! wall clock at spawn). Ends by checking every produced record is in the lake exactly
//! once by its coordinates.
//!
//! ```sh
//! cargo build --release -p kvlake -p kvlake-benches
//! target/release/startup [--partitions 64] [--runs 5] [--batch-max-wait 100ms] [--azurite]
//! ```
//! `KVLAKE_BIN` picks another `kvlake` binary (a before/after comparison).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use kvlake_schemas::time::parse_timestamp_micros;
use kvlake_tests::{Azurite, Broker, Ledger, Proc, hot_command, produce, small_messages};

const TOPIC: &str = "startup";

fn main() -> Result<()> {
    let mut partitions = 64;
    let mut runs = 5;
    let mut max_wait = "100ms".to_string();
    let mut azurite = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--partitions" => partitions = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            "--batch-max-wait" => max_wait = value()?,
            "--azurite" => azurite = true,
            _ => {
                bail!("usage: startup [--partitions N] [--runs N] [--batch-max-wait D] [--azurite]")
            }
        }
    }
    // `KVLAKE_BENCH_KEEP=1` keeps the lake and every run's log for a look afterwards.
    let dir = tempfile::tempdir()?;
    if std::env::var_os("KVLAKE_BENCH_KEEP").is_some() {
        println!("keeping {}", dir.path().display());
    }
    let local_lake = dir.path().join("lake");
    let az = if azurite {
        Some(Azurite::with_container(
            &dir.path().join("azurite"),
            "lake",
        )?)
    } else {
        None
    };
    let (lake_url, storage) = match &az {
        Some(az) => ("az://lake/kv".to_string(), az.options()),
        None => (
            local_lake.to_str().context("lake path")?.to_string(),
            Vec::new(),
        ),
    };
    println!(
        "kvlake: {} ({} cores), lake: {}",
        kvlake_tests::kvlake_bin().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if azurite { "Azurite" } else { "local folder" }
    );
    let broker = Broker::start(TOPIC, partitions)?;
    let mut ledger = Ledger::default();
    let mut seed = 1;
    let mut more = |ledger: &mut Ledger| -> Result<()> {
        seed += 1;
        produce(
            &broker.bootstrap,
            TOPIC,
            partitions,
            small_messages(seed, 0.0),
            partitions as usize * 4,
            ledger,
        )
    };
    let hot = |extra: &[&str], log: &Path| -> Result<(Proc, SystemTime)> {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(storage.iter().map(String::as_str));
        let started = SystemTime::now();
        let child = hot_command(&broker.bootstrap, TOPIC, &lake_url, &args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok((Proc(child), started))
    };
    more(&mut ledger)?;

    // 1. Fresh lake, until caught up.
    let log = dir.path().join("fresh.log");
    let t = Instant::now();
    let (mut run, started) = hot(&["--until-caught-up"], &log)?;
    let first = first_commit(&log, started, &mut run, Duration::from_secs(120))?;
    let status = run.0.wait()?;
    ensure!(status.success(), "fresh run failed: {status}");
    println!(
        "fresh, {partitions} partitions: first batch committed after {:.3} s, whole run {:.3} s",
        first.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    // 2. No-op scheduled runs.
    let mut noop = Vec::new();
    for i in 0..runs {
        let log = dir.path().join(format!("noop-{i}.log"));
        let t = Instant::now();
        let (mut run, _) = hot(&["--until-caught-up"], &log)?;
        let status = run.0.wait()?;
        ensure!(status.success(), "no-op run failed: {status}");
        noop.push(t.elapsed());
    }
    println!(
        "no-op scheduled run, {partitions} partitions: median {:.3} s of {runs} ({})",
        median(&mut noop).as_secs_f64(),
        list(&noop)
    );

    // 3. kill -9 restarts of the service.
    let mut restart = Vec::new();
    let mut service = None;
    for i in 0..runs {
        // `Proc`'s drop sends SIGKILL and reaps the process: killed right after its first
        // commit, other partitions' batches are open or half-way through their protocol.
        drop(service.take());
        more(&mut ledger)?;
        let log = dir.path().join(format!("service-{i}.log"));
        let (mut p, started) = hot(&["--batch-max-wait", &max_wait], &log)?;
        restart.push(first_commit(
            &log,
            started,
            &mut p,
            Duration::from_secs(120),
        )?);
        service = Some(p);
    }
    drop(service);
    println!(
        "kill -9 restart → first batch committed, {partitions} partitions, --batch-max-wait {max_wait}: median {:.3} s of {runs} ({})",
        median(&mut restart).as_secs_f64(),
        list(&restart)
    );

    // Whatever was killed where, one last run takes the rest: every record once.
    let (mut run, _) = hot(&["--until-caught-up"], &dir.path().join("last.log"))?;
    let status = run.0.wait()?;
    ensure!(status.success(), "final run failed: {status}");
    if let Some(az) = &az {
        tokio::runtime::Runtime::new()?.block_on(kvlake_tests::download_azurite(
            az,
            "lake",
            &dir.path().join("download"),
        ))?;
    }
    let read_back = match az {
        Some(_) => dir.path().join("download/kv"),
        None => local_lake,
    };
    kvlake_tests::assert_exactly_once(
        &ledger.expected(),
        &kvlake_tests::lake_coordinates(&read_back)?,
    )?;
    println!("exactly once: {} records", ledger.records());
    if std::env::var_os("KVLAKE_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    Ok(())
}

/// Time from `started` to the first `batch committed` line in `log` (polled every 2 ms).
fn first_commit(
    log: &Path,
    started: SystemTime,
    p: &mut Proc,
    limit: Duration,
) -> Result<Duration> {
    let t = Instant::now();
    let start_micros = started.duration_since(UNIX_EPOCH)?.as_micros() as i64;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text
            .lines()
            .filter(|l| l.contains("\"message\":\"batch committed\""))
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                parse_timestamp_micros(v.get("timestamp")?.as_str()?)
            })
        {
            return Ok(Duration::from_micros(
                u64::try_from(at - start_micros).unwrap_or(0),
            ));
        }
        if let Some(s) = p.0.try_wait()? {
            bail!(
                "kvlake exited ({s}) before committing a batch; its log:\n{}",
                tail(&text)
            );
        }
        ensure!(
            t.elapsed() < limit,
            "no batch committed within {limit:?}; the log:\n{}",
            tail(&text)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
