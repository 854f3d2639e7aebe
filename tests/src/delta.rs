//! An independent reader of Delta tables for the tests: replays `_delta_log` (the
//! checkpoint `_last_checkpoint` names, then the JSON commits after it) into the set of
//! live files, with none of kvlake's own Delta code, so a bug there cannot hide here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, AsArray, StructArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// A table's state as the log says: live files (path → stats JSON) and txn versions.
#[derive(Debug, Default, Clone)]
pub struct TableState {
    /// Version replayed to.
    pub version: i64,
    /// Live data files, relative to the table root, with their stats JSON (if any).
    pub files: BTreeMap<String, Option<String>>,
    /// Application transaction versions.
    pub txns: BTreeMap<String, i64>,
    /// Partition columns from the metadata.
    pub partition_columns: Vec<String>,
    /// Protocol (reader, writer).
    pub protocol: (i64, i64),
    /// Whether a checkpoint was read.
    pub from_checkpoint: Option<i64>,
}

fn apply(state: &mut TableState, action: &Value) {
    if let Some(a) = action.get("add") {
        if let Some(p) = a["path"].as_str() {
            state
                .files
                .insert(p.to_string(), a["stats"].as_str().map(str::to_string));
        }
    } else if let Some(r) = action.get("remove") {
        if let Some(p) = r["path"].as_str() {
            state.files.remove(p);
        }
    } else if let Some(t) = action.get("txn") {
        if let (Some(app), Some(v)) = (t["appId"].as_str(), t["version"].as_i64()) {
            state.txns.insert(app.to_string(), v);
        }
    } else if let Some(m) = action.get("metaData") {
        state.partition_columns = m["partitionColumns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
    } else if let Some(p) = action.get("protocol") {
        state.protocol = (
            p["minReaderVersion"].as_i64().unwrap_or(0),
            p["minWriterVersion"].as_i64().unwrap_or(0),
        );
    }
}

fn struct_column_json(col: &StructArray, i: usize) -> Value {
    let mut obj = serde_json::Map::new();
    for (f, c) in col.fields().iter().zip(col.columns()) {
        if c.is_null(i) {
            continue;
        }
        let v = match c.data_type() {
            arrow::datatypes::DataType::Utf8 => Value::from(c.as_string::<i32>().value(i)),
            arrow::datatypes::DataType::Int64 => {
                Value::from(c.as_primitive::<arrow::datatypes::Int64Type>().value(i))
            }
            arrow::datatypes::DataType::Int32 => {
                Value::from(c.as_primitive::<arrow::datatypes::Int32Type>().value(i))
            }
            arrow::datatypes::DataType::List(_) => {
                let l = c.as_list::<i32>().value(i);
                let s = l.as_string::<i32>();
                Value::from(
                    (0..s.len())
                        .map(|j| s.value(j).to_string())
                        .collect::<Vec<_>>(),
                )
            }
            _ => continue,
        };
        obj.insert(f.name().clone(), v);
    }
    Value::Object(obj)
}

/// Replays the log of the table at `root`.
pub fn replay(root: &Path) -> Result<TableState> {
    let log = root.join("_delta_log");
    ensure!(log.is_dir(), "{} has no _delta_log", root.display());
    let mut state = TableState {
        version: -1,
        ..TableState::default()
    };
    if let Ok(text) = std::fs::read_to_string(log.join("_last_checkpoint")) {
        let v: Value = serde_json::from_str(&text).context("_last_checkpoint")?;
        let version = v["version"].as_i64().context("_last_checkpoint.version")?;
        let file = std::fs::File::open(log.join(format!("{version:020}.checkpoint.parquet")))
            .context("the checkpoint _last_checkpoint names")?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let batch = batch?;
            for name in ["protocol", "metaData", "txn", "add", "remove"] {
                let Some(col) = batch.column_by_name(name) else {
                    continue;
                };
                let col = col.as_struct();
                for i in 0..batch.num_rows() {
                    if col.is_valid(i) {
                        apply(
                            &mut state,
                            &serde_json::json!({ name: struct_column_json(col, i) }),
                        );
                    }
                }
            }
        }
        state.version = version;
        state.from_checkpoint = Some(version);
    }
    let mut commits: Vec<(i64, PathBuf)> = std::fs::read_dir(&log)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let v = name.strip_suffix(".json")?.parse::<i64>().ok()?;
            Some((v, p))
        })
        .filter(|(v, _)| *v > state.version)
        .collect();
    commits.sort();
    for (v, path) in commits {
        if v != state.version + 1 {
            bail!("{}: version {v} follows {}", root.display(), state.version);
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if !line.trim().is_empty() {
                apply(&mut state, &serde_json::from_str(line)?);
            }
        }
        state.version = v;
    }
    Ok(state)
}

/// The live data files of a table, as paths on disk; each must exist.
pub fn live_files(root: &Path) -> Result<Vec<PathBuf>> {
    let state = replay(root)?;
    let mut out = Vec::with_capacity(state.files.len());
    for rel in state.files.keys() {
        let p = root.join(rel);
        ensure!(
            p.is_file(),
            "the log lists {} but it is not there",
            p.display()
        );
        out.push(p);
    }
    Ok(out)
}

/// Parquet files under a table folder that the log does not list (uncommitted attempts,
/// compacted or vacuumed-later files): what a glob reader would wrongly add.
pub fn unlisted_files(root: &Path) -> Result<BTreeSet<PathBuf>> {
    let live: BTreeSet<PathBuf> = live_files(root)?.into_iter().collect();
    Ok(crate::parquet_files(root)?
        .into_iter()
        .filter(|p| !live.contains(p))
        .collect())
}

/// Every (partition, offset, record index) of the raw and dead-letter tables as the
/// `deltalake` Python package (delta-rs) reads them, with multiplicity; also checks that
/// it sees protocol reader 1 / writer 2.
pub fn deltalake_python_coordinates(lake: &Path) -> Result<BTreeMap<(i32, i64, i32), usize>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/delta_coords.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(lake)
        .output()
        .context("python3")?;
    ensure!(
        out.status.success(),
        "deltalake (Python) could not read {}: {}",
        lake.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    for (table, proto) in v["protocol"].as_object().into_iter().flatten() {
        ensure!(
            proto == &serde_json::json!([1, 2]),
            "{table}: protocol {proto}, expected reader 1 / writer 2"
        );
    }
    let mut found = BTreeMap::new();
    for table in ["raw", "deadletter"] {
        for row in v[table].as_array().into_iter().flatten() {
            let c = (
                row[0].as_i64().context("partition")? as i32,
                row[1].as_i64().context("offset")?,
                row[2].as_i64().context("record index")? as i32,
            );
            *found.entry(c).or_insert(0) += 1;
        }
    }
    Ok(found)
}
