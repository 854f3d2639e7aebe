//! `kvlake convert` and `kvlake generate` end to end, with the Parquet read back by
//! independent readers: the parquet crate, and pyarrow and DuckDB (installed by the
//! test command) as a Spark-like outside reader would.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use kvlake_tests::*;

fn generate(records: usize, format: &str, bad_rate: &str) -> Result<Vec<u8>> {
    let out = Command::new(kvlake_bin())
        .args([
            "generate",
            "--records",
            &records.to_string(),
            "--seed",
            "5",
            "--format",
            format,
            "--bad-rate",
            bad_rate,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

#[test]
fn generate_is_deterministic_by_seed() -> Result<()> {
    assert_eq!(generate(500, "lines", "0")?, generate(500, "lines", "0")?);
    let lines = generate(500, "lines", "0")?;
    assert_eq!(
        lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        500
    );
    Ok(())
}

#[test]
fn convert_archives_then_read_back_by_independent_readers() -> Result<()> {
    let input = tempfile::tempdir()?;
    // PT1H.json (JSON lines), a gzip copy in a sub-folder, and envelopes with bad messages.
    let lines = generate(3000, "lines", "0")?;
    std::fs::write(input.path().join("PT1H.json"), &lines)?;
    std::fs::create_dir_all(input.path().join("h=01"))?;
    let mut gz = flate2_write(&lines)?;
    std::fs::write(
        input.path().join("h=01/PT1H.json.gz"),
        std::mem::take(&mut gz),
    )?;
    let envelopes = generate(2000, "envelope", "0.05")?;
    std::fs::write(input.path().join("envelopes.json"), &envelopes)?;
    let expected_lines = 3000 * 2;
    let envelope_msgs: Vec<&[u8]> = envelopes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();

    let lake = tempfile::tempdir()?;
    let lake_url = lake.path().to_str().context("path")?.to_string();
    let mut cmd = Command::new(kvlake_bin());
    cmd.args(["convert", "--lake", &lake_url, "--log-format", "json"])
        .arg(input.path());
    let (code, stdout, stderr) = run_to_end(cmd, Duration::from_secs(120))?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("converted 3 files"), "{stdout}");

    // Every line and every envelope record is accounted for, by coordinates.
    let found = lake_coordinates_by_source(lake.path())?;
    let total: usize = found.values().sum();
    assert!(found.values().all(|n| *n == 1), "no duplicates");
    let bad = envelope_msgs
        .iter()
        .filter(|m| serde_json::from_slice::<serde_json::Value>(m).is_err())
        .count();
    assert!(bad > 0, "bad messages present");
    assert!(total >= expected_lines + 2000 - bad, "rows {total}");

    // Converting again writes nothing.
    let mut again = Command::new(kvlake_bin());
    again
        .args(["convert", "--lake", &lake_url])
        .arg(input.path());
    let (code, stdout, _) = run_to_end(again, Duration::from_secs(60))?;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("converted 0 files (3 already in the lake)"),
        "{stdout}"
    );
    assert_eq!(
        lake_coordinates(lake.path())?.values().sum::<usize>(),
        total
    );

    // Outside readers: pyarrow (schema and types) and DuckDB (Hive partitions, counts).
    let script = format!(
        r#"
import pyarrow.dataset as ds, duckdb, sys
d = ds.dataset("{lake}/raw", format="parquet", partitioning="hive")
t = d.to_table()
assert str(t.schema.field("time").type) == "timestamp[us, tz=UTC]", t.schema.field("time").type
assert t.schema.field("duration_ms").type == "int64"
raw = t.num_rows
n = duckdb.sql("select count(*) from read_parquet('{lake}/raw/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
dl = duckdb.sql("select count(*) from read_parquet('{lake}/deadletter/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
bad_lines = duckdb.sql("select count(*) from read_parquet('{lake}/raw/**/*.parquet', hive_partitioning=true) where time is null or operation_name is null").fetchall()[0][0]
hours = duckdb.sql("select count(*) from read_parquet('{lake}/raw/**/*.parquet', hive_partitioning=true) where hour <> extract(hour from time at time zone 'UTC')").fetchall()[0][0]
print(raw, n, dl, bad_lines, hours)
"#,
        lake = lake_url
    );
    let out = Command::new("python3").arg("-c").arg(script).output()?;
    assert!(
        out.status.success(),
        "python readers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nums: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(usize::MAX))
        .collect();
    assert_eq!(nums.len(), 5);
    assert_eq!(nums[0], nums[1], "pyarrow and DuckDB agree");
    assert_eq!(
        nums[0] + nums[2],
        total,
        "raw + dead letters = every record"
    );
    assert_eq!(nums[3], 0, "required columns are never null");
    assert_eq!(nums[4], 0, "the hour partition matches the event time");
    Ok(())
}

fn flate2_write(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data)?;
    Ok(e.finish()?)
}

#[test]
fn convert_reads_only_lines_appended_since_and_pretty_printed_documents() -> Result<()> {
    let input = tempfile::tempdir()?;
    let file = input.path().join("PT1H.json");
    let lines = generate(400, "lines", "0")?;
    let split = lines
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(249)
        .map(|(i, _)| i + 1)
        .context("250 lines")?;
    std::fs::write(&file, &lines[..split])?;
    // A pretty-printed envelope document: not JSON lines.
    let envelope = generate(30, "envelope", "0")?;
    let first: serde_json::Value =
        serde_json::from_slice(envelope.split(|b| *b == b'\n').next().context("message")?)?;
    let records = first["records"].as_array().map_or(0, Vec::len);
    std::fs::write(
        input.path().join("document.json"),
        serde_json::to_string_pretty(&first)?,
    )?;
    let lake = tempfile::tempdir()?;
    let convert = || -> Result<String> {
        let mut cmd = Command::new(kvlake_bin());
        cmd.args([
            "convert",
            "--lake",
            lake.path().to_str().unwrap_or_default(),
        ])
        .arg(input.path());
        let (code, stdout, stderr) = run_to_end(cmd, Duration::from_secs(60))?;
        anyhow::ensure!(code == 0, "{stderr}");
        Ok(stdout)
    };
    convert()?;
    let rows = |src: &str| -> Result<usize> {
        Ok(lake_coordinates_by_source(lake.path())?
            .iter()
            .filter(|((s, ..), _)| s.ends_with(src))
            .map(|(_, n)| n)
            .sum())
    };
    assert_eq!(rows("PT1H.json")?, 250);
    assert_eq!(
        rows("document.json")?,
        records,
        "the whole document is one message"
    );
    // The archive grows by 150 lines: the second run reads only those.
    std::fs::write(&file, &lines)?;
    let out = convert()?;
    assert!(
        out.contains("converted 1 files (1 already in the lake)"),
        "{out}"
    );
    assert_eq!(rows("PT1H.json")?, 400);
    assert!(
        lake_coordinates_by_source(lake.path())?
            .values()
            .all(|n| *n == 1),
        "no line twice"
    );
    Ok(())
}

/// Every shape the same events take (the diagnostic-settings record, a Log Analytics
/// `AzureDiagnostics` row, an `AZKVAuditLogs` row, a Managed HSM record), one file each,
/// one of them saved with a byte-order mark: `kvlake convert` with no flag decodes all of
/// them into the same raw rows, read back through the Delta log by delta-rs.
#[test]
fn convert_takes_every_record_shape_without_a_flag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut inputs = Vec::new();
    for shape in [
        "diagnostic-settings",
        "azurediagnostics",
        "azkvauditlogs",
        "managedhsm",
    ] {
        let out = Command::new(kvlake_bin())
            .args([
                "generate",
                "--records",
                "300",
                "--seed",
                "9",
                "--format",
                "lines",
            ])
            .args(["--shape", shape])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join(format!("{shape}.json"));
        let mut bytes = Vec::new();
        if shape == "azkvauditlogs" {
            bytes.extend_from_slice(b"\xEF\xBB\xBF");
        }
        bytes.extend_from_slice(&out.stdout);
        std::fs::write(&path, bytes)?;
        inputs.push(path);
    }
    let lake = dir.path().join("lake");
    let out = Command::new(kvlake_bin())
        .arg("convert")
        .args(&inputs)
        .args(["--lake", lake.to_str().context("path")?])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = r#"
import json, os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/raw").to_pyarrow_table(
    columns=["_source", "_offset", "identity_object_id", "vault_name", "http_status_code", "result_class", "object_name"])
rows = {}
for r in t.to_pylist():
    shape = os.path.basename(r.pop("_source")).removesuffix(".json")
    rows.setdefault(shape, {})[r.pop("_offset")] = r
print(json.dumps({"rows": rows, "dead": os.path.isdir(sys.argv[1] + "/deadletter/_delta_log")}))
sys.stdout.flush()
os._exit(0)
"#;
    let out = Command::new("python3")
        .args(["-c", script, lake.to_str().context("path")?])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["dead"], false, "nothing was dead-lettered");
    let reference = &v["rows"]["diagnostic-settings"];
    assert_eq!(reference.as_object().map(|o| o.len()), Some(300));
    assert!(
        reference
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, r)| !r["identity_object_id"].is_null())
            .count()
            > 250,
        "the caller's object id is filled"
    );
    for shape in ["azurediagnostics", "azkvauditlogs", "managedhsm"] {
        assert_eq!(
            &v["rows"][shape], reference,
            "{shape} decodes to the same columns"
        );
    }
    Ok(())
}
