//! Keeping a table fast and its cost flat for years: compaction of closed partitions,
//! data retention, VACUUM of files no live snapshot needs, and log cleanup.
//!
//! Every step is a Delta commit or a deletion that the log already allows, so each is
//! idempotent and can be killed at any moment: a rerun finds the same work (compaction
//! names its output after its inputs) or finds it done.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kvlake_schemas::delta::stats::stats_of_file;
use kvlake_schemas::delta::{
    Action, Add, CommitInfo, LOG_DIR, LogFile, Remove, Snapshot, parse_log_file,
};
use kvlake_schemas::time::parse_date;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

use crate::LakeError;
use crate::delta::{
    CommitOutcome, DELETED_FILE_RETENTION_MS, DeltaTable, LOG_RETENTION_MS, now_ms,
};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// How to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// A partition is compacted once its time range ended this long ago (late events
    /// still arriving go into a closed partition as new small files; the next run merges them).
    pub closed_for_ms: i64,
    /// Files are merged up to about this size.
    pub target_bytes: u64,
    /// Parquet settings of the merged files (the table's own).
    pub props: WriterProperties,
}

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Partitions rewritten.
    pub partitions: usize,
    /// Small files replaced.
    pub files_removed: usize,
    /// Merged files written.
    pub files_added: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Partitions left because another writer changed them first.
    pub skipped: usize,
}

/// When a partition's time range ends (ms), from its `date` and optional `hour` values.
fn partition_end_ms(values: &BTreeMap<String, Option<String>>) -> Option<i64> {
    let day = parse_date(values.get("date")?.as_deref()?)?;
    match values.get("hour").and_then(|h| h.as_deref()) {
        Some(h) => Some(day * DAY_MS + (h.parse::<i64>().ok()? + 1) * HOUR_MS),
        None => Some((day + 1) * DAY_MS),
    }
}

/// Groups of files to merge: per partition, files below three quarters of the target,
/// in path order (so rows keep their source order), packed up to the target.
fn plan_bins(snap: &Snapshot, opts: &CompactOptions, now: i64) -> Vec<Vec<Add>> {
    let mut by_partition: BTreeMap<Vec<(String, Option<String>)>, Vec<&Add>> = BTreeMap::new();
    for add in snap.files.values() {
        let closed = partition_end_ms(&add.partition_values)
            .is_some_and(|end| end + opts.closed_for_ms <= now);
        if closed && (add.size as u64) < opts.target_bytes / 4 * 3 {
            let key = add.partition_values.clone().into_iter().collect();
            by_partition.entry(key).or_default().push(add);
        }
    }
    let mut bins = Vec::new();
    for (_, mut files) in by_partition {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut bin: Vec<Add> = Vec::new();
        let mut size = 0u64;
        for f in files {
            if !bin.is_empty() && size + f.size as u64 > opts.target_bytes {
                bins.push(std::mem::take(&mut bin));
                size = 0;
            }
            size += f.size as u64;
            bin.push(f.clone());
        }
        bins.push(bin);
    }
    bins.retain(|b| b.len() >= 2);
    bins
}

/// Merges the small files of closed partitions, one commit per group of files:
/// `remove` of the inputs and `add` of the merged file, all with `dataChange=false`, so
/// streaming readers of the table skip the commit and batch readers see the same rows.
pub async fn compact(
    table: &DeltaTable,
    opts: &CompactOptions,
) -> Result<CompactReport, LakeError> {
    let mut snap = table.load().await?;
    let mut report = CompactReport::default();
    if !snap.exists() {
        return Ok(report);
    }
    let now = now_ms();
    let mut partitions = BTreeSet::new();
    for bin in plan_bins(&snap, opts, now) {
        let paths: Vec<&str> = bin.iter().map(|a| a.path.as_str()).collect();
        let dir = bin[0].path.rsplit_once('/').map_or("", |(d, _)| d);
        let name = format!(
            "part-c{:016x}.parquet",
            kvlake_schemas::layout::stable_hash(&paths)
        );
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let mut inputs = Vec::with_capacity(bin.len());
        for a in &bin {
            let bytes = table
                .root()
                .get(&a.path)
                .await?
                .ok_or_else(|| LakeError::Delta {
                    table: table.def().path.clone(),
                    detail: format!("live file {} is missing from storage", a.path),
                })?;
            inputs.push(bytes);
        }
        let props = opts.props.clone();
        let schema = table.def().file_schema.clone();
        let (bytes, rows, stats) =
            tokio::task::spawn_blocking(move || merge(inputs, props, &schema))
                .await
                .map_err(|e| LakeError::Task(e.to_string()))??;
        let written = bytes.len() as u64;
        // Same inputs, same name: a rerun after a crash overwrites its own attempt.
        table.root().put(&path, bytes).await?;
        let add = Add {
            path: path.clone(),
            partition_values: bin[0].partition_values.clone(),
            size: written as i64,
            modification_time: now_ms(),
            data_change: false,
            stats: Some(stats),
        };
        let mut actions = vec![
            CommitInfo {
                timestamp: now_ms(),
                operation: "OPTIMIZE",
                parameters: BTreeMap::from([
                    ("predicate".into(), "[]".into()),
                    ("targetSize".into(), opts.target_bytes.to_string()),
                ]),
                blind_append: false,
            }
            .action(),
        ];
        actions.extend(
            bin.iter()
                .map(|a| Action::Remove(Remove::of(a, now_ms(), false))),
        );
        actions.push(Action::Add(add));
        loop {
            // Another writer may have removed an input (a second compaction, retention).
            if !bin.iter().all(|a| snap.files.contains_key(&a.path)) {
                report.skipped += 1;
                break;
            }
            match table.commit(&mut snap, actions.clone()).await? {
                CommitOutcome::Committed(_) => {
                    partitions.insert(dir.to_string());
                    report.files_removed += bin.len();
                    report.files_added += 1;
                    report.rows += rows;
                    report.bytes_written += written;
                    break;
                }
                CommitOutcome::Conflict => continue,
            }
        }
    }
    report.partitions = partitions.len();
    Ok(report)
}

fn merge(
    inputs: Vec<Bytes>,
    props: WriterProperties,
    table_schema: &arrow::datatypes::Schema,
) -> Result<(Bytes, u64, String), LakeError> {
    let err = |e: &dyn std::fmt::Display| LakeError::Task(format!("compaction: {e}"));
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut rows = 0u64;
    for bytes in inputs {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
        if writer.is_none() {
            let w = ArrowWriter::try_new(Vec::new(), builder.schema().clone(), Some(props.clone()))
                .map_err(|e| err(&e))?;
            writer = Some(w);
        }
        let w = writer.as_mut().ok_or_else(|| err(&"no writer"))?;
        for batch in builder.build().map_err(|e| err(&e))? {
            let batch = batch.map_err(|e| err(&e))?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| err(&e))?;
        }
    }
    let w = writer.ok_or_else(|| err(&"nothing to merge"))?;
    let bytes = Bytes::from(w.into_inner().map_err(|e| err(&e))?);
    let stats = stats_of_file(&bytes, table_schema).map_err(|e| err(&e))?;
    Ok((bytes, rows, stats))
}

/// Removes (`dataChange=true`) every file of a partition whose time range ended more
/// than `keep_ms` ago: data retention through the table, in one commit. The files stay
/// on storage until VACUUM, so readers of older versions keep working meanwhile.
pub async fn expire(table: &DeltaTable, keep_ms: i64) -> Result<usize, LakeError> {
    let mut snap = table.load().await?;
    let cutoff = now_ms() - keep_ms;
    loop {
        let old: Vec<Add> = snap
            .files
            .values()
            .filter(|a| partition_end_ms(&a.partition_values).is_some_and(|end| end <= cutoff))
            .cloned()
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut actions = vec![
            CommitInfo {
                timestamp: now,
                operation: "DELETE",
                parameters: BTreeMap::from([(
                    "predicate".into(),
                    format!("partition ended before {cutoff} ms (retention)"),
                )]),
                blind_append: false,
            }
            .action(),
        ];
        actions.extend(old.iter().map(|a| Action::Remove(Remove::of(a, now, true))));
        if let CommitOutcome::Committed(_) = table.commit(&mut snap, actions).await? {
            return Ok(old.len());
        }
    }
}

/// What VACUUM found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VacuumReport {
    /// Files deleted (or that would be, in a dry run).
    pub deleted: Vec<String>,
    /// Files kept because they are live, recently removed, or recently written.
    pub kept: usize,
}

/// Deletes data files that no snapshot within `retention_ms` can reference: not live,
/// not removed within the retention (a reader of an older version may still read it),
/// and not written within it (a batch that has written its files and not yet
/// committed them). Delta's own metadata (`_delta_log`, names starting `_` or `.`) is
/// never touched.
pub async fn vacuum(
    table: &DeltaTable,
    retention_ms: i64,
    dry_run: bool,
) -> Result<VacuumReport, LakeError> {
    let snap = table.load().await?;
    let mut report = VacuumReport::default();
    if !snap.exists() {
        return Ok(report);
    }
    let cutoff = now_ms() - retention_ms.max(0);
    for o in table.root().list_meta("").await? {
        let hidden = o
            .path
            .split('/')
            .any(|seg| seg.starts_with('_') || seg.starts_with('.'));
        if hidden || !o.path.ends_with(".parquet") {
            continue;
        }
        let live = snap.files.contains_key(&o.path);
        let removed_recently = snap
            .tombstones
            .get(&o.path)
            .is_some_and(|r| r.deletion_timestamp.unwrap_or(i64::MAX) > cutoff);
        if live || removed_recently || o.modified_ms > cutoff {
            report.kept += 1;
            continue;
        }
        if !dry_run {
            table.root().delete(&o.path).await?;
        }
        report.deleted.push(o.path);
    }
    Ok(report)
}

/// Deletes commits and checkpoints older than the newest checkpoint and than the log
/// retention: the newest checkpoint holds everything they said. Returns how many.
pub async fn cleanup_log(table: &DeltaTable, retention_ms: i64) -> Result<usize, LakeError> {
    let listed = table.root().list_meta(LOG_DIR).await?;
    let newest_checkpoint = listed
        .iter()
        .filter_map(|o| match parse_log_file(o.path.rsplit('/').next()?) {
            Some(LogFile::Checkpoint(v)) => Some(v),
            _ => None,
        })
        .max();
    let Some(keep_from) = newest_checkpoint else {
        return Ok(0);
    };
    let cutoff = now_ms() - retention_ms.max(0);
    let mut deleted = 0;
    for o in listed {
        let version = match parse_log_file(o.path.rsplit('/').next().unwrap_or_default()) {
            Some(LogFile::Commit(v) | LogFile::Checkpoint(v)) => v,
            None => continue,
        };
        if version < keep_from && o.modified_ms < cutoff {
            table.root().delete(&o.path).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Settings of a maintenance pass.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Compaction settings.
    pub compact: CompactOptions,
    /// Partitions older than this are removed (`None`: keep everything).
    pub retention_ms: Option<i64>,
    /// Removed files are deleted this long after their removal.
    pub vacuum_retention_ms: i64,
    /// Commits are deleted this long after they were written (once a checkpoint holds them).
    pub log_retention_ms: i64,
}

impl MaintainOptions {
    /// Delta's defaults: 7 days for removed files, 30 days of log.
    pub fn new(compact: CompactOptions) -> MaintainOptions {
        MaintainOptions {
            compact,
            retention_ms: None,
            vacuum_retention_ms: DELETED_FILE_RETENTION_MS,
            log_retention_ms: LOG_RETENTION_MS,
        }
    }
}

/// What a maintenance pass did to one table.
#[derive(Debug, Default, Clone)]
pub struct MaintainReport {
    /// Compaction.
    pub compact: CompactReport,
    /// Files removed by retention.
    pub expired: usize,
    /// Files deleted by VACUUM.
    pub vacuumed: usize,
    /// Log entries deleted.
    pub log_entries_deleted: usize,
    /// The table's version afterwards.
    pub version: i64,
}

/// Compaction, retention, a checkpoint, log cleanup and VACUUM, in that order.
pub async fn maintain(
    table: &DeltaTable,
    opts: &MaintainOptions,
) -> Result<MaintainReport, LakeError> {
    let mut report = MaintainReport {
        compact: compact(table, &opts.compact).await?,
        ..MaintainReport::default()
    };
    if let Some(keep) = opts.retention_ms {
        report.expired = expire(table, keep).await?;
    }
    let snap = table.load().await?;
    report.version = snap.version;
    if snap.exists() {
        // Log cleanup needs a checkpoint at or after what it deletes.
        table.checkpoint(&snap).await?;
        report.log_entries_deleted = cleanup_log(table, opts.log_retention_ms).await?;
    }
    report.vacuumed = vacuum(table, opts.vacuum_retention_ms, false)
        .await?
        .deleted
        .len();
    Ok(report)
}

/// Turns a folder of Hive-partitioned Parquet files (a table written before Delta) into
/// a Delta table in place: one `add` per file, partition values from its `k=v` folders,
/// statistics from its footer. Nothing is rewritten; a table that exists is left alone.
/// Returns the files added.
pub async fn convert_folder(table: &DeltaTable) -> Result<usize, LakeError> {
    if table.exists().await? {
        return Ok(0);
    }
    let files: Vec<_> = table
        .root()
        .list_meta("")
        .await?
        .into_iter()
        .filter(|o| {
            o.path.ends_with(".parquet")
                && !o
                    .path
                    .split('/')
                    .any(|s| s.starts_with('_') || s.starts_with('.'))
        })
        .collect();
    if files.is_empty() {
        return Ok(0);
    }
    let columns: Vec<&str> = table.def().partitions.iter().map(|(n, _)| *n).collect();
    let mut adds = Vec::with_capacity(files.len());
    for o in files {
        let mut values = BTreeMap::new();
        for seg in o.path.split('/') {
            if let Some((k, v)) = seg.split_once('=')
                && columns.contains(&k)
            {
                let v = v
                    .parse::<i64>()
                    .map_or_else(|_| v.to_string(), |n| n.to_string());
                values.insert(k.to_string(), Some(v));
            }
        }
        let bytes = table.root().get(&o.path).await?.unwrap_or_default();
        let schema = table.def().file_schema.clone();
        let stats = tokio::task::spawn_blocking(move || stats_of_file(&bytes, &schema).ok())
            .await
            .map_err(|e| LakeError::Task(e.to_string()))?;
        adds.push(Add {
            path: o.path,
            partition_values: values,
            size: o.size as i64,
            modification_time: o.modified_ms,
            data_change: true,
            stats,
        });
    }
    let n = adds.len();
    let mut snap = table.load().await?;
    table.create_if_missing(&mut snap).await?;
    let mut actions = vec![
        CommitInfo {
            timestamp: now_ms(),
            operation: "CONVERT",
            parameters: BTreeMap::from([("source".into(), "parquet folder".into())]),
            blind_append: true,
        }
        .action(),
    ];
    actions.extend(adds.into_iter().map(Action::Add));
    while let CommitOutcome::Conflict = table.commit(&mut snap, actions.clone()).await? {}
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ends_are_hour_and_day_ends() {
        let v = BTreeMap::from([
            ("date".to_string(), Some("1970-01-02".to_string())),
            ("hour".to_string(), Some("3".to_string())),
        ]);
        assert_eq!(partition_end_ms(&v), Some(DAY_MS + 4 * HOUR_MS));
        let d = BTreeMap::from([("date".to_string(), Some("1970-01-02".to_string()))]);
        assert_eq!(partition_end_ms(&d), Some(2 * DAY_MS));
    }
}
