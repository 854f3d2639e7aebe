//! A year of service operation, simulated at the log level (issue 12, item 7): does the
//! cost of a restart, a no-op cold run and the compaction of one day stay flat from one
//! day of history to a year?
//!
//! For each history length (1, 30 and 365 closed days) it builds two local lakes as a
//! 32-partition service with 5-minute batches would leave them after `kvlake compact`:
//!
//! - the raw table's closed days compacted to one file per hour (24 adds a day, fake
//!   paths, realistic ~1.5 KB stats, `dataChange=true`) in a checkpoint, the log cleaned
//!   up, then today's last 15 group commits (32 adds + 32 txns each) as JSON commits;
//! - each partition's checkpoint log pruned to its newest 100 batches (plan + commit),
//!   contiguous offsets, its `_latest.json` hint, and Delta txn versions equal to the
//!   last commit's sequence number; a small dead-letter table;
//! - for the compaction lake, the newest closed day instead holds real small Parquet
//!   files (32 partitions × 24 hours × 2, encoded by the hot path from generator
//!   messages), everything else as above.
//!
//! and measures, with every object-store LIST and GET counted by a wrapper around
//! `LocalFileSystem`:
//!
//! - (a) restart to first commit: `Tables::open`, `resume_published` of the 32
//!   partitions (concurrently, as the service does), then one new `BatchCommit`
//!   published (its files carry stats, so no footer is read);
//! - (b) a no-op cold run: `ColdJob::run` on a lake whose cold state names the current
//!   raw version;
//! - (c) `maintain::compact` of the raw table, where only the newest day has small files.
//!
//! Each is run `--runs` times (default 5; the lake is put back between runs) and the
//! medians are printed, with the ratio of the longest history to the shortest.
//!
//! ```sh
//! flock /tmp/kvlake-cargo.lock cargo build -p kvlake-benches --bin lake-year
//! /var/tmp/kvlake-target/debug/lake-year [--runs 5] [--dir /var/tmp/kvlake-lake-year]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use kvlake_coldpath::state::ColdState;
use kvlake_coldpath::{ColdJob, Thresholds};
use kvlake_generator::{Generator, GeneratorConfig};
use kvlake_hotpath::encode::{OpenBatch, encode_by_hour, writer_properties};
use kvlake_hotpath::log::PartitionLog;
use kvlake_hotpath::messages::Msg;
use kvlake_hotpath::publish::{Tables, add_of, app_id, mark_delta};
use kvlake_lake::maintain::{CompactOptions, compact};
use kvlake_lake::tables::{dead_letter_table, raw_table};
use kvlake_lake::{DeltaTable, Lake};
use kvlake_schemas::checkpoint::{BatchCommit, BatchPlan, CommittedFile};
use kvlake_schemas::delta::{
    Action, Add, CommitInfo, LOG_DIR, Snapshot, Txn, checkpoint_path, commit_path,
};
use kvlake_schemas::layout::{
    LogEntryKind, RAW_TABLE, batch_file_name, log_dir, log_entry_path, partition_dir,
};
use kvlake_schemas::time::{format_date, format_timestamp_micros};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

const TOPIC: &str = "kv-audit";
const PARTITIONS: i32 = 32;
/// 5-minute batches.
const BATCHES_PER_DAY: u64 = 288;
/// Today's group commits after the checkpoint (75 minutes of batches).
const TODAY_COMMITS: u64 = 15;
/// Checkpoint-log batches kept per partition (what `kvlake compact` prunes to).
const LOG_KEPT: u64 = 100;
const OFFSETS_PER_BATCH: i64 = 1_000;
const ROWS_PER_BATCH: u64 = 900;
/// Small files per partition and hour of the day that is compacted.
const SMALL_FILES: usize = 2;
/// Delta versions a day of service adds: a group commit per batch, a compaction per hour.
const VERSIONS_PER_DAY: i64 = 288 + 24;
const HISTORIES: [i64; 3] = [1, 30, 365];
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Compaction waits this long after an hour has closed (`--older-than 2h`).
const CLOSED_FOR_MS: i64 = 2 * HOUR_MS;
const TARGET_BYTES: u64 = 128 << 20;
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// LIST and GET calls made through a [`CountingStore`].
#[derive(Debug, Default)]
struct Counts {
    lists: AtomicU64,
    gets: AtomicU64,
}

impl Counts {
    fn reset(&self) {
        self.lists.store(0, Ordering::SeqCst);
        self.gets.store(0, Ordering::SeqCst);
    }

    fn read(&self) -> (u64, u64) {
        (
            self.lists.load(Ordering::SeqCst),
            self.gets.load(Ordering::SeqCst),
        )
    }
}

/// A local store that counts the requests a remote store would bill as LIST and GET.
#[derive(Debug)]
struct CountingStore {
    inner: LocalFileSystem,
    counts: Arc<Counts>,
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.counts.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.counts
            .gets
            .fetch_add(ranges.len() as u64, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A lake in a local folder, seen through a counting store.
struct BenchLake {
    dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    counts: Arc<Counts>,
    lake: Lake,
}

impl BenchLake {
    fn open(dir: &FsPath) -> Result<BenchLake> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let counts = Arc::new(Counts::default());
        let store: Arc<dyn ObjectStore> = Arc::new(CountingStore {
            inner: LocalFileSystem::new_with_prefix(dir)?,
            counts: counts.clone(),
        });
        let lake = Lake::with_store(store.clone(), Path::default(), "bench".into());
        Ok(BenchLake {
            dir: dir.to_path_buf(),
            store,
            counts,
            lake,
        })
    }

    fn raw(&self) -> DeltaTable {
        DeltaTable::new(&self.lake, raw_table())
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.join(RAW_TABLE).join(LOG_DIR)
    }
}

/// When the simulated service runs: now, and the days and hours its history covers.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// The hour today's group commits write into (still open).
    today: i32,
    hour: i32,
    /// The newest day compaction may take (closed for at least `CLOSED_FOR_MS`).
    closed_day: i32,
    now_micros: i64,
}

impl Clock {
    fn now() -> Result<Clock> {
        let now_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?;
        Ok(Clock {
            today: i32::try_from(now_ms / DAY_MS)?,
            hour: i32::try_from(now_ms % DAY_MS / HOUR_MS)?,
            closed_day: i32::try_from((now_ms - CLOSED_FOR_MS) / DAY_MS - 1)?,
            now_micros: now_ms * 1000,
        })
    }

    fn stamp(&self) -> String {
        format_timestamp_micros(self.now_micros)
    }
}

/// The sequence numbers of one partition's history: `0..total`.
fn batches(days: i64) -> u64 {
    BATCHES_PER_DAY * days.unsigned_abs() + TODAY_COMMITS
}

/// The Delta version of the checkpoint: a multiple of the checkpoint interval, so the
/// 15 commits after it and the benchmark's own commit write no checkpoint of their own.
fn checkpoint_version(days: i64) -> i64 {
    (days * VERSIONS_PER_DAY / 20 + 1) * 20
}

fn hour_values(day: i32, hour: i32) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([
        ("date".to_string(), Some(format_date(i64::from(day)))),
        ("hour".to_string(), Some(hour.to_string())),
    ])
}

/// The file a batch of today's current hour committed.
fn batch_file(clock: &Clock, partition: i32, seq: u64, stats: &str) -> Result<CommittedFile> {
    let start = i64::try_from(seq)? * OFFSETS_PER_BATCH;
    Ok(CommittedFile {
        path: format!(
            "{}/{}",
            partition_dir(RAW_TABLE, clock.today, clock.hour),
            batch_file_name(TOPIC, partition, start, start + OFFSETS_PER_BATCH)
        ),
        table: RAW_TABLE.into(),
        rows: ROWS_PER_BATCH,
        bytes: 180_000,
        stats: Some(stats.to_string()),
    })
}

fn batch_commit(clock: &Clock, partition: i32, seq: u64, stats: &str) -> Result<BatchCommit> {
    let start = i64::try_from(seq)? * OFFSETS_PER_BATCH;
    Ok(BatchCommit {
        version: 1,
        topic: TOPIC.into(),
        partition,
        seq,
        start_offset: start,
        end_offset: start + OFFSETS_PER_BATCH,
        files: vec![batch_file(clock, partition, seq, stats)?],
        raw_rows: ROWS_PER_BATCH,
        dead_letter_rows: 0,
        writer: "lake-year".into(),
        committed_at: clock.stamp(),
    })
}

fn batch_plan(commit: &BatchCommit, clock: &Clock) -> BatchPlan {
    BatchPlan {
        version: 1,
        topic: commit.topic.clone(),
        partition: commit.partition,
        seq: commit.seq,
        start_offset: commit.start_offset,
        end_offset: commit.end_offset,
        messages: u64::try_from(OFFSETS_PER_BATCH).unwrap_or_default(),
        writer: commit.writer.clone(),
        planned_at: clock.stamp(),
    }
}

/// A real small raw file: its path in the table, bytes and stats.
struct SmallFile {
    path: String,
    bytes: Bytes,
    stats: String,
}

/// The small files of `day` as the hot path writes them: per hour, per partition, per
/// batch, a few generator messages decoded and encoded by `OpenBatch`.
fn small_files(day: i32) -> Result<Vec<SmallFile>> {
    let mut out = Vec::new();
    for hour in 0..24 {
        let hour_micros = (i64::from(day) * 24 + i64::from(hour)) * HOUR_MS * 1000;
        let mut generator = Generator::new(GeneratorConfig {
            seed: u64::try_from(hour)?,
            start_time_micros: hour_micros,
            ..GeneratorConfig::default()
        });
        for partition in 0..PARTITIONS {
            for b in 0..SMALL_FILES {
                let start = i64::from(hour) * 10_000 + i64::try_from(b)? * 10;
                let msgs: Vec<Msg> = (0..3)
                    .map(|i| {
                        let m = generator.next_message();
                        Msg {
                            offset: start + i,
                            timestamp_ms: Some(m.event_time_micros / 1000),
                            payload: m.bytes,
                        }
                    })
                    .collect();
                let mut batch = OpenBatch::new(1 << 20, ROW_GROUP_ROWS);
                batch.add(&msgs, TOPIC, partition, hour_micros)?;
                let props = writer_properties(ROW_GROUP_ROWS);
                let finished = batch.finish();
                let encoded = finished.staged.iter().map(|st| {
                    let parts: Vec<_> = st.batches.iter().collect();
                    encode_by_hour(st.table, &parts, &props)
                });
                for f in encoded
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                {
                    ensure!(
                        f.table == RAW_TABLE && (f.day, f.hour) == (day, hour),
                        "a generated event fell outside its hour"
                    );
                    out.push(SmallFile {
                        path: format!(
                            "date={}/hour={hour:02}/{}",
                            format_date(i64::from(day)),
                            batch_file_name(TOPIC, partition, start, start + 3)
                        ),
                        bytes: f.bytes,
                        stats: f.stats.context("no stats for a generated file")?,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Writes a lake with `days` closed days of history (see the module comment); with
/// `small`, the newest closed day is those real files instead of compacted fake ones.
async fn build(
    bl: &BenchLake,
    clock: &Clock,
    days: i64,
    stats: &str,
    small: Option<&[SmallFile]>,
) -> Result<()> {
    mark_delta(&bl.lake).await?;
    let raw = bl.raw();
    let mut snap = Snapshot::empty();
    raw.create_if_missing(&mut snap).await?;
    let total = batches(days);
    let last = total - 1;
    let at_checkpoint = i64::try_from(last - TODAY_COMMITS)?;
    let now_ms = clock.now_micros / 1000;
    let mut actions = Vec::new();
    let first_day = clock.closed_day - i32::try_from(days)? + 1;
    for day in first_day..=clock.closed_day {
        if let (Some(files), true) = (small, day == clock.closed_day) {
            for f in files {
                raw.root().put(&f.path, f.bytes.clone()).await?;
                let hour = f
                    .path
                    .split('/')
                    .find_map(|s| s.strip_prefix("hour="))
                    .context("small file without an hour")?
                    .parse()?;
                actions.push(Action::Add(Add {
                    path: f.path.clone(),
                    partition_values: hour_values(day, hour),
                    size: i64::try_from(f.bytes.len())?,
                    modification_time: now_ms,
                    data_change: true,
                    stats: Some(f.stats.clone()),
                }));
            }
            continue;
        }
        for hour in 0..24 {
            actions.push(Action::Add(Add {
                path: format!(
                    "date={}/hour={hour:02}/part-c{:016x}.parquet",
                    format_date(i64::from(day)),
                    (i64::from(day) << 8) | i64::from(hour)
                ),
                partition_values: hour_values(day, hour),
                size: 96 << 20,
                modification_time: now_ms,
                data_change: true,
                stats: Some(stats.to_string()),
            }));
        }
    }
    actions.extend((0..PARTITIONS).map(|p| {
        Action::Txn(Txn {
            app_id: app_id(TOPIC, p),
            version: at_checkpoint,
            last_updated: Some(now_ms),
        })
    }));
    let version = checkpoint_version(days);
    snap.apply(version, actions);
    raw.checkpoint(&snap).await?;
    // As after log cleanup: nothing before the checkpoint is left.
    raw.root().delete(&commit_path(0)).await?;

    // Today's group commits: every partition's batch `seq` in one Delta version.
    for seq in total - TODAY_COMMITS..total {
        let mut actions = vec![
            CommitInfo {
                timestamp: now_ms,
                operation: "STREAMING UPDATE",
                parameters: BTreeMap::from([("outputMode".into(), "Append".into())]),
                blind_append: true,
            }
            .action(),
        ];
        for p in 0..PARTITIONS {
            actions.push(Action::Add(add_of(
                &batch_file(clock, p, seq, stats)?,
                None,
            )));
        }
        for p in 0..PARTITIONS {
            actions.push(Action::Txn(Txn {
                app_id: app_id(TOPIC, p),
                version: i64::try_from(seq)?,
                last_updated: Some(now_ms),
            }));
        }
        raw.commit(&mut snap, actions).await?;
    }

    // The dead-letter table: a few files, in a checkpoint.
    let dead = DeltaTable::new(&bl.lake, dead_letter_table());
    let mut dsnap = Snapshot::empty();
    dead.create_if_missing(&mut dsnap).await?;
    let mut actions: Vec<Action> = (first_day..=clock.closed_day)
        .map(|day| {
            Action::Add(Add {
                path: format!(
                    "date={}/hour=03/part-d{day:08x}.parquet",
                    format_date(i64::from(day))
                ),
                partition_values: hour_values(day, 3),
                size: 4_000,
                modification_time: now_ms,
                data_change: true,
                stats: Some(r#"{"numRecords":2}"#.into()),
            })
        })
        .collect();
    actions.extend((0..PARTITIONS).map(|p| {
        Action::Txn(Txn {
            app_id: app_id(TOPIC, p),
            version: at_checkpoint / 2,
            last_updated: Some(now_ms),
        })
    }));
    dsnap.apply(20, actions);
    dead.checkpoint(&dsnap).await?;
    dead.root().delete(&commit_path(0)).await?;

    if small.is_some() {
        return Ok(()); // compaction reads no checkpoint log
    }
    // Each partition's checkpoint log, pruned to its newest batches, and its hint.
    for p in 0..PARTITIONS {
        for seq in total.saturating_sub(LOG_KEPT)..total {
            let commit = batch_commit(clock, p, seq, stats)?;
            let plan = batch_plan(&commit, clock);
            bl.lake
                .put(
                    &log_entry_path(TOPIC, p, seq, LogEntryKind::Plan),
                    Bytes::from(serde_json::to_vec_pretty(&plan)?),
                )
                .await?;
            bl.lake
                .put(
                    &log_entry_path(TOPIC, p, seq, LogEntryKind::Commit),
                    Bytes::from(serde_json::to_vec_pretty(&commit)?),
                )
                .await?;
        }
        bl.lake
            .put(
                &format!("{}/_latest.json", log_dir(TOPIC, p)),
                Bytes::from(format!("{{\"seq\":{last}}}")),
            )
            .await?;
    }
    // The cold path has taken in the raw table as it is.
    let mut state = ColdState::load(&bl.store, &Path::default()).await?;
    state.raw_version = Some(snap.version);
    state.updated_at = clock.stamp();
    state.save(&bl.store, &Path::default()).await?;
    Ok(())
}

/// One measurement: wall time and the LIST and GET calls made.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    lists: u64,
    gets: u64,
}

async fn measure<F, Fut>(bl: &BenchLake, f: F) -> Result<Sample>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    bl.counts.reset();
    let started = Instant::now();
    f().await?;
    let elapsed = started.elapsed();
    let (lists, gets) = bl.counts.read();
    Ok(Sample {
        elapsed,
        lists,
        gets,
    })
}

/// (a) Restart to first commit.
async fn restart(bl: &BenchLake, clock: &Clock, days: i64, stats: &str) -> Result<()> {
    let tables = Tables::open(&bl.lake).await?;
    let resumed = futures::future::try_join_all((0..PARTITIONS).map(|p| {
        let tables = &tables;
        async move {
            PartitionLog::new(bl.lake.clone(), TOPIC, p)
                .resume_published(tables)
                .await
        }
    }))
    .await?;
    let expected = kvlake_schemas::checkpoint::Resume::From {
        seq: batches(days),
        offset: i64::try_from(batches(days))? * OFFSETS_PER_BATCH,
    };
    ensure!(
        resumed.iter().all(|r| *r == expected),
        "unexpected resume point {:?}",
        resumed.first()
    );
    tables
        .publish(
            &batch_commit(clock, 0, batches(days), stats)?,
            BTreeMap::new(),
        )
        .await?;
    Ok(())
}

/// (b) A no-op cold run.
async fn cold(bl: &BenchLake) -> Result<()> {
    let report = ColdJob::new(bl.store.clone(), Path::default(), Thresholds::default())?
        .run(None)
        .await?;
    ensure!(
        report.days_computed.is_empty() && report.raw_files == 0,
        "the cold run was not a no-op: {report:?}"
    );
    Ok(())
}

/// (c) Compaction of the raw table (only the newest day has small files).
async fn compact_day(bl: &BenchLake, files: usize) -> Result<()> {
    let opts = CompactOptions {
        closed_for_ms: CLOSED_FOR_MS,
        target_bytes: TARGET_BYTES,
        props: writer_properties(ROW_GROUP_ROWS),
    };
    let report = compact(&bl.raw(), &opts).await?;
    ensure!(
        report.files_removed == files && report.files_added == 24,
        "unexpected compaction: {report:?}"
    );
    Ok(())
}

fn copy_dir(from: &FsPath, to: &FsPath) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Puts a table's `_delta_log` back as it was saved.
fn restore_log(bl: &BenchLake, saved: &FsPath) -> Result<()> {
    std::fs::remove_dir_all(bl.log_dir())?;
    copy_dir(saved, &bl.log_dir())
}

fn median(samples: &[Sample]) -> Result<Sample> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.elapsed);
    sorted.get(sorted.len() / 2).copied().context("no samples")
}

/// Medians of one history length.
struct Row {
    days: i64,
    restart: Sample,
    cold: Sample,
    compact: Sample,
    checkpoint_bytes: u64,
    live_files: usize,
}

async fn history(
    base: &FsPath,
    clock: &Clock,
    days: i64,
    runs: usize,
    stats: &str,
    small: &[SmallFile],
) -> Result<Row> {
    let main = BenchLake::open(&base.join(format!("d{days}/main")))?;
    build(&main, clock, days, stats, None).await?;
    let version = checkpoint_version(days);
    let checkpoint_bytes = std::fs::metadata(
        main.dir
            .join(RAW_TABLE)
            .join(checkpoint_path(version).replace('/', std::path::MAIN_SEPARATOR_STR)),
    )?
    .len();
    let live_files = main.raw().load().await?.files.len();
    // The benchmark's own commit is removed after each run of (a).
    let next = main.log_dir().join(format!(
        "{:020}.json",
        version + i64::try_from(TODAY_COMMITS)? + 1
    ));
    let mut restarts = Vec::with_capacity(runs);
    for _ in 0..runs {
        restarts.push(measure(&main, || restart(&main, clock, days, stats)).await?);
        std::fs::remove_file(&next).context("the restart published no new version")?;
    }
    cold(&main).await?; // the first run after the state was written: warm-up
    let mut colds = Vec::with_capacity(runs);
    for _ in 0..runs {
        colds.push(measure(&main, || cold(&main)).await?);
    }

    let compacted = BenchLake::open(&base.join(format!("d{days}/compact")))?;
    build(&compacted, clock, days, stats, Some(small)).await?;
    let saved = base.join(format!("d{days}/compact-log"));
    copy_dir(&compacted.log_dir(), &saved)?;
    let mut compactions = Vec::with_capacity(runs);
    for _ in 0..runs {
        compactions.push(measure(&compacted, || compact_day(&compacted, small.len())).await?);
        restore_log(&compacted, &saved)?;
    }
    Ok(Row {
        days,
        restart: median(&restarts)?,
        cold: median(&colds)?,
        compact: median(&compactions)?,
        checkpoint_bytes,
        live_files,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print(rows: &[Row], small: usize, stats_len: usize) -> Result<()> {
    println!(
        "lake-year: {PARTITIONS} partitions, 5-minute batches, {TODAY_COMMITS} JSON commits after the checkpoint, \
         {LOG_KEPT} checkpoint-log batches per partition, stats {stats_len} B per add, compaction of {small} small files (debug build)"
    );
    println!(
        "{:>8} {:>11} {:>9} | {:>11} {:>5} {:>4} | {:>11} {:>5} {:>4} | {:>11} {:>5} {:>5}",
        "history",
        "live adds",
        "ckpt KiB",
        "restart ms",
        "LIST",
        "GET",
        "cold ms",
        "LIST",
        "GET",
        "compact ms",
        "LIST",
        "GET"
    );
    for r in rows {
        println!(
            "{:>7}d {:>11} {:>9.1} | {:>11.1} {:>5} {:>4} | {:>11.1} {:>5} {:>4} | {:>11.1} {:>5} {:>5}",
            r.days,
            r.live_files,
            r.checkpoint_bytes as f64 / 1024.0,
            ms(r.restart.elapsed),
            r.restart.lists,
            r.restart.gets,
            ms(r.cold.elapsed),
            r.cold.lists,
            r.cold.gets,
            ms(r.compact.elapsed),
            r.compact.lists,
            r.compact.gets,
        );
    }
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        bail!("no history measured");
    };
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { f64::NAN };
    let count = |a: u64, b: u64| ratio(a as f64, b as f64);
    println!(
        "{:>8} {:>11.2} {:>9.2} | {:>11.2} {:>5.2} {:>4.2} | {:>11.2} {:>5.2} {:>4.2} | {:>11.2} {:>5.2} {:>5.2}",
        format!("{}/{}", last.days, first.days),
        count(first.live_files as u64, last.live_files as u64),
        count(first.checkpoint_bytes, last.checkpoint_bytes),
        ratio(ms(first.restart.elapsed), ms(last.restart.elapsed)),
        count(first.restart.lists, last.restart.lists),
        count(first.restart.gets, last.restart.gets),
        ratio(ms(first.cold.elapsed), ms(last.cold.elapsed)),
        count(first.cold.lists, last.cold.lists),
        count(first.cold.gets, last.cold.gets),
        ratio(ms(first.compact.elapsed), ms(last.compact.elapsed)),
        count(first.compact.lists, last.compact.lists),
        count(first.compact.gets, last.compact.gets),
    );
    Ok(())
}

fn options() -> Result<(PathBuf, usize)> {
    let mut dir = PathBuf::from("/var/tmp/kvlake-lake-year");
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().context("--dir needs a value")?.into(),
            "--runs" => runs = args.next().context("--runs needs a value")?.parse()?,
            _ => bail!("usage: lake-year [--runs N] [--dir DIR]"),
        }
    }
    ensure!(runs > 0, "--runs must be at least 1");
    Ok((dir, runs))
}

#[tokio::main]
async fn main() -> Result<()> {
    let (dir, runs) = options()?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let clock = Clock::now()?;
    let started = Instant::now();
    let small = tokio::task::spawn_blocking(move || small_files(clock.closed_day)).await??;
    // Every fake add carries the stats of a real file (the largest of the day's).
    let stats = small
        .iter()
        .map(|f| f.stats.clone())
        .max_by_key(String::len)
        .context("no small files")?;
    eprintln!(
        "encoded {} small files in {:.1}s",
        small.len(),
        started.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for days in HISTORIES {
        let row = history(&dir, &clock, days, runs, &stats, &small).await?;
        eprintln!(
            "{days} days done after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    print(&rows, small.len(), stats.len())
}
