//! The lake as Delta tables: compaction beside ingestion, VACUUM safety, retention,
//! checkpoints, and a lake written before Delta migrated in place — each read back by
//! the test kit's own `_delta_log` replay and by delta-rs (the `deltalake` package).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kvlake_tests::delta::{deltalake_python_coordinates, live_files, replay, unlisted_files};
use kvlake_tests::{
    Proc, assert_exactly_once, hot_command, kvlake_bin, lake_coordinates, loaded_broker, produce,
    run_to_end, signal, small_messages,
};

const TOPIC: &str = "kv-delta";

fn kvlake(args: &[&str]) -> Result<String> {
    let out = Command::new(kvlake_bin()).args(args).output()?;
    ensure!(
        out.status.success(),
        "kvlake {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Live files per `date=/hour=` folder of a table.
fn files_per_partition(root: &Path) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for f in live_files(root)? {
        let dir = f
            .parent()
            .context("parent")?
            .strip_prefix(root)?
            .display()
            .to_string();
        *out.entry(dir).or_insert(0) += 1;
    }
    Ok(out)
}

/// No record twice, and nothing the broker was not given: what a reader following the log
/// may see while ingestion is still under way.
fn assert_no_double(
    expected: &std::collections::BTreeSet<(i32, i64, i32)>,
    found: &BTreeMap<(i32, i64, i32), usize>,
) -> Result<()> {
    let doubled: Vec<_> = found.iter().filter(|(_, n)| **n > 1).take(5).collect();
    let unknown: Vec<_> = found
        .keys()
        .filter(|c| !expected.contains(c))
        .take(5)
        .collect();
    ensure!(
        doubled.is_empty() && unknown.is_empty(),
        "a reader of the log saw doubled {doubled:?} or unknown {unknown:?} records"
    );
    Ok(())
}

#[test]
fn compaction_beside_ingestion_never_shows_a_record_twice_or_misses_one() -> Result<()> {
    let partitions = 4;
    let (broker, mut ledger) = loaded_broker(TOPIC, partitions, 31, 0.02, 200)?;
    let lake = tempfile::tempdir()?;
    let url = lake.path().to_str().unwrap_or_default().to_string();
    let small = ["--batch-max-records", "40", "--batch-max-wait", "50ms"];
    let mut service = Proc(
        hot_command(&broker.bootstrap, TOPIC, &url, &small)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?,
    );
    let compact = [
        "compact",
        "--lake",
        &url,
        "--older-than",
        "0s",
        "--compact-only",
    ];
    let mut compactions = 0;
    let mut merged_files = 0usize;
    for round in 0..4u64 {
        produce(
            &broker.bootstrap,
            TOPIC,
            partitions,
            small_messages(40 + round, 0.02),
            100,
            &mut ledger,
        )?;
        // Compact while the service commits; read the tables between passes.
        for _ in 0..3 {
            if lake.path().join("raw/_delta_log").is_dir() {
                let out = kvlake(&compact)?;
                compactions += 1;
                merged_files += out
                    .lines()
                    .filter(|l| l.contains("compact raw "))
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<usize>().ok())
                    .sum::<usize>();
                assert_no_double(&ledger.expected(), &lake_coordinates(lake.path())?)?;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Wait for the service to commit everything, then stop it.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let found = lake_coordinates(lake.path())?;
        assert_no_double(&ledger.expected(), &found)?;
        if found.len() == ledger.expected().len() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the service did not commit every record"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&service.0, "TERM");
    let (code, stderr) = service.finish()?;
    ensure!(code == Some(0), "service exit {code:?}: {stderr}");
    let before = files_per_partition(&lake.path().join("raw"))?;
    kvlake(&["compact", "--lake", &url, "--older-than", "0s"])?;
    let after = files_per_partition(&lake.path().join("raw"))?;
    println!(
        "{compactions} compactions beside ingestion merged {merged_files} raw files; at the end {} live files in {} hours before the last pass, {} after",
        before.values().sum::<usize>(),
        before.len(),
        after.values().sum::<usize>()
    );
    ensure!(
        merged_files > 0,
        "compaction beside ingestion merged something"
    );
    ensure!(
        after.values().all(|n| *n == 1),
        "every closed hour is one file after compaction: {after:?}"
    );
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    assert_exactly_once(
        &ledger.expected(),
        &deltalake_python_coordinates(lake.path())?,
    )?;
    // The replaced files are still on storage (VACUUM keeps them 7 days for readers of
    // older versions), so a glob reader would double rows: that is why readers use the log.
    ensure!(
        !unlisted_files(&lake.path().join("raw"))?.is_empty(),
        "the merged-away files stay until VACUUM's retention"
    );
    // Idempotent: a second pass finds nothing to do.
    let version = replay(&lake.path().join("raw"))?.version;
    kvlake(&compact)?;
    ensure!(
        replay(&lake.path().join("raw"))?.version == version,
        "a second compaction committed nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_deletes_only_what_no_snapshot_can_read_and_retention_goes_through_the_table()
-> Result<()> {
    use kvlake_lake::maintain::{expire, vacuum};
    use kvlake_lake::tables::raw_table;
    use kvlake_lake::{DeltaTable, Lake};

    let (broker, mut ledger) = loaded_broker(TOPIC, 2, 32, 0.0, 100)?;
    let dir = tempfile::tempdir()?;
    let url = dir.path().to_str().unwrap_or_default().to_string();
    // Two runs over traffic of the same hours: each hour gets a file per run to merge.
    for seed in [0, 36] {
        if seed > 0 {
            produce(
                &broker.bootstrap,
                TOPIC,
                2,
                small_messages(seed, 0.0),
                100,
                &mut ledger,
            )?;
        }
        let (code, _, stderr) = run_to_end(
            hot_command(
                &broker.bootstrap,
                TOPIC,
                &url,
                &["--until-caught-up", "--batch-max-records", "30"],
            ),
            Duration::from_secs(60),
        )?;
        ensure!(code == 0, "{stderr}");
    }
    kvlake(&[
        "compact",
        "--lake",
        &url,
        "--older-than",
        "0s",
        "--compact-only",
    ])?;
    let raw_dir = dir.path().join("raw");
    let replaced = unlisted_files(&raw_dir)?;
    ensure!(
        !replaced.is_empty(),
        "compaction left replaced files for VACUUM"
    );
    // A file a batch has written but not committed yet: recent, in no log.
    let pending = raw_dir.join("date=2030-01-01/hour=00/in-flight.parquet");
    std::fs::create_dir_all(pending.parent().context("parent")?)?;
    std::fs::write(&pending, b"PAR1")?;

    let lake = Lake::open(&url, &[], None)?;
    let table = DeltaTable::new(&lake, raw_table());
    // Within the retention nothing goes: neither the replaced files (a reader of an
    // older version may still read them) nor the in-flight one.
    let r = vacuum(&table, 3_600_000, false).await?;
    ensure!(
        r.deleted.is_empty(),
        "deleted within the retention: {:?}",
        r.deleted
    );
    ensure!(pending.exists());
    // With no retention at all the replaced files go; live files never do.
    let r = vacuum(&table, 0, false).await?;
    ensure!(
        replaced.iter().all(|p| !p.exists()),
        "every replaced file deleted"
    );
    ensure!(r.deleted.len() >= replaced.len());
    assert_exactly_once(&ledger.expected(), &lake_coordinates(dir.path())?)?;
    assert_exactly_once(
        &ledger.expected(),
        &deltalake_python_coordinates(dir.path())?,
    )?;

    // The checkpoint log keeps only its newest entries, and a restart still resumes.
    kvlake(&["compact", "--lake", &url, "--keep-log-entries", "2"])?;
    let plans = kvlake_tests::find_files(dir.path(), ".plan.json").count();
    ensure!(
        plans <= 2 * 3,
        "pruned to the newest entries per partition ({plans} plans)"
    );
    let (code, _, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &url, &["--until-caught-up"]),
        Duration::from_secs(60),
    )?;
    ensure!(code == 0, "{stderr}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(dir.path())?)?;

    // Retention: every partition of the generated (past) days ends before `now - 1 day`.
    let removed = expire(&table, 24 * 3_600_000).await?;
    ensure!(removed > 0, "retention removed the old partitions");
    ensure!(
        live_files(&raw_dir)?.is_empty(),
        "nothing older than the retention is left in the table"
    );
    let deleted_after = vacuum(&table, 0, false).await?.deleted.len();
    ensure!(
        deleted_after >= removed,
        "VACUUM then deletes the expired files"
    );
    Ok(())
}

#[test]
fn a_lake_written_before_delta_is_migrated_in_place_and_equals_a_fresh_one() -> Result<()> {
    let partitions = 3;
    let (broker, mut ledger) = loaded_broker(TOPIC, partitions, 33, 0.03, 240)?;
    let dir = tempfile::tempdir()?;
    let url = dir.path().to_str().unwrap_or_default().to_string();
    let run = || -> Result<String> {
        let (code, _, stderr) = run_to_end(
            hot_command(&broker.bootstrap, TOPIC, &url, &["--until-caught-up"]),
            Duration::from_secs(60),
        )?;
        ensure!(code == 0, "{stderr}");
        Ok(stderr)
    };
    run()?;
    kvlake(&["cold", "--lake", &url])?;
    let fresh = lake_coordinates(dir.path())?;
    let fresh_anomalies = kvlake_tests::agg::read_table(dir.path(), "anomalies")?;
    // Make it the lake of a kvlake before Delta: its data files named in the checkpoint
    // log's commits (here the first commit names them all, as migrate only needs each
    // committed file once), no `_delta_log`, no statistics in the log.
    let mut legacy_files = Vec::new();
    for table in ["raw", "deadletter"] {
        let root = dir.path().join(table);
        if !root.join("_delta_log").is_dir() {
            continue;
        }
        for f in live_files(&root)? {
            let rows = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&f)?,
            )?
            .metadata()
            .file_metadata()
            .num_rows();
            legacy_files.push(serde_json::json!({
                "path": f.strip_prefix(dir.path())?.display().to_string(),
                "table": table,
                "rows": rows,
                "bytes": std::fs::metadata(&f)?.len(),
            }));
        }
    }
    std::fs::remove_file(dir.path().join("_kvlake/tables.json"))?;
    for table in ["raw", "deadletter"] {
        let _ = std::fs::remove_dir_all(dir.path().join(table).join("_delta_log"));
    }
    for t in kvlake_coldpath::TABLES {
        let _ = std::fs::remove_dir_all(dir.path().join("agg").join(t.name).join("_delta_log"));
    }
    let _ = std::fs::remove_dir_all(dir.path().join("_kvlake/staging"));
    let mut commits: Vec<_> = kvlake_tests::find_files(dir.path(), ".commit.json").collect();
    commits.sort();
    for (i, commit) in commits.iter().enumerate() {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(commit)?)?;
        v["files"] = if i == 0 {
            serde_json::Value::Array(std::mem::take(&mut legacy_files))
        } else {
            serde_json::Value::Array(Vec::new())
        };
        std::fs::write(commit, serde_json::to_vec(&v)?)?;
    }
    let (code, _, stderr) = run_to_end(
        hot_command(&broker.bootstrap, TOPIC, &url, &["--until-caught-up"]),
        Duration::from_secs(60),
    )?;
    ensure!(
        code != 0,
        "the hot path refuses a lake it would half-migrate"
    );
    ensure!(
        stderr.contains("kvlake migrate"),
        "the error says what to run: {stderr}"
    );
    let out = kvlake(&["migrate", "--lake", &url])?;
    println!("{out}");
    assert_eq!(
        lake_coordinates(dir.path())?,
        fresh,
        "the migrated raw table equals the fresh one"
    );
    let raw = replay(&dir.path().join("raw"))?;
    ensure!(
        raw.files
            .values()
            .all(|s| s.as_deref().is_some_and(|s| s.contains("minValues"))),
        "statistics read from the footers"
    );
    ensure!(
        kvlake_tests::agg::read_table(dir.path(), "anomalies")? == fresh_anomalies,
        "the cold path's tables were taken in as they were"
    );
    // The checkpoint log goes on from where it was; the cold path too.
    produce(
        &broker.bootstrap,
        TOPIC,
        partitions,
        small_messages(34, 0.03),
        120,
        &mut ledger,
    )?;
    run()?;
    assert_exactly_once(&ledger.expected(), &lake_coordinates(dir.path())?)?;
    assert_exactly_once(
        &ledger.expected(),
        &deltalake_python_coordinates(dir.path())?,
    )?;
    kvlake(&["cold", "--lake", &url])?;
    Ok(())
}

/// One Delta commit: its version, adds per (date, hour), and how many txns.
type CommitShape = (i64, BTreeMap<String, usize>, usize);

/// Adds per (date, hour) of each commit of a table, from its `_delta_log`.
fn adds_per_hour_per_commit(root: &Path) -> Result<Vec<CommitShape>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("_delta_log"))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(version) = name
            .strip_suffix(".json")
            .and_then(|v| v.parse::<i64>().ok())
        else {
            continue;
        };
        let (mut hours, mut txns) = (BTreeMap::new(), 0);
        for line in std::fs::read_to_string(&path)?.lines() {
            let action: serde_json::Value = serde_json::from_str(line)?;
            if let Some(add) = action.get("add") {
                let pv = &add["partitionValues"];
                let key = format!("{}/{}", pv["date"], pv["hour"]);
                *hours.entry(key).or_insert(0) += 1;
            } else if action.get("txn").is_some() {
                txns += 1;
            }
        }
        out.push((version, hours, txns));
    }
    out.sort_by_key(|(v, _, _)| *v);
    Ok(out)
}

#[test]
fn partitions_committing_together_share_one_file_per_table_hour_and_every_record_lands_once()
-> Result<()> {
    // Generated traffic spreads every batch over several hours, on every partition.
    let partitions = 8;
    let (broker, ledger) = loaded_broker(TOPIC, partitions, 35, 0.05, 1600)?;
    let dir = tempfile::tempdir()?;
    let url = dir.path().to_str().unwrap_or_default().to_string();
    let (code, _, stderr) = run_to_end(
        hot_command(
            &broker.bootstrap,
            TOPIC,
            &url,
            &[
                "--until-caught-up",
                "--batch-max-records",
                "120",
                "--batch-max-wait",
                "2s",
            ],
        ),
        Duration::from_secs(120),
    )?;
    ensure!(code == 0, "{stderr}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(dir.path())?)?;
    assert_exactly_once(
        &ledger.expected(),
        &deltalake_python_coordinates(dir.path())?,
    )?;
    let (mut commits, mut shared, mut batches) = (0, 0, 0);
    for table in ["raw", "deadletter"] {
        for (version, hours, txns) in adds_per_hour_per_commit(&dir.path().join(table))? {
            let doubled: Vec<_> = hours.iter().filter(|(_, n)| **n > 1).collect();
            ensure!(
                doubled.is_empty(),
                "{table} version {version} adds more than one file to an hour: {doubled:?}"
            );
            if txns > 0 {
                commits += 1;
                batches += txns;
                shared += usize::from(txns > 1);
            }
        }
    }
    println!(
        "{batches} partition batches in {commits} table commits ({shared} of them shared by several partitions)"
    );
    ensure!(
        shared > 0 && commits < batches,
        "partitions whose batches close together share commits ({batches} batches, {commits} commits)"
    );
    // Every batch reached its tables, so nothing staged is left behind.
    let staged: Vec<_> =
        kvlake_tests::find_files(&dir.path().join("_kvlake/staging"), ".arrow").collect();
    ensure!(
        staged.is_empty(),
        "staged files of published batches are deleted: {staged:?}"
    );
    Ok(())
}
