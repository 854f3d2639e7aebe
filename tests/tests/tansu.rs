//! End-to-end tests of `kvlake hot` through Tansu: a backlog far beyond the mock cluster's
//! 5 MiB per partition, and a real coordinator's rebalances, each record checked once by source.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use kvlake_generator::{Generator, GeneratorConfig};
use kvlake_tests::tansu::{Batching, Tansu, produce_messages, produce_reported};
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";
const MIB: u64 = 1 << 20;

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One finished run and what its process used.
struct Measured {
    code: Option<i32>,
    stderr: String,
    wall: Duration,
    /// VmHWM: the kernel's own peak of resident memory, last read ≤ 20 ms before exit.
    peak_rss_kib: u64,
    /// Largest RssAnon sampled (heap and stacks, what the budget governs), every 20 ms.
    peak_anon_kib: u64,
}

/// Runs a command to its end, its stderr to a file, polling its memory meanwhile.
/// VmHWM is a high-water mark the kernel keeps, so a poll every 20 ms loses at most
/// the growth of the last 20 ms before exit; after exit /proc no longer has it.
fn run_measured(mut cmd: Command, log: &Path, limit: Duration) -> Result<Measured> {
    let started = Instant::now();
    let mut child = Proc(
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?,
    );
    let pid = child.0.id();
    let (mut peak_rss_kib, mut peak_anon_kib) = (0, 0);
    let status = loop {
        if let Some(hwm) = status_kib(pid, "VmHWM") {
            peak_rss_kib = peak_rss_kib.max(hwm);
        }
        if let Some(anon) = status_kib(pid, "RssAnon") {
            peak_anon_kib = peak_anon_kib.max(anon);
        }
        if let Some(s) = child.0.try_wait()? {
            break s;
        }
        ensure!(
            started.elapsed() < limit,
            "run did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Measured {
        code: status.code(),
        stderr: std::fs::read_to_string(log)?,
        wall: started.elapsed(),
        peak_rss_kib,
        peak_anon_kib,
    })
}

fn last_lines(s: &str, n: usize) -> String {
    let mut v: Vec<_> = s.lines().rev().take(n).collect();
    v.reverse();
    v.join("\n")
}

#[test]
fn a_deep_backlog_on_tansu_stays_within_the_memory_budget_and_lands_exactly_once() -> Result<()> {
    let partitions = 4;
    let per_partition = 40 * MIB;
    let budget_mib = 256;
    // RSS also counts pages mapped from files, which the budget does not govern: the
    // debug binary (over 300 MB on disk) and its libraries, about 65 MiB of it here.
    let slack_mib = 64;
    let tansu = Tansu::with_topic(TOPIC, partitions)?;
    let mut ledger = Ledger::default();

    // The backlog, as a busy producer writes it: large record batches.
    let started = Instant::now();
    let mut g = Generator::new(GeneratorConfig {
        seed: 71,
        bad_message_rate: 0.001,
        ..GeneratorConfig::default()
    });
    let mut bytes: BTreeMap<i32, u64> = BTreeMap::new();
    while bytes.len() < partitions as usize || bytes.values().any(|b| *b < per_partition) {
        let d = produce_messages(
            &tansu.bootstrap,
            TOPIC,
            partitions,
            std::iter::repeat_with(|| g.next_message()).take(2000),
            Batching::Busy,
            &mut ledger,
        )?;
        for (p, b) in d.bytes {
            *bytes.entry(p).or_default() += b;
        }
    }
    let end = ledger_ends(&ledger, partitions);
    println!(
        "produced {} messages, {} records in {:?}; MiB per partition {:?}; end offsets {end:?}",
        ledger.messages.len(),
        ledger.records(),
        started.elapsed(),
        bytes.values().map(|b| b / MIB).collect::<Vec<_>>()
    );

    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let url = lake.display().to_string();
    let budget = format!("{budget_mib}MiB");
    let total = ledger.expected().len();
    let (mut runs, mut found_before) = (0usize, 0usize);
    let mut last_run_rows: u64;
    let (mut peak_rss, mut peak_anon) = (0u64, 0u64);
    loop {
        runs += 1;
        ensure!(runs <= 3, "the lake still misses records after 3 runs");
        let expected = ledger.expected();
        // What Tansu reports as the end before this run: where the run will stop.
        let reported: BTreeMap<i32, i64> = (0..partitions)
            .map(|p| Ok((p, tansu.reported_end(TOPIC, p)?)))
            .collect::<Result<_>>()?;
        let m = run_measured(
            hot_command(
                &tansu.bootstrap,
                TOPIC,
                &url,
                &["--until-caught-up", "--memory-budget", &budget],
            ),
            &dir.path().join(format!("hot-{runs}.log")),
            Duration::from_secs(600),
        )?;
        ensure!(
            m.code == Some(0),
            "run {runs}: {}",
            last_lines(&m.stderr, 30)
        );
        peak_rss = peak_rss.max(m.peak_rss_kib);
        peak_anon = peak_anon.max(m.peak_anon_kib);
        last_run_rows = log_lines(&m.stderr, "batch committed")
            .filter_map(|l| Some(l.get("rows")?.as_u64()? + l.get("dead_letters")?.as_u64()?))
            .sum();
        let found = lake_coordinates(&lake)?;
        println!(
            "run {runs}: {:?}, {last_run_rows} rows, peak RSS (VmHWM) {} MiB, peak RssAnon {} MiB; \
             reported ends {reported:?}; {} of {} coordinates in the lake",
            m.wall,
            m.peak_rss_kib / 1024,
            m.peak_anon_kib / 1024,
            found.len(),
            expected.len()
        );
        ensure!(found.len() > found_before, "run {runs} made no progress");
        found_before = found.len();
        if expected.iter().all(|c| found.contains_key(c)) {
            assert_exactly_once(&expected, &found)?;
            break;
        }
        // Short of everything only because Tansu reported an end short of the truth:
        // the run read up to that reported end, and what is missing is the tail behind
        // it, less than one record batch per partition.
        let missing: Vec<_> = expected.iter().filter(|c| !found.contains_key(c)).collect();
        for &&(p, o, i) in &missing {
            ensure!(
                o >= reported[&p],
                "run {runs} missed ({p}, {o}, {i}), before the reported end {}",
                reported[&p]
            );
        }
        for (p, r) in &reported {
            ensure!(
                found.contains_key(&(*p, r - 1, 0)) || found.contains_key(&(*p, r - 1, -1)),
                "run {runs} stopped before the reported end {r} of partition {p}"
            );
        }
        let end = ledger_ends(&ledger, partitions);
        let tail: i64 = (0..partitions).map(|p| end[&p] - reported[&p]).sum();
        println!(
            "run {runs}: the tail behind Tansu's reported ends: {tail} messages, {} coordinates",
            missing.len()
        );
        ensure!(
            (tail as usize) * 20 < ledger.messages.len(),
            "the tail ({tail} messages) is a small part of the backlog"
        );
        // The run's summary says it stopped short (the broker delivered messages past the
        // end it was told), rather than leaving it silent.
        let said: i64 = log_lines(
            &m.stderr,
            "messages past this run's end point; the next run takes them",
        )
        .filter_map(|l| l.get("messages")?.as_i64())
        .sum();
        ensure!(
            said > 0,
            "run {runs} left {tail} messages behind Tansu's reported ends without saying so"
        );
        // Tansu's reported end stays put until a new batch arrives, so a rerun alone
        // would read nothing: a one-message batch per partition (live traffic) moves it
        // past the tail. They are in the ledger like every other message.
        produce_reported(
            &tansu.bootstrap,
            TOPIC,
            partitions,
            small_messages(72 + runs as u64, 0.0),
            partitions as usize,
            Batching::Single,
            &mut ledger,
        )?;
    }
    if runs > 1 {
        ensure!(
            (last_run_rows as usize) * 10 < total,
            "the later runs read only the tail ({last_run_rows} rows of {total})"
        );
    }
    println!(
        "runs needed: {runs}; peak RSS over all runs: {} MiB (VmHWM), RssAnon {} MiB; budget {budget_mib} MiB",
        peak_rss / 1024,
        peak_anon / 1024
    );
    // Anonymous memory (heap, stacks) is what the budget shares out: it stays within it.
    ensure!(
        peak_anon / 1024 < budget_mib,
        "peak RssAnon {} MiB is over the budget {budget_mib} MiB",
        peak_anon / 1024
    );
    ensure!(
        peak_rss / 1024 < budget_mib + slack_mib,
        "peak RSS {} MiB is over the budget {budget_mib} MiB + {slack_mib} MiB",
        peak_rss / 1024
    );
    Ok(())
}

#[test]
fn scale_out_on_tansu_survives_a_kill_and_a_join_with_traffic_exactly_once() -> Result<()> {
    let partitions = 6;
    let tansu = Tansu::with_topic(TOPIC, partitions)?;
    let mut ledger = Ledger::default();
    produce_reported(
        &tansu.bootstrap,
        TOPIC,
        partitions,
        small_messages(81, 0.01),
        600,
        Batching::Busy,
        &mut ledger,
    )?;
    let dir = tempfile::tempdir()?;
    let url = dir.path().join("lake").display().to_string();
    let spawn = |name: &str, port: u16| {
        spawn_group_member(
            &tansu.bootstrap,
            TOPIC,
            &url,
            port,
            &dir.path().join(format!("{name}.log")),
        )
    };
    let ports = [free_port()?, free_port()?, free_port()?];
    let n = f64::from(partitions);
    let mut a = spawn("a", ports[0])?;
    let mut b = spawn("b", ports[1])?;
    // Both hold partitions and have committed to the lake before the kill, so the
    // survivor must resume the dead one's partitions from the dead one's commits.
    let split = wait_for_split([ports[0], ports[1]], partitions)?;
    println!(
        "a and b split the partitions and committed {split:?} after start: a {}, b {}",
        partitions_assigned(ports[0]),
        partitions_assigned(ports[1])
    );

    // Live traffic throughout the kill and the join, on its own thread and ledger.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, bootstrap) = (stop.clone(), tansu.bootstrap.clone());
        std::thread::spawn(move || -> Result<Ledger> {
            let mut live = Ledger::default();
            let mut g = Generator::new(small_messages(82, 0.01));
            while !stop.load(Ordering::Relaxed) {
                produce_messages(
                    &bootstrap,
                    TOPIC,
                    partitions,
                    std::iter::repeat_with(|| g.next_message()).take(30),
                    Batching::Busy,
                    &mut live,
                )?;
                // Pacing, not waiting: a stream of a few hundred messages a second.
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(live)
        })
    };

    signal(&a.0, "KILL");
    let _ = a.0.wait();
    let takeover = wait_for(
        "the survivor to take every partition",
        Duration::from_secs(120),
        || Ok(partitions_assigned(ports[1]) == n),
    )?;
    println!("kill -9 of a to b holding all {partitions} partitions: {takeover:?}");

    let mut c = spawn("c", ports[2])?;
    let join = wait_for(
        "b and the newcomer c to split the partitions",
        Duration::from_secs(120),
        || {
            let (y, z) = (partitions_assigned(ports[1]), partitions_assigned(ports[2]));
            Ok(y > 0.0 && z > 0.0 && y + z == n)
        },
    )?;
    println!(
        "start of c to b and c splitting: {join:?} (b {}, c {})",
        partitions_assigned(ports[1]),
        partitions_assigned(ports[2])
    );

    stop.store(true, Ordering::Relaxed);
    let live = traffic
        .join()
        .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))??;
    println!(
        "{} messages produced during the kill and the join",
        live.messages.len()
    );
    ensure!(!live.messages.is_empty());
    for (k, v) in live.messages {
        ensure!(
            ledger.messages.insert(k, v).is_none(),
            "{k:?} produced twice"
        );
    }
    let end = ledger_ends(&ledger, partitions);
    // Done when the lake's log has every partition up to its end, by whichever
    // instance holds it now (a gauge left behind by a former holder is lower).
    let drained = wait_for(
        "the lake's log to reach every partition's end",
        Duration::from_secs(180),
        || {
            let mut top: BTreeMap<i32, i64> = BTreeMap::new();
            for port in &ports[1..] {
                for (p, o) in committed_by(*port) {
                    let t = top.entry(p).or_insert(o);
                    *t = (*t).max(o);
                }
            }
            Ok(end.iter().all(|(p, e)| top.get(p).is_some_and(|o| o >= e)))
        },
    )?;
    println!("traffic stopped to the lake holding all of it: {drained:?}");

    let mut logs = Vec::new();
    for (name, p) in [("b", &mut b), ("c", &mut c)] {
        signal(&p.0, "TERM");
        let (code, _) = p.finish()?;
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log")))?;
        ensure!(
            code == Some(0),
            "{name} exited {code:?}: {}",
            last_lines(&log, 30)
        );
        logs.push(log);
    }
    let b_assigned = log_lines(&logs[0], "partitions assigned").count();
    ensure!(
        b_assigned >= 3,
        "b saw the split, the takeover and the join: {b_assigned} assignments"
    );
    let commits: Vec<usize> = logs
        .iter()
        .map(|l| log_lines(l, "batch committed").count())
        .collect();
    println!("batches committed: b {}, c {}", commits[0], commits[1]);
    // What came in while the group rebalanced for c landed on c's partitions.
    ensure!(commits[1] > 0, "the newcomer c committed nothing");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(Path::new(&url))?)?;
    Ok(())
}

#[test]
fn tansu_answers_metadata_and_takes_a_topic() -> Result<()> {
    let tansu = Tansu::with_topic(TOPIC, 3)?;
    let mut ledger = Ledger::default();
    let d = produce_reported(
        &tansu.bootstrap,
        TOPIC,
        3,
        small_messages(91, 0.0),
        30,
        Batching::Single,
        &mut ledger,
    )?;
    ensure!(d.ranges.len() == 3, "{:?}", d.ranges);
    for (p, (first, end)) in d.ranges {
        ensure!(first == 0 && end == 10, "partition {p}: {first}..{end}");
        // One message per batch: the reported end is exact.
        let reported = tansu.reported_end(TOPIC, p)?;
        ensure!(
            reported == end,
            "partition {p}: reported end {reported}, true {end}"
        );
    }
    let _ = tansu.log_text();
    Ok(())
}
