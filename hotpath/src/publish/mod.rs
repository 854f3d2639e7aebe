//! From the checkpoint log to the Delta tables: each committed batch's staged rows
//! become Parquet files and `add` actions, plus a `txn` (app id = the topic partition's
//! log, version = the batch's sequence number), in the raw and dead-letter tables.
//!
//! One task per table per process takes every request waiting when it is free and
//! commits them together (group commit), so many partitions committing at once cost one
//! Delta version, not a race of optimistic retries — and their rows of each hour are
//! merged into one file ([`merge`]), not one per partition. A request whose txn version
//! is already in the table is done, which makes publishing idempotent: after a crash the
//! partition's last commit is published again on start, and only if it is missing.

pub mod merge;

use std::collections::BTreeMap;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;

use kvlake_schemas::checkpoint::{BatchCommit, CommittedFile};
use kvlake_schemas::deadletter::dead_letter_file_schema;
use kvlake_schemas::delta::stats::stats_of_file;
use kvlake_schemas::delta::{Action, Add, CommitInfo, Snapshot, Txn};
use kvlake_schemas::layout::{DEAD_LETTER_TABLE, META_PREFIX, RAW_TABLE, path_safe};
use kvlake_schemas::raw::raw_file_schema;
use tokio::sync::{mpsc, oneshot, watch};

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

/// A set of this process's partitions (by txn app id), each in it while any of its slots
/// lives, which the tables' publishers watch. Two sets make a publisher's linger:
/// - the partitions with a batch on its way to one table (open, or written and not yet
///   published): a publisher that has a request lingers until each of them has one in
///   its group (or its linger has passed), so the batches of many partitions closing
///   close together share one commit and one file per hour;
/// - the partitions that closed their next batch and wait for the previous one to be
///   published: a publisher holding that one commits at once, since lingering longer
///   would stall the partition (and, once its queue fills, every partition's intake).
#[derive(Debug, Clone)]
pub struct PartitionSet(Arc<watch::Sender<HashMap<String, usize>>>);

/// One partition's place in a [`PartitionSet`] (one batch on its way, or one partition
/// waiting); dropped when that ends.
#[derive(Debug)]
pub struct PartitionSlot {
    set: PartitionSet,
    app_id: String,
}

impl Default for PartitionSet {
    fn default() -> Self {
        PartitionSet(Arc::new(watch::Sender::new(HashMap::new())))
    }
}

impl PartitionSet {
    /// Counts `app_id`'s partition in until the slot (and any other of it) is dropped.
    pub fn enter(&self, app_id: String) -> PartitionSlot {
        self.0
            .send_modify(|m| *m.entry(app_id.clone()).or_insert(0) += 1);
        PartitionSlot {
            set: self.clone(),
            app_id,
        }
    }

    fn watch(&self) -> watch::Receiver<HashMap<String, usize>> {
        self.0.subscribe()
    }
}

impl Drop for PartitionSlot {
    fn drop(&mut self) {
        self.set.0.send_if_modified(|m| {
            let Some(n) = m.get_mut(&self.app_id) else {
                return false;
            };
            *n -= 1;
            if *n == 0 {
                m.remove(&self.app_id);
            }
            true
        });
    }
}

/// How long a publisher waits for the batches on their way before it commits.
#[derive(Debug, Clone, Default)]
struct Linger {
    /// Partitions with a batch on its way to this table.
    in_flight: PartitionSet,
    /// Partitions waiting for their previous batch to be published.
    waiting: PartitionSet,
    max: Duration,
}

/// What a request brings to the table.
#[derive(Debug)]
pub enum Payload {
    /// Files already in the table's folders (commits written before staging, and
    /// `kvlake migrate`): added as they are.
    Files(Vec<Add>),
    /// A batch's staged rows (in memory when the batch was just written, else read
    /// from `path`), merged with the other waiting batches' rows of the same hour.
    Staged {
        /// The staged file the log's commit names.
        path: String,
        /// The rows, when the writer still holds them.
        rows: Option<Arc<Vec<RecordBatch>>>,
    },
}

struct Request {
    app_id: String,
    version: i64,
    payload: Payload,
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
    fn start(table: DeltaTable, merger: merge::Merger, linger: Linger) -> Publisher {
        let (tx, rx) = mpsc::channel(1024);
        let name = table.def().path.clone();
        tokio::spawn(serve(table, merger, linger, rx));
        Publisher { table: name, tx }
    }

    /// Commits `payload` with `txn(app_id, version)` unless that version is already in.
    pub async fn publish(
        &self,
        app_id: String,
        version: i64,
        payload: Payload,
    ) -> Result<(), HotError> {
        let (done, rx) = oneshot::channel();
        let gone = || HotError::Task(format!("the {} table's commit task stopped", self.table));
        self.tx
            .send(Request {
                app_id,
                version,
                payload,
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

async fn serve(
    table: DeltaTable,
    merger: merge::Merger,
    linger: Linger,
    mut rx: mpsc::Receiver<Request>,
) {
    let mut snap: Option<Snapshot> = None;
    let (mut in_flight, mut waiting) = (linger.in_flight.watch(), linger.waiting.watch());
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + linger.max;
        loop {
            while let Ok(r) = rx.try_recv() {
                group.push(r);
            }
            // Every batch on its way is here (each partition has at most one), or a
            // partition waits for one that is, or waiting longer would delay the first
            // one more than its linger.
            let complete = {
                let partitions: BTreeSet<&str> = group.iter().map(|r| r.app_id.as_str()).collect();
                let waited_for = waiting.borrow_and_update();
                partitions.len() >= in_flight.borrow_and_update().len()
                    || partitions.iter().any(|p| waited_for.contains_key(*p))
            };
            if complete {
                break;
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => group.push(r),
                    None => break,
                },
                // The sets live as long as the tables, so these never end.
                _ = in_flight.changed() => {}
                _ = waiting.changed() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let result = commit_group(&table, &merger, &mut snap, &group).await;
        if let Ok((files, bytes)) = result {
            crate::metrics::files_published(&table.def().path, files, bytes);
        }
        let result = result.map(|_| ());
        if result.is_err() {
            snap = None; // reload from storage before the next attempt
        } else {
            // Every batch of the group is in the table now (ours or an earlier commit).
            let staged = group.iter().filter_map(|r| match &r.payload {
                Payload::Staged { path, .. } => Some(path.clone()),
                Payload::Files(_) => None,
            });
            crate::stage::delete_published(merger.lake(), staged.collect());
        }
        let result = result.map_err(|e| e.to_string());
        for r in group {
            let _ = r.done.send(result.clone());
        }
    }
}

async fn commit_group(
    table: &DeltaTable,
    merger: &merge::Merger,
    cached: &mut Option<Snapshot>,
    group: &[Request],
) -> Result<(u64, u64), HotError> {
    let snap = match cached {
        Some(s) => s,
        None => {
            // Txn versions only: a restart after a year costs what it costs after a day.
            let mut s = table.load_without_files().await?;
            table.create_if_missing(&mut s).await?;
            cached.insert(s)
        }
    };
    // The merged files of the batches pending at the last attempt: a conflict with
    // another writer's commit usually leaves the same batches pending, and their files
    // (named by exactly those batches) are kept.
    let mut merged: Option<merge::Merged> = None;
    for _ in 0..MAX_ATTEMPTS {
        let pending: Vec<&Request> = group
            .iter()
            .filter(|r| snap.txn_version(&r.app_id) < Some(r.version))
            .collect();
        if pending.is_empty() {
            return Ok((0, 0));
        }
        let mut staged: Vec<merge::Member<'_>> = pending
            .iter()
            .filter_map(|r| match &r.payload {
                Payload::Staged { path, rows } => Some(merge::Member {
                    app_id: &r.app_id,
                    version: r.version,
                    path,
                    rows: rows.as_ref(),
                }),
                Payload::Files(_) => None,
            })
            .collect();
        staged.sort_by(|a, b| (a.app_id, a.version).cmp(&(b.app_id, b.version)));
        if staged.is_empty() {
            merged = None;
        } else if merged.as_ref().is_none_or(|m| !m.is_of(&staged)) {
            merged = Some(merger.merge(table, &staged).await?);
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
        fail::fail_point!("after-merge");
        let mut actions = vec![info.action()];
        for r in &pending {
            if let Payload::Files(adds) = &r.payload {
                actions.extend(adds.iter().cloned().map(Action::Add));
            }
        }
        if let Some(m) = &merged {
            actions.extend(m.adds.iter().cloned().map(Action::Add));
        }
        actions.extend(txns.into_iter().map(|(app, version)| {
            Action::Txn(Txn {
                app_id: app.to_string(),
                version,
                last_updated: Some(now),
            })
        }));
        let added = actions
            .iter()
            .filter_map(|a| match a {
                Action::Add(add) => Some(u64::try_from(add.size).unwrap_or(0)),
                _ => None,
            })
            .fold((0, 0), |(n, b), size| (n + 1, b + size));
        match table.commit(snap, actions).await? {
            CommitOutcome::Committed(_) => return Ok(added),
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

/// Whether a committed file is a batch's staged rows (rather than a table's data file).
fn is_staged(path: &str) -> bool {
    path.starts_with(&format!("{META_PREFIX}/staging/"))
}

/// The raw and dead-letter tables of a lake (or of a replay's prefix).
#[derive(Debug, Clone)]
pub struct Tables {
    lake: Lake,
    raw: Publisher,
    dead_letter: Publisher,
    raw_in_flight: PartitionSet,
    dead_letter_in_flight: PartitionSet,
    waiting: PartitionSet,
}

impl Tables {
    /// Starts both tables' commit tasks, after checking that the lake is not one written
    /// before Delta tables (its history would be missing from them: `kvlake migrate`).
    /// A lake of Delta tables carries [`TABLES_MARKER`], written before its first plan, so
    /// a crash can never leave a log without it.
    pub async fn open(lake: &Lake) -> Result<Tables, HotError> {
        Tables::open_with_linger(lake, Duration::ZERO).await
    }

    /// [`Tables::open`], with publishers that wait up to `linger` for the batches on
    /// their way ([`Tables::raw_in_flight`], [`Tables::dead_letter_in_flight`]) before they
    /// commit: the hot path's partitions then share commits and files.
    pub async fn open_with_linger(lake: &Lake, linger: Duration) -> Result<Tables, HotError> {
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
        Ok(Tables::start(lake, linger))
    }

    /// Starts both tables' commit tasks.
    fn start(lake: &Lake, linger: Duration) -> Tables {
        let merger = merge::Merger::new(lake);
        let (raw_in_flight, dead_letter_in_flight) =
            (PartitionSet::default(), PartitionSet::default());
        let waiting = PartitionSet::default();
        let lingers = |in_flight: &PartitionSet| Linger {
            in_flight: in_flight.clone(),
            waiting: waiting.clone(),
            max: linger,
        };
        Tables {
            lake: lake.clone(),
            raw: Publisher::start(
                DeltaTable::new(lake, raw_table()),
                merger.clone(),
                lingers(&raw_in_flight),
            ),
            dead_letter: Publisher::start(
                DeltaTable::new(lake, dead_letter_table()),
                merger,
                lingers(&dead_letter_in_flight),
            ),
            raw_in_flight,
            dead_letter_in_flight,
            waiting,
        }
    }

    /// The batches on their way to the raw table (a partition enters when it opens a
    /// batch, and leaves when the batch is published or has no raw rows).
    pub fn raw_in_flight(&self) -> &PartitionSet {
        &self.raw_in_flight
    }

    /// The batches on their way to the dead-letter table (entered when a closed batch
    /// has dead letters).
    pub fn dead_letter_in_flight(&self) -> &PartitionSet {
        &self.dead_letter_in_flight
    }

    /// The partitions waiting for their previous batch to be published (entered by a
    /// partition that closed its next batch before that): the publishers commit a batch
    /// such a partition waits for without lingering.
    pub fn waiting(&self) -> &PartitionSet {
        &self.waiting
    }

    /// Publishes one checkpoint-log commit to the tables it holds rows for; `rows` are
    /// the batch's staged rows per table when the writer still holds them (else they
    /// are read back from the staged files, if the table does not have them yet).
    pub async fn publish(
        &self,
        commit: &BatchCommit,
        mut rows: BTreeMap<&'static str, Arc<Vec<RecordBatch>>>,
    ) -> Result<(), HotError> {
        let app = app_id(&commit.topic, commit.partition);
        let version = i64::try_from(commit.seq).unwrap_or(i64::MAX);
        let mut work = Vec::new();
        for (name, publisher) in [
            (RAW_TABLE, &self.raw),
            (DEAD_LETTER_TABLE, &self.dead_letter),
        ] {
            let files: Vec<&CommittedFile> =
                commit.files.iter().filter(|f| f.table == name).collect();
            let payload = match files.as_slice() {
                [] => continue,
                [f] if is_staged(&f.path) => Payload::Staged {
                    path: f.path.clone(),
                    rows: rows.remove(name),
                },
                _ => {
                    let mut adds = Vec::with_capacity(files.len());
                    for f in files {
                        let stats = match &f.stats {
                            Some(_) => None,
                            // Written by a kvlake before Delta: read the file's footer.
                            None => self.stats_from_footer(f).await?,
                        };
                        adds.push(add_of(f, stats));
                    }
                    Payload::Files(adds)
                }
            };
            work.push(publisher.publish(app.clone(), version, payload));
        }
        futures::future::try_join_all(work).await?;
        Ok(())
    }

    /// Deletes the staged files of every batch already in its table (the end of a run:
    /// the deletes after each commit are best effort and may not have run yet).
    pub async fn clean_staged(&self) -> Result<u64, HotError> {
        crate::stage::clean_all(&self.lake).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::OpenBatch;
    use crate::messages::Msg;

    /// One partition's batch as a partition task stages it: generated messages decoded,
    /// spread over several hours.
    fn batch_rows(partition: i32, seed: u64) -> (Arc<Vec<RecordBatch>>, u64) {
        let mut g = kvlake_generator::Generator::new(kvlake_generator::GeneratorConfig {
            seed,
            events_per_second: 0.05,
            ..Default::default()
        });
        let msgs: Vec<Msg> = (0..60)
            .map(|i| Msg {
                offset: i,
                timestamp_ms: Some(1_793_527_200_000),
                payload: g.next_message().bytes,
            })
            .collect();
        let mut b = OpenBatch::new(1 << 20, 4096);
        b.add(&msgs, "kv", partition, 5).unwrap();
        let staged = b
            .finish()
            .staged
            .into_iter()
            .find(|s| s.table == RAW_TABLE)
            .unwrap();
        (Arc::new(staged.batches), staged.rows)
    }

    fn requests(lake_rows: &[(String, Arc<Vec<RecordBatch>>)], in_memory: bool) -> Vec<Request> {
        lake_rows
            .iter()
            .enumerate()
            .map(|(p, (path, rows))| Request {
                app_id: app_id("kv", p as i32),
                version: 0,
                payload: Payload::Staged {
                    path: path.clone(),
                    // The last batch comes back from storage, as after a crash.
                    rows: (in_memory && p + 1 < lake_rows.len()).then(|| Arc::clone(rows)),
                },
                done: oneshot::channel().0,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_waiting_for_its_published_batch_ends_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &[], None).unwrap();
        let (batches, _) = batch_rows(0, 7);
        let path = kvlake_schemas::layout::staging_path("kv", 0, 0, RAW_TABLE);
        lake.put(&path, crate::stage::to_ipc(&batches).unwrap())
            .await
            .unwrap();
        let linger = Linger {
            in_flight: PartitionSet::default(),
            waiting: PartitionSet::default(),
            max: Duration::from_secs(3600),
        };
        // Partition 1 has a batch open too: the publisher waits for it, up to an hour.
        let (_open_0, _open_1) = (
            linger.in_flight.enter(app_id("kv", 0)),
            linger.in_flight.enter(app_id("kv", 1)),
        );
        let table = DeltaTable::new(&lake, raw_table());
        let publisher = Publisher::start(table.clone(), merge::Merger::new(&lake), linger.clone());
        let mut published = tokio::spawn(async move {
            let payload = Payload::Staged {
                path,
                rows: Some(batches),
            };
            publisher.publish(app_id("kv", 0), 0, payload).await
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut published)
                .await
                .is_err(),
            "published before partition 1's batch came or the linger ended"
        );

        // Partition 0 closed its next batch and waits for this one: no more lingering.
        let _waiting = linger.waiting.enter(app_id("kv", 0));
        tokio::time::timeout(Duration::from_secs(60), published)
            .await
            .expect("still lingering although partition 0 waits for its batch")
            .unwrap()
            .unwrap();
        let snap = table.load().await.unwrap();
        assert_eq!(snap.txn_version(&app_id("kv", 0)), Some(0));
        assert_eq!(snap.txn_version(&app_id("kv", 1)), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_batches_of_several_partitions_make_one_file_per_hour_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &[], None).unwrap();
        let mut staged = Vec::new();
        let mut rows = 0;
        for p in 0..3 {
            let (batches, n) = batch_rows(p, 40 + p as u64);
            let path = kvlake_schemas::layout::staging_path("kv", p, 0, RAW_TABLE);
            lake.put(&path, crate::stage::to_ipc(&batches).unwrap())
                .await
                .unwrap();
            staged.push((path, batches));
            rows += n;
        }
        let table = DeltaTable::new(&lake, raw_table());
        let merger = merge::Merger::new(&lake);
        let group = requests(&staged, true);
        let (files, _) = commit_group(&table, &merger, &mut None, &group)
            .await
            .unwrap();

        let snap = table.load().await.unwrap();
        assert_eq!(
            snap.version, 1,
            "created, then one commit for all three batches"
        );
        let mut hours = BTreeMap::new();
        for add in snap.files.values() {
            *hours.entry(add.partition_values.clone()).or_insert(0) += 1;
        }
        assert!(hours.len() > 1, "the batches span several hours");
        assert!(
            hours.values().all(|n| *n == 1),
            "one file per hour: {hours:?}"
        );
        assert_eq!(files as usize, snap.files.len());
        let in_table: u64 = snap
            .files
            .values()
            .map(|a| {
                let stats: serde_json::Value =
                    serde_json::from_str(a.stats.as_deref().unwrap()).unwrap();
                stats["numRecords"].as_u64().unwrap()
            })
            .sum();
        assert_eq!(in_table, rows, "every row of every batch, once");
        for p in 0..3 {
            assert_eq!(snap.txn_version(&app_id("kv", p)), Some(0));
        }

        // Published already: nothing more, however often it is asked again.
        let again = requests(&staged, false);
        assert_eq!(
            commit_group(&table, &merger, &mut None, &again)
                .await
                .unwrap(),
            (0, 0)
        );
        assert_eq!(table.load().await.unwrap().version, 1);

        // The same batches make the same files, whether rows come from memory or storage.
        let members: Vec<merge::Member<'_>> = staged
            .iter()
            .enumerate()
            .map(|(p, (path, _))| merge::Member {
                app_id: &group[p].app_id,
                version: 0,
                path,
                rows: None,
            })
            .collect();
        let other = tempfile::tempdir().unwrap();
        let other_lake = Lake::open(other.path().to_str().unwrap(), &[], None).unwrap();
        for (path, batches) in &staged {
            other_lake
                .put(path, crate::stage::to_ipc(batches).unwrap())
                .await
                .unwrap();
        }
        let other_table = DeltaTable::new(&other_lake, raw_table());
        let remade = merge::Merger::new(&other_lake)
            .merge(&other_table, &members)
            .await
            .unwrap();
        let mut paths: Vec<&str> = remade.adds.iter().map(|a| a.path.as_str()).collect();
        paths.sort_unstable();
        let mut first: Vec<&str> = snap.files.keys().map(String::as_str).collect();
        first.sort_unstable();
        assert_eq!(paths, first, "same batches, same names");
        for p in paths {
            let a = std::fs::read(dir.path().join("raw").join(p)).unwrap();
            let b = std::fs::read(other.path().join("raw").join(p)).unwrap();
            assert_eq!(a, b, "same batches, same bytes: {p}");
        }
    }
}
