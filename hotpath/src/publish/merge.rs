//! The batches a table's commit task publishes together, merged: every batch's rows of
//! one hour go into one Parquet file, so a table gets one file per hour per commit
//! however many Kafka partitions the batches came from.
//!
//! A merged file is named by the batches in it (their txn app ids and versions) and its
//! rows are in that order, batch by batch, so the same set of batches always makes the
//! same bytes under the same name: a writer that finds the file already there (a
//! crashed attempt of the same group, or a second writer of the same batches) keeps it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use kvlake_lake::{DeltaTable, Lake};
use kvlake_schemas::checkpoint::CommittedFile;
use kvlake_schemas::delta::Add;
use kvlake_schemas::layout::{partition_dir, stable_hash};
use parquet::file::properties::WriterProperties;
use tokio::sync::Semaphore;

use super::add_of;
use crate::encode::{
    EncodedFile, encode_file, file_schema, hour_part, hours_of, writer_properties,
};
use crate::error::HotError;

/// Rows per row group of merged files (the hot path's default).
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// One batch waiting to be merged.
#[derive(Debug)]
pub struct Member<'a> {
    /// Its log's txn app id.
    pub app_id: &'a str,
    /// Its seq (the txn version).
    pub version: i64,
    /// Its staged file.
    pub path: &'a str,
    /// Its rows, if the writer still holds them.
    pub rows: Option<&'a Arc<Vec<RecordBatch>>>,
}

/// The files made of a set of batches.
#[derive(Debug)]
pub struct Merged {
    members: Vec<(String, i64)>,
    /// One `add` per hour the batches have rows in.
    pub adds: Vec<Add>,
}

impl Merged {
    /// Whether these files were made of exactly `members`.
    pub fn is_of(&self, members: &[Member<'_>]) -> bool {
        self.members.len() == members.len()
            && self
                .members
                .iter()
                .zip(members)
                .all(|((a, v), m)| a == m.app_id && *v == m.version)
    }
}

/// One member batch's rows of an hour: the member's batches, which one, and its rows of
/// that hour (`None`: all of them).
type HourRows = (Arc<Vec<RecordBatch>>, usize, Option<BooleanArray>);

/// Encodes merged files, at most one per core at a time, shared by a lake's tables.
#[derive(Debug, Clone)]
pub struct Merger {
    lake: Lake,
    props: WriterProperties,
    permits: Arc<Semaphore>,
}

impl Merger {
    /// A merger for the tables of `lake` (staged files are read from it).
    pub fn new(lake: &Lake) -> Merger {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Merger {
            lake: lake.clone(),
            props: writer_properties(ROW_GROUP_ROWS),
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    /// The lake whose staged files this merger reads.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Writes one file per hour of `members`' rows (sorted by app id and version) into
    /// `table`, and returns their `add`s.
    pub async fn merge(
        &self,
        table: &DeltaTable,
        members: &[Member<'_>],
    ) -> Result<Merged, HotError> {
        let name = table.def().path.clone();
        let (table_name, schema) = match name.as_str() {
            n if n == kvlake_schemas::layout::RAW_TABLE => {
                (kvlake_schemas::layout::RAW_TABLE, file_schema(n))
            }
            n => (kvlake_schemas::layout::DEAD_LETTER_TABLE, file_schema(n)),
        };
        let mut rows = Vec::with_capacity(members.len());
        for m in members {
            rows.push(match m.rows {
                Some(r) => Arc::clone(r),
                None => Arc::new(crate::stage::read(&self.lake, m.path).await?),
            });
        }
        // Each hour's rows are only selected here (a bit per row); they are copied out when
        // that hour is encoded, at most one hour per core at a time. Copied all at once,
        // every member's rows were held twice while the merge ran (a run reading in waves
        // then went past its memory budget).
        let by_hour = tokio::task::spawn_blocking(move || {
            let mut by_hour: BTreeMap<(i32, i32), Vec<HourRows>> = BTreeMap::new();
            for batches in &rows {
                for (i, b) in batches.iter().enumerate() {
                    for (key, selection) in hours_of(b) {
                        by_hour
                            .entry(key)
                            .or_default()
                            .push((Arc::clone(batches), i, selection));
                    }
                }
            }
            by_hour
        })
        .await
        .map_err(|e| HotError::Task(e.to_string()))?;
        let ids: Vec<String> = members
            .iter()
            .map(|m| format!("{}@{}", m.app_id, m.version))
            .collect();
        let mut key: Vec<&str> = vec!["merge", &name];
        key.extend(ids.iter().map(String::as_str));
        let file_name = format!("part-g{:016x}.parquet", stable_hash(&key));
        let encodes = by_hour.into_iter().map(|((day, hour), selections)| {
            let (permits, props, schema) =
                (self.permits.clone(), self.props.clone(), schema.clone());
            async move {
                let permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|e| HotError::Task(e.to_string()))?;
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let parts = selections
                        .iter()
                        .map(|(batches, i, selection)| {
                            hour_part(&batches[*i], &schema, selection.as_ref())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    drop(selections);
                    encode_file(table_name, &schema, &parts, &props).map(|(bytes, rows, stats)| {
                        EncodedFile {
                            table: table_name,
                            day,
                            hour,
                            bytes,
                            rows,
                            stats,
                        }
                    })
                })
                .await
                .map_err(|e| HotError::Task(e.to_string()))?
                .map_err(HotError::from)
            }
        });
        let files = futures::future::try_join_all(encodes).await?;
        let puts = files.into_iter().map(|f| {
            let dir = partition_dir(table_name, f.day, f.hour);
            let rel = dir
                .strip_prefix(&format!("{table_name}/"))
                .unwrap_or(&dir)
                .to_string();
            let committed = CommittedFile {
                path: format!("{dir}/{file_name}"),
                table: table_name.to_string(),
                rows: f.rows,
                bytes: f.bytes.len() as u64,
                stats: f.stats,
            };
            let root = table.root().clone();
            let path = format!("{rel}/{file_name}");
            async move {
                // Already there: the same batches made it, so it is these very bytes.
                root.put_if_absent(&path, f.bytes).await?;
                Ok::<_, HotError>(add_of(&committed, None))
            }
        });
        let adds = futures::future::try_join_all(puts).await?;
        Ok(Merged {
            members: members
                .iter()
                .map(|m| (m.app_id.to_string(), m.version))
                .collect(),
            adds,
        })
    }
}
