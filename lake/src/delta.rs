//! Delta tables in the lake: replaying a table's `_delta_log` (from its last checkpoint),
//! committing versions create-if-absent, checkpoints, log cleanup, VACUUM and retention.
//!
//! The format is `kvlake_schemas::delta`; this module is its I/O, over the same [`Lake`]
//! (object store, retries, create-if-absent) as the checkpoint log. `publish` turns the
//! checkpoint log's commits into Delta commits; `maintain` keeps tables small for years.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kvlake_schemas::delta::actions::{Format, decode_commit, encode_commit};
use kvlake_schemas::delta::checkpoint::{
    decode_checkpoint, decode_checkpoint_without_files, encode_checkpoint,
};
use kvlake_schemas::delta::schema::schema_string;
use kvlake_schemas::delta::{
    Action, CommitInfo, LAST_CHECKPOINT, LOG_DIR, LastCheckpoint, LogFile, Metadata, Protocol,
    Snapshot, checkpoint_path, commit_path, parse_log_file,
};

use crate::LakeError;
use crate::store::{Created, Lake};

/// A checkpoint every this many versions (`delta.checkpointInterval`).
pub const CHECKPOINT_INTERVAL: i64 = 20;
/// How long removed files stay for readers of older versions before VACUUM may delete them.
pub const DELETED_FILE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long commits stay in the log (time travel) before cleanup may delete them.
pub const LOG_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// What a table holds: its files' schema and its partition columns.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Path of the table under the lake root (`raw`, `agg/vault_daily`, ...).
    pub path: String,
    /// Columns stored in the files.
    pub file_schema: SchemaRef,
    /// Partition columns (in the path), in order.
    pub partitions: Vec<(&'static str, DataType)>,
    /// A sentence for `metaData.description`.
    pub description: String,
}

/// Outcome of one commit attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The version was written.
    Committed(i64),
    /// Another writer took that version first; the snapshot has been brought up to date.
    Conflict,
}

/// One Delta table in the lake.
#[derive(Debug, Clone)]
pub struct DeltaTable {
    lake: Lake,
    def: TableDef,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl DeltaTable {
    /// The table at `def.path` in `lake`.
    pub fn new(lake: &Lake, def: TableDef) -> DeltaTable {
        DeltaTable {
            lake: lake.child(&def.path),
            def,
        }
    }

    /// The table's definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The lake rooted at the table (paths of `add` actions are relative to it).
    pub fn root(&self) -> &Lake {
        &self.lake
    }

    fn error(&self, detail: impl std::fmt::Display) -> LakeError {
        LakeError::Delta {
            table: self.def.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Whether the table has a log at all (without replaying it).
    pub async fn exists(&self) -> Result<bool, LakeError> {
        Ok(self.lake.get(&commit_path(0)).await?.is_some()
            || self.lake.get(LAST_CHECKPOINT).await?.is_some())
    }

    /// The newest state: the checkpoint `_last_checkpoint` names, then the commits after it.
    pub async fn load(&self) -> Result<Snapshot, LakeError> {
        self.load_from_checkpoint(true).await
    }

    /// The newest version, protocol, metadata and txn versions without the live files
    /// of the checkpoint ([`Snapshot::without_files`]): what a writer needs on restart,
    /// at a cost that does not grow with the table. Such a snapshot can be committed to;
    /// when a commit is due for a checkpoint, [`DeltaTable::commit`] replays the files.
    pub async fn load_without_files(&self) -> Result<Snapshot, LakeError> {
        self.load_from_checkpoint(false).await
    }

    async fn load_from_checkpoint(&self, files: bool) -> Result<Snapshot, LakeError> {
        let hint = match self.lake.get(LAST_CHECKPOINT).await? {
            Some(b) => serde_json::from_slice::<LastCheckpoint>(&b).ok(),
            None => None,
        };
        let mut snap = match hint.map(|cp| cp.version) {
            Some(v) => match self.lake.get(&checkpoint_path(v)).await? {
                Some(bytes) => self.replay_checkpoint(v, bytes, files).await?,
                // A stale pointer: fall back to the newest checkpoint the listing shows.
                None => return self.load_by_listing(files).await,
            },
            None => empty_snapshot(files),
        };
        self.update(&mut snap).await?;
        Ok(snap)
    }

    async fn load_by_listing(&self, files: bool) -> Result<Snapshot, LakeError> {
        let listed = self.lake.list(LOG_DIR).await?;
        let newest = listed
            .iter()
            .filter_map(|(p, _)| match parse_log_file(p.rsplit('/').next()?) {
                Some(LogFile::Checkpoint(v)) => Some(v),
                _ => None,
            })
            .max();
        let mut snap = empty_snapshot(files);
        if let Some(v) = newest
            && let Some(bytes) = self.lake.get(&checkpoint_path(v)).await?
        {
            snap = self.replay_checkpoint(v, bytes, files).await?;
        }
        self.update(&mut snap).await?;
        Ok(snap)
    }

    /// Decodes a checkpoint on a blocking thread (a year of files is megabytes of JSON).
    async fn replay_checkpoint(
        &self,
        version: i64,
        bytes: Bytes,
        files: bool,
    ) -> Result<Snapshot, LakeError> {
        let actions = tokio::task::spawn_blocking(move || {
            if files {
                decode_checkpoint(version, bytes)
            } else {
                decode_checkpoint_without_files(version, bytes)
            }
        })
        .await
        .map_err(|e| LakeError::Task(e.to_string()))?
        .map_err(|e| self.error(e))?;
        let mut snap = empty_snapshot(files);
        snap.apply(version, actions);
        Ok(snap)
    }

    /// The live files of a table partitioned by `date`, read whole, with their day (days
    /// since the epoch); nothing when the table does not exist. A live file that is
    /// missing is an error: the log names it, so the table is damaged.
    pub async fn live_files_by_day(&self) -> Result<Vec<(i32, Bytes)>, LakeError> {
        if !self.exists().await? {
            return Ok(Vec::new());
        }
        let snap = self.load().await?;
        let mut out = Vec::with_capacity(snap.files.len());
        for add in snap.files.values() {
            let Some(day) = add
                .partition_values
                .get("date")
                .and_then(|d| d.as_deref())
                .and_then(kvlake_schemas::time::parse_date)
                .and_then(|d| i32::try_from(d).ok())
            else {
                continue;
            };
            let bytes = self
                .lake
                .get(&add.path)
                .await?
                .ok_or_else(|| self.error(format!("live file {} is missing", add.path)))?;
            out.push((day, bytes));
        }
        Ok(out)
    }

    /// Applies the commits after `snap.version`; returns how many.
    pub async fn update(&self, snap: &mut Snapshot) -> Result<usize, LakeError> {
        let listed = if snap.version >= 0 {
            self.lake
                .list_after(LOG_DIR, &format!("{LOG_DIR}/{:020}", snap.version))
                .await?
        } else {
            self.lake.list(LOG_DIR).await?
        };
        let mut versions: Vec<i64> = listed
            .iter()
            .filter_map(|(p, _)| match parse_log_file(p.rsplit('/').next()?) {
                Some(LogFile::Commit(v)) if v > snap.version => Some(v),
                _ => None,
            })
            .collect();
        versions.sort_unstable();
        if let Some(&first) = versions.first()
            && first != snap.version + 1
        {
            return Err(self.error(format!(
                "the log jumps from version {} to {first}: commits were deleted without a checkpoint",
                snap.version
            )));
        }
        let commits: Vec<(i64, Option<Bytes>)> = futures::stream::iter(versions)
            .map(|v| async move { Ok::<_, LakeError>((v, self.lake.get(&commit_path(v)).await?)) })
            .buffered(16)
            .try_collect()
            .await?;
        let mut applied = 0;
        for (v, bytes) in commits {
            if v != snap.version + 1 {
                break; // a gap inside the listing: stop at the last contiguous version
            }
            let Some(bytes) = bytes else { break };
            snap.apply(v, decode_commit(v, &bytes).map_err(|e| self.error(e))?);
            applied += 1;
        }
        Ok(applied)
    }

    /// The actions of each version in `(after, upto]`, or `None` when one of them is no
    /// longer in the log (cleaned up after its retention): the caller must then treat
    /// the whole table as changed.
    pub async fn commits_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Option<Vec<(i64, Vec<Action>)>>, LakeError> {
        let fetched: Vec<(i64, Option<Bytes>)> = futures::stream::iter(after + 1..=upto)
            .map(|v| async move { Ok::<_, LakeError>((v, self.lake.get(&commit_path(v)).await?)) })
            .buffered(16)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(fetched.len());
        for (v, bytes) in fetched {
            let Some(bytes) = bytes else { return Ok(None) };
            out.push((v, decode_commit(v, &bytes).map_err(|e| self.error(e))?));
        }
        Ok(Some(out))
    }

    /// Writes `actions` as version `snap.version + 1` if no one else has; on success the
    /// snapshot includes them, on a conflict it is brought up to date for a retry.
    pub async fn commit(
        &self,
        snap: &mut Snapshot,
        actions: Vec<Action>,
    ) -> Result<CommitOutcome, LakeError> {
        if let Some(p) = snap.protocol
            && !p.writable()
        {
            return Err(self.error(format!(
                "the table needs reader {} / writer {}; kvlake writes reader 1 / writer 2 tables",
                p.min_reader_version, p.min_writer_version
            )));
        }
        let version = snap.version + 1;
        let bytes = Bytes::from(encode_commit(&actions));
        let created = self
            .lake
            .put_if_absent(&commit_path(version), bytes.clone())
            .await?;
        // Our own earlier attempt (a retried put that had reached storage) is ours.
        if created == Created::AlreadyExists
            && self.lake.get(&commit_path(version)).await?.as_ref() != Some(&bytes)
        {
            self.update(snap).await?;
            return Ok(CommitOutcome::Conflict);
        }
        snap.apply(version, actions);
        if version > 0 && version % CHECKPOINT_INTERVAL == 0 {
            if snap.without_files {
                // A writer's light snapshot: the checkpoint needs every live file.
                self.checkpoint(&self.load().await?).await?;
            } else {
                self.checkpoint(snap).await?;
            }
        }
        Ok(CommitOutcome::Committed(version))
    }

    /// Creates version 0 (protocol and metadata) unless the table exists.
    pub async fn create_if_missing(&self, snap: &mut Snapshot) -> Result<(), LakeError> {
        while !snap.exists() {
            let schema = schema_string(&self.def.file_schema, &self.def.partitions)
                .map_err(|e| self.error(e))?;
            let now = now_ms();
            let metadata = Metadata {
                id: table_id(&self.def.path, now),
                name: Some(self.def.path.replace('/', "_")),
                description: Some(self.def.description.clone()),
                format: Format::default(),
                schema_string: schema,
                partition_columns: self
                    .def
                    .partitions
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect(),
                configuration: BTreeMap::from([
                    (
                        "delta.checkpointInterval".into(),
                        CHECKPOINT_INTERVAL.to_string(),
                    ),
                    (
                        "delta.logRetentionDuration".into(),
                        "interval 30 days".into(),
                    ),
                    (
                        "delta.deletedFileRetentionDuration".into(),
                        "interval 7 days".into(),
                    ),
                ]),
                created_time: Some(now),
            };
            let info = CommitInfo {
                timestamp: now,
                operation: "CREATE TABLE",
                parameters: BTreeMap::from([("mode".into(), "ErrorIfExists".into())]),
                blind_append: false,
            };
            let actions = vec![
                info.action(),
                Action::Protocol(Protocol::KVLAKE),
                Action::Metadata(metadata),
            ];
            self.commit(snap, actions).await?;
        }
        Ok(())
    }

    /// Writes a checkpoint of `snap` and points `_last_checkpoint` at it.
    pub async fn checkpoint(&self, snap: &Snapshot) -> Result<(), LakeError> {
        if snap.without_files {
            return Err(self.error("a snapshot replayed without its files cannot be checkpointed"));
        }
        let actions = snap.checkpoint_actions(now_ms() - DELETED_FILE_RETENTION_MS);
        let size = actions.len() as i64;
        let bytes = tokio::task::spawn_blocking(move || encode_checkpoint(&actions))
            .await
            .map_err(|e| LakeError::Task(e.to_string()))?
            .map_err(|e| self.error(e))?;
        self.lake.put(&checkpoint_path(snap.version), bytes).await?;
        let pointer = LastCheckpoint {
            version: snap.version,
            size,
        };
        let json = serde_json::to_vec(&pointer).map_err(|e| self.error(e))?;
        self.lake.put(LAST_CHECKPOINT, Bytes::from(json)).await
    }
}

/// The state before version 0, tracking files or not.
fn empty_snapshot(files: bool) -> Snapshot {
    Snapshot {
        without_files: !files,
        ..Snapshot::empty()
    }
}

/// A UUID-shaped table id, unique per table and creation time.
fn table_id(path: &str, now_ms: i64) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (path, now_ms, std::process::id()).hash(&mut h);
    let a = h.finish();
    now_ms.hash(&mut h);
    let b = h.finish();
    let x = (u128::from(a) << 64) | u128::from(b);
    let s = format!("{x:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &s[..8],
        &s[8..12],
        &s[13..16],
        &s[17..20],
        &s[20..32]
    )
}
