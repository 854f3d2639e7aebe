//! From the checkpoint log to the Delta tables: each committed batch becomes `add`
//! actions plus a `txn` (app id = the topic partition's log, version = the batch's
//! sequence number) in the raw and dead-letter tables.
//!
//! One task per table per process takes every request waiting when it is free and
//! commits them together (group commit), so many partitions committing at once cost one
//! Delta version, not a race of optimistic retries. A request whose txn version is
//! already in the table is done, which makes publishing idempotent: after a crash the
//! partition's last commit is published again on start, and only if it is missing.

use std::collections::BTreeMap;

use kvlake_schemas::checkpoint::{BatchCommit, CommittedFile};
use kvlake_schemas::deadletter::dead_letter_file_schema;
use kvlake_schemas::delta::stats::stats_of_file;
use kvlake_schemas::delta::{Action, Add, CommitInfo, Snapshot, Txn};
use kvlake_schemas::layout::{DEAD_LETTER_TABLE, META_PREFIX, RAW_TABLE, path_safe};
use kvlake_schemas::raw::raw_file_schema;
use tokio::sync::{mpsc, oneshot};

use kvlake_lake::delta::now_ms;
use kvlake_lake::tables::{dead_letter_table, raw_table};
use kvlake_lake::{CommitOutcome, DeltaTable, Lake, LakeError};

use crate::error::HotError;

/// Commit attempts before a publish fails (each conflict means another writer committed).
const MAX_ATTEMPTS: usize = 200;

/// Present in a lake whose raw and dead-letter tables are Delta tables.
pub const TABLES_MARKER: &str = "_kvlake/tables.json";

/// Records that the lake's tables are Delta tables (idempotent).
pub async fn mark_delta(lake: &Lake) -> Result<(), HotError> {
    let body =
        bytes::Bytes::from_static(b"{\"format\":\"delta\",\"tables\":[\"raw\",\"deadletter\"]}\n");
    lake.put_if_absent(TABLES_MARKER, body).await?;
    Ok(())
}

/// The `txn` app id of one checkpoint log (a topic partition, or a converted file).
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("kvlake:{}:{partition}", path_safe(topic))
}

/// The `add` of a committed file: path relative to the table, partition values from
/// its `date=`/`hour=` folders.
pub fn add_of(file: &CommittedFile, stats: Option<String>) -> Add {
    let rel = file
        .path
        .strip_prefix(&format!("{}/", file.table))
        .unwrap_or(&file.path)
        .to_string();
    let mut partition_values = BTreeMap::new();
    for seg in rel.split('/') {
        if let Some(d) = seg.strip_prefix("date=") {
            partition_values.insert("date".to_string(), Some(d.to_string()));
        } else if let Some(h) = seg.strip_prefix("hour=") {
            let h = h
                .parse::<i32>()
                .map_or_else(|_| h.to_string(), |h| h.to_string());
            partition_values.insert("hour".to_string(), Some(h));
        }
    }
    Add {
        path: rel,
        partition_values,
        size: i64::try_from(file.bytes).unwrap_or(i64::MAX),
        modification_time: now_ms(),
        data_change: true,
        stats: stats.or_else(|| file.stats.clone()),
    }
}

struct Request {
    app_id: String,
    version: i64,
    adds: Vec<Add>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Group-commits adds with their txn into one table.
#[derive(Debug, Clone)]
pub struct Publisher {
    table: String,
    tx: mpsc::Sender<Request>,
}

impl Publisher {
    /// Starts the table's commit task (it ends when the last `Publisher` clone is dropped).
    pub fn start(table: DeltaTable) -> Publisher {
        let (tx, rx) = mpsc::channel(1024);
        let name = table.def().path.clone();
        tokio::spawn(serve(table, rx));
        Publisher { table: name, tx }
    }

    /// Commits `adds` with `txn(app_id, version)` unless that version is already in.
    pub async fn publish(
        &self,
        app_id: String,
        version: i64,
        adds: Vec<Add>,
    ) -> Result<(), HotError> {
        let (done, rx) = oneshot::channel();
        let gone = || HotError::Task(format!("the {} table's commit task stopped", self.table));
        self.tx
            .send(Request {
                app_id,
                version,
                adds,
                done,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(|detail| {
            HotError::from(LakeError::Delta {
                table: self.table.clone(),
                detail,
            })
        })
    }
}

async fn serve(table: DeltaTable, mut rx: mpsc::Receiver<Request>) {
    let mut snap: Option<Snapshot> = None;
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(r) = rx.try_recv() {
            group.push(r);
        }
        let result = commit_group(&table, &mut snap, &group).await;
        if result.is_err() {
            snap = None; // reload from storage before the next attempt
        }
        let result = result.map_err(|e| e.to_string());
        for r in group {
            let _ = r.done.send(result.clone());
        }
    }
}

async fn commit_group(
    table: &DeltaTable,
    cached: &mut Option<Snapshot>,
    group: &[Request],
) -> Result<(), HotError> {
    let snap = match cached {
        Some(s) => s,
        None => {
            // Txn versions only: a restart after a year costs what it costs after a day.
            let mut s = table.load_without_files().await?;
            table.create_if_missing(&mut s).await?;
            cached.insert(s)
        }
    };
    for _ in 0..MAX_ATTEMPTS {
        let pending: Vec<&Request> = group
            .iter()
            .filter(|r| snap.txn_version(&r.app_id) < Some(r.version))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut txns: BTreeMap<&str, i64> = BTreeMap::new();
        for r in &pending {
            let v = txns.entry(&r.app_id).or_insert(r.version);
            *v = (*v).max(r.version);
        }
        let info = CommitInfo {
            timestamp: now,
            operation: "STREAMING UPDATE",
            parameters: BTreeMap::from([
                ("outputMode".into(), "Append".into()),
                ("queryId".into(), "kvlake".into()),
                ("epochId".into(), now.to_string()),
            ]),
            blind_append: true,
        };
        let mut actions = vec![info.action()];
        for r in &pending {
            actions.extend(r.adds.iter().cloned().map(Action::Add));
        }
        actions.extend(txns.into_iter().map(|(app, version)| {
            Action::Txn(Txn {
                app_id: app.to_string(),
                version,
                last_updated: Some(now),
            })
        }));
        match table.commit(snap, actions).await? {
            CommitOutcome::Committed(_) => return Ok(()),
            CommitOutcome::Conflict => continue,
        }
    }
    Err(LakeError::Delta {
        table: table.def().path.clone(),
        detail: format!(
            "no commit after {MAX_ATTEMPTS} attempts: other writers keep committing first"
        ),
    }
    .into())
}

/// The raw and dead-letter tables of a lake (or of a replay's prefix).
#[derive(Debug, Clone)]
pub struct Tables {
    lake: Lake,
    raw: Publisher,
    dead_letter: Publisher,
}

impl Tables {
    /// Starts both tables' commit tasks, after checking that the lake is not one written
    /// before Delta tables (its history would be missing from them: `kvlake migrate`).
    /// A lake of Delta tables carries [`TABLES_MARKER`], written before its first plan, so
    /// a crash can never leave a log without it.
    pub async fn open(lake: &Lake) -> Result<Tables, HotError> {
        if lake.get(TABLES_MARKER).await?.is_none() {
            let raw = DeltaTable::new(lake, raw_table());
            if !raw.exists().await? && lake.has_any(&format!("{META_PREFIX}/log")).await? {
                return Err(LakeError::Delta {
                    table: RAW_TABLE.into(),
                    detail: format!(
                        "{} holds a checkpoint log but no Delta tables: it was written by a kvlake before Delta; run `kvlake migrate --lake {}` once, then start again",
                        lake.display(),
                        lake.display()
                    ),
                }
                .into());
            }
            mark_delta(lake).await?;
        }
        Ok(Tables::start(lake))
    }

    /// Starts both tables' commit tasks.
    pub fn start(lake: &Lake) -> Tables {
        Tables {
            lake: lake.clone(),
            raw: Publisher::start(DeltaTable::new(lake, raw_table())),
            dead_letter: Publisher::start(DeltaTable::new(lake, dead_letter_table())),
        }
    }

    /// Publishes one checkpoint-log commit to the tables it wrote files for.
    pub async fn publish(&self, commit: &BatchCommit) -> Result<(), HotError> {
        let app = app_id(&commit.topic, commit.partition);
        let version = i64::try_from(commit.seq).unwrap_or(i64::MAX);
        let mut work = Vec::new();
        for (name, publisher) in [
            (RAW_TABLE, &self.raw),
            (DEAD_LETTER_TABLE, &self.dead_letter),
        ] {
            let files: Vec<&CommittedFile> =
                commit.files.iter().filter(|f| f.table == name).collect();
            if files.is_empty() {
                continue;
            }
            let mut adds = Vec::with_capacity(files.len());
            for f in files {
                let stats = match &f.stats {
                    Some(_) => None,
                    // Written by a kvlake before Delta: read the file's footer.
                    None => self.stats_from_footer(f).await?,
                };
                adds.push(add_of(f, stats));
            }
            work.push(publisher.publish(app.clone(), version, adds));
        }
        futures::future::try_join_all(work).await?;
        Ok(())
    }

    async fn stats_from_footer(&self, f: &CommittedFile) -> Result<Option<String>, HotError> {
        let Some(bytes) = self.lake.get(&f.path).await? else {
            return Err(LakeError::Delta {
                table: f.table.clone(),
                detail: format!("committed file {} is missing", f.path),
            }
            .into());
        };
        let schema = if f.table == RAW_TABLE {
            raw_file_schema()
        } else {
            dead_letter_file_schema()
        };
        let stats = tokio::task::spawn_blocking(move || stats_of_file(&bytes, &schema))
            .await
            .map_err(|e| HotError::Task(e.to_string()))?;
        Ok(stats.ok())
    }
}
