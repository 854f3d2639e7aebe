//! A committed batch's rows between the checkpoint-log commit and the Delta commit that
//! merges them: Arrow IPC files under `_kvlake/staging/`, one per batch and table.
//!
//! Staging is what lets a batch commit per partition while the tables get one Parquet
//! file per hour across partitions: the log's commit names the staged file (so a crash
//! after it loses nothing), and the table's publisher encodes every waiting batch's rows
//! of an hour into one file. The publisher hands rows over in memory; the staged file
//! is read only when a start publishes what a crash left between the two commits.
//! Once a batch's txn is in its table, its staged file is deleted ([`delete_published`]
//! after each commit, [`clean`] at the end of a run and in maintenance).

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use bytes::Bytes;
use kvlake_lake::tables::{dead_letter_table, raw_table};
use kvlake_lake::{DeltaTable, Lake};
use kvlake_schemas::layout::{META_PREFIX, parse_staging_path};

use crate::error::HotError;

/// The rows as one Arrow IPC file (uncompressed: it lives minutes, and is written and
/// read at memory speed).
pub fn to_ipc(batches: &[RecordBatch]) -> Result<Bytes, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(Bytes::new());
    };
    // Room for every buffer up front (plus headers and padding): a growing buffer copies
    // the rows written so far each time it doubles.
    let size: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let mut w = FileWriter::try_new(Vec::with_capacity(size + (64 << 10)), first.schema_ref())?;
    for b in batches {
        w.write(b)?;
    }
    Ok(Bytes::from(w.into_inner()?))
}

/// The rows of a staged file.
pub fn from_ipc(bytes: Bytes) -> Result<Vec<RecordBatch>, ArrowError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    FileReader::try_new(std::io::Cursor::new(bytes), None)?.collect()
}

/// Reads a staged file back (on a blocking thread).
pub async fn read(lake: &Lake, path: &str) -> Result<Vec<RecordBatch>, HotError> {
    let Some(bytes) = lake.get(path).await? else {
        return Err(HotError::Task(format!(
            "the staged rows {path} of a committed, unpublished batch are missing from the lake"
        )));
    };
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        from_ipc(bytes).map_err(|e| HotError::Task(format!("staged rows {path}: {e}")))
    })
    .await
    .map_err(|e| HotError::Task(e.to_string()))?
}

/// Deletes staged files whose batches are now in their table (best effort: [`clean`]
/// removes what a crash leaves behind).
pub fn delete_published(lake: &Lake, paths: Vec<String>) {
    if paths.is_empty() {
        return;
    }
    let lake = lake.clone();
    tokio::spawn(async move {
        for p in paths {
            if let Err(e) = lake.delete(&p).await {
                tracing::debug!(path = %p, error = %e, "staged file not deleted; maintenance will");
            }
        }
    });
}

/// Deletes every staged file of `table` whose batch the table already holds (its
/// log's txn version is at least the batch's seq). A staged file of a batch not yet
/// published is kept, however old: it is the only copy of those rows besides Kafka.
pub async fn clean(lake: &Lake, table: &DeltaTable) -> Result<u64, HotError> {
    let listed = lake.list(&format!("{META_PREFIX}/staging")).await?;
    if listed.is_empty() {
        return Ok(0);
    }
    let snap = table.load_without_files().await?;
    let name = table.def().path.clone();
    let mut deleted = 0;
    for (path, _) in listed {
        let Some((topic, partition, seq, t)) = parse_staging_path(&path) else {
            continue;
        };
        let app = crate::publish::app_id(topic, partition);
        let published = snap
            .txn_version(&app)
            .is_some_and(|v| u64::try_from(v).is_ok_and(|v| v >= seq));
        if t == name && published {
            lake.delete(&path).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// [`clean`] for the raw and dead-letter tables of `lake`.
pub async fn clean_all(lake: &Lake) -> Result<u64, HotError> {
    let mut deleted = 0;
    for table in [
        DeltaTable::new(lake, raw_table()),
        DeltaTable::new(lake, dead_letter_table()),
    ] {
        deleted += clean(lake, &table).await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn rows_survive_the_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batches: Vec<RecordBatch> = (0..3)
            .map(|i| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(vec![i, i + 1]))],
                )
                .unwrap()
            })
            .collect();
        let back = from_ipc(to_ipc(&batches).unwrap()).unwrap();
        assert_eq!(back, batches);
        assert!(from_ipc(to_ipc(&[]).unwrap()).unwrap().is_empty());
    }
}
