//! End-to-end tests of `kvlake hot` against a real Kafka-protocol broker process
//! (librdkafka's mock cluster) and Azurite; every test checks each record by its
//! (partition, offset, record index).

use std::time::{Duration, Instant};

use anyhow::Result;
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";

#[test]
fn every_record_exactly_once_until_caught_up_on_local_lake_with_poison_messages() -> Result<()> {
    let (broker, ledger) = loaded_broker(TOPIC, 4, 11, 0.05, 1200)?;
    let lake = tempfile::tempdir()?;
    let lake_url = lake.path().to_str().unwrap_or_default().to_string();
    let (code, stdout, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &lake_url, &["--until-caught-up"]),
        Duration::from_secs(120),
    )?;
    assert_eq!(code, 0, "stdout {stdout}\nstderr {stderr}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    // Poison messages are dead-lettered with their reason, and the stream went on past them.
    let bad: Vec<_> = ledger.messages.values().filter_map(|m| m.2).collect();
    assert!(
        bad.len() >= 20,
        "the generator made {} bad messages",
        bad.len()
    );
    let dead = parquet_files(&lake.path().join("deadletter"))?;
    assert!(!dead.is_empty());
    assert!(
        log_lines(&stderr, "batch committed").count() >= 4,
        "one batch per partition at least"
    );
    assert!(stdout.contains("committed"), "{stdout}");
    // A second run finds nothing new and writes nothing.
    let before = find_files(lake.path(), ".commit.json").count();
    let (code, _, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &lake_url, &["--until-caught-up"]),
        Duration::from_secs(60),
    )?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(find_files(lake.path(), ".commit.json").count(), before);
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_exactly_once_until_caught_up_on_azurite() -> Result<()> {
    let az_dir = tempfile::tempdir()?;
    let az = Azurite::with_container(az_dir.path(), "lake")?;
    let (broker, mut ledger) = loaded_broker(TOPIC, 4, 12, 0.02, 400)?;
    let mut args: Vec<String> = vec!["--until-caught-up".into()];
    args.extend(az.options());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Two runs over traffic of the same hours: each hour gets a file per run, so
    // compaction below has files to merge (one run's partitions share one per hour).
    for round in 0..2 {
        if round > 0 {
            kvlake_tests::produce(
                &broker.bootstrap,
                TOPIC,
                4,
                kvlake_tests::small_messages(13, 0.02),
                400,
                &mut ledger,
            )?;
        }
        let (code, stdout, stderr) = run_to_end(
            hot_command(&broker.bootstrap, TOPIC, "az://lake/kv", &args),
            Duration::from_secs(120),
        )?;
        assert_eq!(code, 0, "stdout {stdout}\nstderr {stderr}");
    }
    let local = tempfile::tempdir()?;
    let n = download_azurite(&az, "lake", local.path()).await?;
    assert!(n > 8, "only {n} objects in Azurite");
    assert!(
        local.path().join("kv/_kvlake/log").exists(),
        "the checkpoint log lives in the lake"
    );
    assert_exactly_once(
        &ledger.expected(),
        &lake_coordinates(&local.path().join("kv"))?,
    )?;
    assert_exactly_once(
        &ledger.expected(),
        &kvlake_tests::delta::deltalake_python_coordinates(&local.path().join("kv"))?,
    )?;
    // Compaction, checkpoint and VACUUM through Azure's create-if-absent commits.
    let mut compact: Vec<String> = ["compact", "--lake", "az://lake/kv", "--older-than", "0s"]
        .map(String::from)
        .to_vec();
    compact.extend(az.options());
    let out = std::process::Command::new(kvlake_tests::kvlake_bin())
        .args(&compact)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = tempfile::tempdir()?;
    download_azurite(&az, "lake", after.path()).await?;
    let raw = after.path().join("kv/raw");
    assert!(
        kvlake_tests::delta::replay(&raw)?.from_checkpoint.is_some(),
        "maintenance wrote a checkpoint on Azure"
    );
    let before = kvlake_tests::delta::live_files(&local.path().join("kv/raw"))?.len();
    let merged = kvlake_tests::delta::live_files(&raw)?.len();
    assert!(
        merged < before,
        "compaction merged files on Azure ({before} -> {merged})"
    );
    assert_exactly_once(
        &ledger.expected(),
        &lake_coordinates(&after.path().join("kv"))?,
    )?;
    assert_exactly_once(
        &ledger.expected(),
        &kvlake_tests::delta::deltalake_python_coordinates(&after.path().join("kv"))?,
    )?;
    Ok(())
}

#[test]
fn broker_unreachable_at_start_fails_with_a_clear_error() -> Result<()> {
    let port = free_port()?;
    let lake = tempfile::tempdir()?;
    let started = Instant::now();
    let mut cmd = hot_command(
        &format!("127.0.0.1:{port}"),
        TOPIC,
        lake.path().to_str().unwrap_or_default(),
        &["--until-caught-up"],
    );
    cmd.args(["--connect-timeout", "3s"]);
    let (code, _, stderr) = run_to_end(cmd, Duration::from_secs(60))?;
    assert_ne!(code, 0);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "one-line reason last: {last}");
    assert!(
        last.contains("metadata") && last.contains("--brokers"),
        "{last}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn max_runtime_and_sigterm_exit_zero_with_a_commit_and_the_next_run_resumes() -> Result<()> {
    let (broker, mut ledger) = loaded_broker(TOPIC, 4, 13, 0.0, 400)?;
    let lake = tempfile::tempdir()?;
    let url = lake.path().to_str().unwrap_or_default().to_string();

    // --max-runtime: service mode stops by itself, exit 0, checkpoint committed.
    let started = Instant::now();
    let (code, _, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &url, &["--max-runtime", "2s"]),
        Duration::from_secs(60),
    )?;
    assert_eq!(code, 0, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(find_files(lake.path(), ".commit.json").count() >= 4);
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;

    // SIGTERM during a run: exit 0 with what it read committed.
    produce(
        &broker.bootstrap,
        TOPIC,
        4,
        small_messages(14, 0.0),
        200,
        &mut ledger,
    )?;
    let commits_before = find_files(lake.path(), ".commit.json").count();
    let child = hot_command(&broker.bootstrap, TOPIC, &url, &["--batch-max-wait", "1h"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut child = Proc(child);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        find_files(lake.path(), ".commit.json").count(),
        commits_before,
        "batches stay open for 1h"
    );
    signal(&child.0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait()? {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        find_files(lake.path(), ".commit.json").count() > commits_before,
        "SIGTERM committed the open batches"
    );
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;

    // The next run resumes where the last stopped and catches up with what came since.
    produce(
        &broker.bootstrap,
        TOPIC,
        4,
        small_messages(15, 0.0),
        100,
        &mut ledger,
    )?;
    let (code, _, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &url, &["--until-caught-up"]),
        Duration::from_secs(60),
    )?;
    assert_eq!(code, 0, "{stderr}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    Ok(())
}

#[test]
fn replay_by_timestamp_range_reproduces_exactly_that_range_twice_without_duplicates() -> Result<()>
{
    let (broker, ledger) = loaded_broker(TOPIC, 4, 16, 0.0, 800)?;
    let mut times: Vec<i64> = ledger.messages.values().map(|m| m.1).collect();
    times.sort_unstable();
    let (t1, t2) = (times[times.len() * 3 / 10], times[times.len() * 7 / 10]);
    let in_range = Ledger {
        messages: ledger
            .messages
            .iter()
            .filter(|(_, m)| m.1 >= t1 && m.1 < t2)
            .map(|(k, v)| (*k, *v))
            .collect(),
    };
    assert!(in_range.records() > 100);
    let lake = tempfile::tempdir()?;
    let url = lake.path().to_str().unwrap_or_default().to_string();
    let fmt = |ms: i64| kvlake_schemas::time::format_timestamp_micros(ms * 1000);
    let (s, e) = (fmt(t1), fmt(t2));
    let args = [
        "--starting-timestamp",
        s.as_str(),
        "--ending-timestamp",
        e.as_str(),
        "--output-prefix",
        "replay-1",
    ];
    for run in 0..2 {
        let (code, _, stderr) = run_to_end(
            hot_command(&broker.bootstrap, TOPIC, &url, &args),
            Duration::from_secs(60),
        )?;
        assert_eq!(code, 0, "run {run}: {stderr}");
        assert_exactly_once(
            &in_range.expected(),
            &lake_coordinates(&lake.path().join("replay-1"))?,
        )?;
    }
    assert!(
        !lake.path().join("_kvlake").exists(),
        "a replay never touches the live checkpoint"
    );
    assert!(lake.path().join("replay-1/_kvlake/log").exists());
    Ok(())
}

#[test]
fn every_record_exactly_once_after_twenty_kills() -> Result<()> {
    let partitions = 8;
    let (broker, mut ledger) = loaded_broker(TOPIC, partitions, 21, 0.02, 400)?;
    let lake = tempfile::tempdir()?;
    let url = lake.path().to_str().unwrap_or_default().to_string();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    println!("kill timing seed {seed}");
    let mut rng = Lcg(seed);
    let small = ["--batch-max-records", "120", "--batch-max-wait", "50ms"];
    for round in 0..20u64 {
        produce(
            &broker.bootstrap,
            TOPIC,
            partitions,
            small_messages(100 + round, 0.02),
            80,
            &mut ledger,
        )?;
        let child = hot_command(&broker.bootstrap, TOPIC, &url, &small)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut child = Proc(child);
        std::thread::sleep(Duration::from_millis(rng.range(150, 1500)));
        signal(&child.0, "KILL");
        let _ = child.0.wait();
    }
    let plans = find_files(lake.path(), ".plan.json").count();
    let commits = find_files(lake.path(), ".commit.json").count();
    assert!(
        commits > 20,
        "the runs made progress between kills ({commits} commits)"
    );
    println!("after 20 kills: {plans} plans, {commits} commits");
    let started = Instant::now();
    let (code, _, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &url, &["--until-caught-up"]),
        Duration::from_secs(120),
    )?;
    assert_eq!(code, 0, "{stderr}");
    if let Some(first) = log_lines(&stderr, "batch committed").next() {
        println!(
            "restart to first commit (assign mode, after kill -9): {:?} wall, first commit {first}",
            started.elapsed()
        );
    }
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    // The same through delta-rs, the reader behind Fabric's and Polars' Delta support.
    assert_exactly_once(
        &ledger.expected(),
        &kvlake_tests::delta::deltalake_python_coordinates(lake.path())?,
    )?;
    let raw = kvlake_tests::delta::replay(&lake.path().join("raw"))?;
    assert!(
        raw.from_checkpoint.is_some() || raw.version < 20,
        "a checkpoint every 20 versions (at version {})",
        raw.version
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_is_retried_and_loses_nothing() -> Result<()> {
    let az_dir = tempfile::tempdir()?;
    let mut az = Azurite::with_container(az_dir.path(), "lake")?;
    let (broker, mut ledger) = loaded_broker(TOPIC, 4, 31, 0.0, 200)?;
    let mut args: Vec<String> = ["--batch-max-wait", "200ms", "--storage-retry-timeout", "2m"]
        .map(String::from)
        .to_vec();
    args.extend(az.options());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = hot_command(&broker.bootstrap, TOPIC, "az://lake/kv", &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut child = Proc(child);
    std::thread::sleep(Duration::from_secs(3));
    az.stop();
    produce(
        &broker.bootstrap,
        TOPIC,
        4,
        small_messages(32, 0.0),
        200,
        &mut ledger,
    )?;
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        child.0.try_wait()?.is_none(),
        "kvlake keeps retrying while storage is down"
    );
    az.restart()?;
    std::thread::sleep(Duration::from_secs(4));
    signal(&child.0, "TERM");
    let (code, stderr) = child.finish()?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("retrying") || stderr.contains("retry"),
        "the outage is visible in the log:\n{}",
        stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    let (code, _, stderr) = run_to_end(
        hot_command(
            &broker.bootstrap,
            TOPIC,
            "az://lake/kv",
            &[&["--until-caught-up"], &args[..]].concat(),
        ),
        Duration::from_secs(120),
    )?;
    assert_eq!(code, 0, "{stderr}");
    let local = tempfile::tempdir()?;
    download_azurite(&az, "lake", local.path()).await?;
    assert_exactly_once(
        &ledger.expected(),
        &lake_coordinates(&local.path().join("kv"))?,
    )?;
    Ok(())
}

#[test]
fn two_instances_share_a_group_and_the_survivor_takes_over_exactly_once() -> Result<()> {
    let partitions = 6;
    let (broker, mut ledger) = loaded_broker(TOPIC, partitions, 41, 0.0, 300)?;
    let lake = tempfile::tempdir()?;
    let url = lake.path().to_str().unwrap_or_default().to_string();
    let logs = tempfile::tempdir()?;
    let ports = [free_port()?, free_port()?];
    let spawn = |name: &str, port: u16| {
        spawn_group_member(
            &broker.bootstrap,
            TOPIC,
            &url,
            port,
            &logs.path().join(format!("{name}.log")),
        )
    };
    let n = f64::from(partitions);
    let mut a = spawn("a", ports[0])?;
    let mut b = spawn("b", ports[1])?;
    // Both hold partitions and have committed before the kill, so the survivor must
    // resume the dead one's partitions from the dead one's commits. On a loaded machine
    // one may hold all six for a while before the other joins: wait for the split.
    wait_for_split([ports[0], ports[1]], partitions)?;
    signal(&a.0, "KILL");
    let _ = a.0.wait();
    produce(
        &broker.bootstrap,
        TOPIC,
        partitions,
        small_messages(42, 0.0),
        300,
        &mut ledger,
    )?;
    // The survivor gets the dead member's partitions after the session timeout and
    // reads every partition to its end.
    let end = ledger_ends(&ledger, partitions);
    wait_for(
        "the survivor to hold every partition and commit each to its end",
        Duration::from_secs(120),
        || {
            let committed = committed_by(ports[1]);
            Ok(partitions_assigned(ports[1]) == n
                && end
                    .iter()
                    .all(|(p, e)| committed.get(p).is_some_and(|o| o >= e)))
        },
    )?;
    signal(&b.0, "TERM");
    let (code, _) = b.finish()?;
    let log = std::fs::read_to_string(logs.path().join("b.log"))?;
    assert_eq!(
        code,
        Some(0),
        "{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    let assigned: Vec<_> = log_lines(&log, "partitions assigned").collect();
    assert!(
        assigned.len() >= 2,
        "the survivor saw a second assignment after the kill: {assigned:?}"
    );
    let committed: std::collections::BTreeSet<i64> = log_lines(&log, "batch committed")
        .filter_map(|l| l.get("partition").and_then(|p| p.as_i64()))
        .collect();
    assert_eq!(
        committed.len(),
        partitions as usize,
        "the survivor committed every partition: {committed:?}"
    );
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    Ok(())
}

#[test]
fn a_second_writer_on_the_same_partitions_is_fenced_and_nothing_doubles() -> Result<()> {
    let (broker, ledger) = loaded_broker(TOPIC, 4, 61, 0.0, 600)?;
    let lake = tempfile::tempdir()?;
    let url = lake.path().to_str().unwrap_or_default().to_string();
    // Two scheduled jobs started by mistake at once, both in assign mode on every partition.
    let args = ["--until-caught-up", "--batch-max-records", "40"];
    let (mut a, mut b) = (
        spawn_hot(&broker.bootstrap, TOPIC, &url, &args)?,
        spawn_hot(&broker.bootstrap, TOPIC, &url, &args)?,
    );
    let (code_a, err_a) = a.finish()?;
    let (code_b, err_b) = b.finish()?;
    assert_eq!((code_a, code_b), (Some(0), Some(0)), "{err_a}\n{err_b}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    // Each batch was committed once: one commit per plan, whoever won it.
    let plans = find_files(lake.path(), ".plan.json").count();
    assert_eq!(plans, find_files(lake.path(), ".commit.json").count());
    Ok(())
}
