//! The cold-path definitions on both engines: `kvlake cold` (DataFusion) and
//! `deploy/spark/kvlake_cold.py` (PySpark, local mode) over the same lake, every table
//! compared row for row by `deploy/spark/compare.py` (pyarrow).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvlake_tests::*;
use serde_json::Value;

const TABLES: [&str; 6] = [
    "vault_daily",
    "identity_daily",
    "identity_ip_daily",
    "sensitive_operations",
    "baselines",
    "anomalies",
];

/// Every kind the injected attacks (and the traffic around them) must produce.
const KINDS: [&str; 7] = [
    "sensitive_operation",
    "mass_secret_retrieval",
    "list_then_read",
    "denied_burst",
    "unusual_volume",
    "new_identity_on_vault",
    "new_ip_for_identity",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn kvlake(args: &[&str], limit: Duration) -> Result<String> {
    let mut cmd = Command::new(kvlake_bin());
    cmd.args(args);
    let (code, out, err) = run_to_end(cmd, limit)?;
    ensure!(code == 0, "kvlake {args:?} exited {code}: {err}");
    Ok(out)
}

fn python(args: &[&str], dir: &Path, limit: Duration) -> Result<(i32, String, String)> {
    let mut cmd = Command::new("python3");
    cmd.args(args).current_dir(dir);
    run_to_end(cmd, limit)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The JSON summary compare.py prints last.
fn summary(stdout: &str) -> Result<Value> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no summary line from compare.py")?;
    Ok(serde_json::from_str(line)?)
}

#[test]
fn spark_runs_the_same_definitions_with_the_same_results() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let spark_out = dir.path().join("spark");
    let traffic = dir.path().join("traffic.json");
    let injected = dir.path().join("injected.jsonl");
    let (lake_s, spark_s) = (
        lake.to_str().context("path")?,
        spark_out.to_str().context("path")?,
    );

    // 9.3 days of traffic (12k records at 0.015/s, 6 vaults, 80 identities), every
    // attack on day 9, after the 7-day warm-up, so every anomaly kind has rows.
    let attacks = [
        "mass-secret-retrieval@8d2h",
        "list-then-read@8d4h",
        "sensitive-operation@8d6h",
        "new-identity-on-vault@8d8h",
        "volume-spike@8d10h",
        "denied-burst@8d12h",
        "new-ip-for-identity@8d14h",
    ];
    let mut args = vec![
        "generate",
        "--records",
        "12000",
        "--seed",
        "11",
        "--events-per-second",
        "0.015",
        "--vaults",
        "6",
        "--identities",
        "80",
        "--format",
        "lines",
        "--injected",
        injected.to_str().context("path")?,
    ];
    for a in &attacks {
        args.extend(["--attack", a]);
    }
    std::fs::write(&traffic, kvlake(&args, Duration::from_secs(60))?)?;
    kvlake(
        &[
            "convert",
            "--lake",
            lake_s,
            traffic.to_str().context("path")?,
        ],
        Duration::from_secs(60),
    )?;
    kvlake(&["cold", "--lake", lake_s], Duration::from_secs(120))?;

    // The comparison must be able to fail: each perturbation of a table is reported.
    let compare = repo().join("deploy/spark/compare.py");
    let compare_s = compare.to_str().context("path")?;
    let (code, out, err) = python(
        &[compare_s, "--self-test", lake_s],
        dir.path(),
        Duration::from_secs(60),
    )?;
    assert_eq!(code, 0, "compare.py --self-test:\n{out}\n{err}");

    // Spark writes over a copy of kvlake's tables (plain Parquet: delta-spark is not
    // installable here): its dynamic overwrite must replace every day kvlake wrote
    // (rows doubled otherwise).
    assert!(kvlake_files(&lake.join("agg")).count() > 0);
    copy_dir(&lake.join("agg"), &spark_out.join("agg"))?;
    let runner = repo().join("deploy/spark/kvlake_cold.py");
    let (code, out, err) = python(
        &[
            runner.to_str().context("path")?,
            "--lake",
            lake_s,
            "--output",
            spark_s,
            "--master",
            "local[2]",
            // Small data on a small machine: few shuffle partitions, no UI, no distributed
            // file listing, no code generation, a JVM tuned for a short run.
            "--conf",
            "spark.sql.shuffle.partitions=2",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.ui.showConsoleProgress=false",
            "--conf",
            "spark.sql.sources.parallelPartitionDiscovery.threshold=100000",
            "--conf",
            "spark.sql.codegen.wholeStage=false",
            "--conf",
            "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1",
        ],
        dir.path(),
        Duration::from_secs(240),
    )?;
    assert_eq!(code, 0, "kvlake_cold.py:\n{out}\n{err}");
    let left_over: Vec<_> = kvlake_files(&spark_out.join("agg")).collect();
    assert!(left_over.is_empty(), "kvlake's files left: {left_over:?}");

    let (code, out, err) = python(
        &[compare_s, lake_s, spark_s],
        dir.path(),
        Duration::from_secs(60),
    )?;
    println!("{out}");
    assert_eq!(code, 0, "DataFusion and Spark differ:\n{out}\n{err}");
    let report = summary(&out)?;
    assert_eq!(report["equal"], Value::Bool(true));
    for side in ["left", "right"] {
        for table in TABLES {
            let rows = report[side]["rows"][table].as_u64().unwrap_or(0);
            assert!(rows > 0, "{side}: {table} has no rows: {report}");
        }
        for kind in KINDS {
            let n = report[side]["anomaly_kinds"][kind].as_u64().unwrap_or(0);
            assert!(n > 0, "{side}: no {kind} anomaly: {report}");
        }
    }
    Ok(())
}

/// The cold path's data files (`part-<16 hex digits>.parquet`, named by its run), not
/// Spark's (`part-00000-<uuid>.c000.snappy.parquet`).
fn kvlake_files(dir: &std::path::Path) -> impl Iterator<Item = std::path::PathBuf> {
    find_files(dir, ".parquet").filter(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("part-")?.strip_suffix(".parquet"))
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}
