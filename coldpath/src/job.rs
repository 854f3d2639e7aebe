//! One run of the cold path: take in new commits, recompute the days they touch from raw
//! data, then re-derive baselines and anomalies from those days to the newest one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Date32Array, RecordBatch};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kvlake_lake::delta::now_ms;
use kvlake_lake::tables::raw_table;
use kvlake_lake::{CommitOutcome, DeltaTable, Lake, TableDef};
use kvlake_schemas::delta::stats::stats_of_file;
use kvlake_schemas::delta::{Action, Add, CommitInfo, Remove};
use kvlake_schemas::time::format_date;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::commits;
use crate::commits::RawDays;
use crate::definitions::{Stage, TABLES, Table};
use crate::engine::Engine;
use crate::error::ColdError;
use crate::layout::agg_dir;
use crate::settings::{Thresholds, substitute};
use crate::state::ColdState;

/// A range of UTC days to recompute whatever the state says (inclusive, days since epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuild {
    pub from: i32,
    pub to: i32,
}

/// The longest range `--rebuild` accepts, so a typo in a year does not write 700 years.
pub const MAX_REBUILD_DAYS: i32 = 3660;

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct ColdReport {
    /// The raw table's version the run computed from (-1: no raw table yet).
    pub raw_version: i64,
    /// Days recomputed from raw data.
    pub days_computed: Vec<i32>,
    /// Days whose baselines and anomalies were re-derived.
    pub days_analysed: Vec<i32>,
    /// Raw files and rows read.
    pub raw_files: usize,
    pub raw_rows: u64,
    /// Rows written per table.
    pub rows: BTreeMap<&'static str, u64>,
    pub duration: Duration,
}

/// Stages of a run, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the checkpoint log.
    Scan,
    /// Computing one table (from raw data or history).
    Table(&'static str),
    /// Saving the state.
    Save,
}

/// The cold path over one lake.
pub struct ColdJob {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The same store as a `Lake`, for the Delta tables.
    lake: Lake,
    /// Names this run's files (milliseconds at start): unique per run.
    run_id: u64,
    thresholds: Thresholds,
    threads: usize,
    chunk_rows: u64,
    on_step: Box<dyn Fn(Step, usize, usize) + Send + Sync>,
}

impl std::fmt::Debug for ColdJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdJob")
            .field("root", &self.root)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl ColdJob {
    /// A job over the lake `store` below `root`; thresholds are checked here.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        thresholds: Thresholds,
    ) -> Result<ColdJob, ColdError> {
        thresholds.validate()?;
        let lake = Lake::with_store(store.clone(), root.clone(), "lake".into());
        Ok(ColdJob {
            store,
            root,
            lake,
            run_id: u64::try_from(now_ms()).unwrap_or_default(),
            thresholds,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_rows: DEFAULT_CHUNK_ROWS,
            on_step: Box::new(|_, _, _| {}),
        })
    }

    /// Query parallelism (default: the machine's cores).
    pub fn with_threads(mut self, threads: usize) -> ColdJob {
        self.threads = threads.max(1);
        self
    }

    /// Raw rows the daily stage holds in memory at once (whole days; default 2 million).
    pub fn with_chunk_rows(mut self, rows: u64) -> ColdJob {
        self.chunk_rows = rows.max(1);
        self
    }

    /// Called at each step with (step, steps done, steps in all).
    pub fn on_step(mut self, f: impl Fn(Step, usize, usize) + Send + Sync + 'static) -> ColdJob {
        self.on_step = Box::new(f);
        self
    }

    /// Runs once: incremental, or with `rebuild` also recomputing that range.
    pub async fn run(&self, rebuild: Option<Rebuild>) -> Result<ColdReport, ColdError> {
        let started = Instant::now();
        (self.on_step)(Step::Scan, 0, TABLES.len() + 2);
        let mut state = ColdState::load(&self.store, &self.root).await?;
        let raw_table = DeltaTable::new(&self.lake, raw_table());
        let raw = if raw_table.exists().await? {
            // Nothing committed since the last run: the version alone says so, without
            // replaying a year of files.
            let head = raw_table.load_without_files().await?;
            if rebuild.is_none() && state.raw_version == Some(head.version) {
                RawDays {
                    version: head.version,
                    ..RawDays::default()
                }
            } else {
                RawDays::of(&raw_table.load().await?)
            }
        } else {
            RawDays {
                version: -1,
                ..RawDays::default()
            }
        };
        let mut daily = commits::changed_days(&raw_table, state.raw_version, &raw).await?;
        let mut report = ColdReport {
            raw_version: raw.version,
            ..ColdReport::default()
        };
        if raw.version >= 0 {
            state.raw_version = Some(raw.version);
        }
        if let Some(Rebuild { from, to }) = rebuild {
            if to < from || to - from >= MAX_REBUILD_DAYS {
                return Err(ColdError::Setting {
                    name: "rebuild".into(),
                    reason: format!(
                        "--from must not be after --to, and the range at most {MAX_REBUILD_DAYS} days"
                    ),
                });
            }
            daily.extend(from..=to);
        }
        if daily.is_empty() {
            state.updated_at = now_rfc3339();
            state.save(&self.store, &self.root).await?;
            report.duration = started.elapsed();
            metrics::histogram!("kvlake_cold_run_seconds").record(report.duration.as_secs_f64());
            return Ok(report);
        }
        // Baselines and anomalies of every later day with data depend on the days redone.
        let first = daily.first().copied().unwrap_or_default();
        let analysed: Vec<i32> = raw
            .known_days()
            .into_iter()
            .chain(daily.iter().copied())
            .filter(|d| *d >= first)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let engine = Engine::new(self.store.clone(), self.root.clone(), self.threads)?;
        let mut values = self.thresholds.sql_values();
        values.insert("from", format_date(i64::from(first)));
        values.insert(
            "to",
            format_date(i64::from(*analysed.last().unwrap_or(&first))),
        );
        let daily_tables: Vec<&'static Table> =
            TABLES.iter().filter(|t| t.stage == Stage::Daily).collect();
        let chunks = chunk_days(&raw, &daily, self.chunk_rows);
        let history_tables = TABLES.iter().filter(|t| t.stage == Stage::History).count();
        let steps = chunks.len() * daily_tables.len() + history_tables + 1;
        let mut done = 0;
        for chunk in &chunks {
            let files: Vec<String> = chunk
                .iter()
                .flat_map(|d| raw.files_of(*d).iter().map(|f| f.path.clone()))
                .collect();
            report.raw_files += files.len();
            report.raw_rows += chunk
                .iter()
                .flat_map(|d| raw.files_of(*d))
                .map(|f| f.rows)
                .sum::<u64>();
            engine.register_raw(&files).await?;
            for table in &daily_tables {
                done += 1;
                (self.on_step)(Step::Table(table.name), done, steps);
                let sql = substitute(table.name, table.sql, &values)?;
                let batches = engine.run(table, &sql).await?;
                let rows = self.write_days(table, &batches, chunk).await?;
                *report.rows.entry(table.name).or_default() += rows;
            }
        }
        // History definitions read what the daily stage has just written.
        for table in &daily_tables {
            let files = self.live_files(table).await?;
            engine.register_history(table, files).await?;
        }
        for table in TABLES.iter().filter(|t| t.stage == Stage::History) {
            done += 1;
            (self.on_step)(Step::Table(table.name), done, steps);
            let sql = substitute(table.name, table.sql, &values)?;
            let batches = engine.run(table, &sql).await?;
            let rows = self.write_days(table, &batches, &analysed).await?;
            report.rows.insert(table.name, rows);
            // Later definitions read this run's result, not the files it replaced.
            engine.register_batches(table.name, table.schema(), batches)?;
        }
        state.updated_at = now_rfc3339();
        state.save(&self.store, &self.root).await?;
        (self.on_step)(Step::Save, steps, steps);
        report.days_computed = daily.iter().copied().collect();
        metrics::counter!("kvlake_cold_days_computed_total").increment(daily.len() as u64);
        metrics::counter!("kvlake_cold_raw_rows_read_total").increment(report.raw_rows);
        report.days_analysed = analysed;
        report.duration = started.elapsed();
        metrics::histogram!("kvlake_cold_run_seconds").record(report.duration.as_secs_f64());
        Ok(report)
    }

    /// Replaces the rows of `days` in the table's Delta log in one commit: a new file
    /// for each day with rows (named by this run, so a file a reader may still hold is
    /// never overwritten), and `remove` of the files those days had; returns the rows.
    async fn write_days(
        &self,
        table: &'static Table,
        batches: &[RecordBatch],
        days: &[i32],
    ) -> Result<u64, ColdError> {
        let file_schema = table.file_schema();
        let parts: Vec<(i32, Vec<RecordBatch>)> = days
            .iter()
            .map(|&day| Ok((day, rows_of_day(table, batches, day, &file_schema)?)))
            .collect::<Result<_, ColdError>>()?;
        let rows: u64 = parts
            .iter()
            .flat_map(|(_, b)| b.iter())
            .map(|b| b.num_rows() as u64)
            .sum();
        let delta = DeltaTable::new(&self.lake, agg_table(table));
        let run = self.run_id;
        let adds: Vec<Add> =
            futures::stream::iter(parts.into_iter().filter(|(_, b)| !b.is_empty()))
                .map(|(day, batches)| {
                    let schema = file_schema.clone();
                    let delta = &delta;
                    async move {
                        let (bytes, stats) = tokio::task::spawn_blocking(move || {
                            let bytes = encode(table, schema.clone(), &batches)?;
                            let stats = stats_of_file(&bytes, &schema)
                                .map_err(|e| ColdError::output(table.name, e))?;
                            Ok::<_, ColdError>((bytes, stats))
                        })
                        .await
                        .map_err(|e| ColdError::output(table.name, e))??;
                        let date = format_date(i64::from(day));
                        let path = format!("date={date}/part-{run:016x}.parquet");
                        let size = bytes.len() as i64;
                        delta.root().put(&path, bytes).await?;
                        Ok::<_, ColdError>(Add {
                            path,
                            partition_values: BTreeMap::from([("date".to_string(), Some(date))]),
                            size,
                            modification_time: now_ms(),
                            data_change: true,
                            stats: Some(stats),
                        })
                    }
                })
                .buffer_unordered(8)
                .try_collect()
                .await?;
        let mut snap = delta.load().await?;
        delta.create_if_missing(&mut snap).await?;
        let replaced: BTreeSet<String> = days.iter().map(|d| format_date(i64::from(*d))).collect();
        loop {
            let now = now_ms();
            let mut actions = vec![
                CommitInfo {
                    timestamp: now,
                    operation: "WRITE",
                    parameters: BTreeMap::from([
                        ("mode".into(), "Overwrite".into()),
                        ("partitionBy".into(), "[\"date\"]".into()),
                        (
                            "predicate".into(),
                            format!("date in {} days recomputed", replaced.len()),
                        ),
                    ]),
                    blind_append: false,
                }
                .action(),
            ];
            actions.extend(
                snap.files
                    .values()
                    .filter(|a| {
                        a.partition_values
                            .get("date")
                            .and_then(|d| d.as_deref())
                            .is_some_and(|d| replaced.contains(d))
                    })
                    .map(|a| Action::Remove(Remove::of(a, now, true))),
            );
            actions.extend(adds.iter().cloned().map(Action::Add));
            if let CommitOutcome::Committed(_) = delta.commit(&mut snap, actions).await? {
                break;
            }
        }
        metrics::counter!("kvlake_cold_rows_written_total", "table" => table.name).increment(rows);
        Ok(rows)
    }

    /// The live files of an aggregate table, with their day, read into memory.
    async fn live_files(&self, table: &Table) -> Result<Vec<(i32, Bytes)>, ColdError> {
        Ok(DeltaTable::new(&self.lake, agg_table(table))
            .live_files_by_day()
            .await?)
    }
}

/// The Delta definition of an aggregate table: `agg/<name>`, partitioned by `date`.
pub fn agg_table(table: &Table) -> TableDef {
    TableDef {
        path: agg_dir(table.name),
        file_schema: table.file_schema(),
        partitions: vec![("date", arrow::datatypes::DataType::Date32)],
        description: format!("kvlake cold path: {}", table.name),
    }
}

/// Raw rows per daily chunk by default: about 300 MB of `events` in memory.
pub const DEFAULT_CHUNK_ROWS: u64 = 2_000_000;

/// Consecutive days grouped so each group holds about `budget` raw rows (a day is never
/// split: the daily definitions group by day, so a chunk's result is final for its days).
fn chunk_days(raw: &RawDays, days: &BTreeSet<i32>, budget: u64) -> Vec<Vec<i32>> {
    let mut chunks: Vec<Vec<i32>> = Vec::new();
    let mut rows = 0;
    for &day in days {
        let day_rows: u64 = raw.files_of(day).iter().map(|f| f.rows).sum();
        match chunks.last_mut() {
            Some(chunk) if rows + day_rows <= budget => {
                chunk.push(day);
                rows += day_rows;
            }
            _ => {
                chunks.push(vec![day]);
                rows = day_rows;
            }
        }
    }
    chunks
}

/// The rows of `day`, without the `date` column.
fn rows_of_day(
    table: &Table,
    batches: &[RecordBatch],
    day: i32,
    file_schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ColdError> {
    let wanted = Date32Array::new_scalar(day);
    let mut out = Vec::new();
    for batch in batches {
        let dates = batch
            .column_by_name("date")
            .ok_or_else(|| ColdError::output(table.name, "no `date` column"))?;
        let mask = eq(dates, &wanted).map_err(|e| ColdError::output(table.name, e))?;
        if mask.true_count() == 0 {
            continue;
        }
        let picked =
            filter_record_batch(batch, &mask).map_err(|e| ColdError::output(table.name, e))?;
        let columns = file_schema
            .fields()
            .iter()
            .map(|f| {
                picked.column_by_name(f.name()).cloned().ok_or_else(|| {
                    ColdError::output(table.name, format!("no `{}` column", f.name()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(
            RecordBatch::try_new(file_schema.clone(), columns)
                .map_err(|e| ColdError::output(table.name, e))?,
        );
    }
    Ok(out)
}

/// One Parquet file of `batches` (zstd; an empty file still carries the schema).
fn encode(table: &Table, schema: SchemaRef, batches: &[RecordBatch]) -> Result<Bytes, ColdError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| ColdError::output(table.name, e))?,
        ))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
        .map_err(|e| ColdError::output(table.name, e))?;
    if !batches.is_empty() {
        let all = concat_batches(&schema, batches).map_err(|e| ColdError::output(table.name, e))?;
        writer
            .write(&all)
            .map_err(|e| ColdError::output(table.name, e))?;
    }
    writer
        .close()
        .map_err(|e| ColdError::output(table.name, e))?;
    Ok(Bytes::from(buf))
}

fn now_rfc3339() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    kvlake_schemas::time::format_timestamp_micros(micros)
}
