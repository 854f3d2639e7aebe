//! DataFusion over the lake: registers the committed raw files, the daily tables' history
//! and in-memory results as SQL tables, runs a definition, and shapes its result.

use std::sync::Arc;

use arrow::array::{Date32Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{SessionConfig, ident};
use object_store::ObjectStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use url::Url;

use crate::definitions::{EVENTS_SQL, Table};
use crate::error::ColdError;

/// The URL the lake is registered under inside DataFusion.
const LAKE_URL: &str = "kvlake://lake/";

/// A DataFusion session whose `kvlake://lake/` is the lake root.
pub struct Engine {
    ctx: SessionContext,
    partitions: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn parquet_options() -> ListingOptions {
    ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet")
}

impl Engine {
    /// A session over `store` below `root`, using `threads` partitions per query.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        threads: usize,
    ) -> Result<Engine, ColdError> {
        let config = SessionConfig::new()
            .with_target_partitions(threads.max(1))
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        let url = Url::parse(LAKE_URL).map_err(|e| ColdError::output("engine", e))?;
        let lake: Arc<dyn ObjectStore> = if root.as_ref().is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, root))
        };
        ctx.register_object_store(&url, lake);
        Ok(Engine {
            ctx,
            partitions: threads.max(1),
        })
    }

    /// Registers `raw` as exactly these committed files (paths relative to the lake root)
    /// and `events` as the derived rows, held in memory: every daily definition reads
    /// `events` several times, and one scan of the files beats five.
    pub async fn register_raw(&self, files: &[String]) -> Result<(), ColdError> {
        let schema = kvlake_schemas::raw::raw_file_schema();
        let table: Arc<dyn datafusion::datasource::TableProvider> = if files.is_empty() {
            Arc::new(
                MemTable::try_new(schema, vec![vec![]]).map_err(|e| ColdError::query("raw", e))?,
            )
        } else {
            let urls = files
                .iter()
                .map(|f| ListingTableUrl::parse(format!("{LAKE_URL}{f}")))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ColdError::query("raw", e))?;
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(parquet_options())
                .with_schema(schema);
            Arc::new(ListingTable::try_new(config).map_err(|e| ColdError::query("raw", e))?)
        };
        self.replace("raw", table)?;
        let events = self
            .ctx
            .sql(EVENTS_SQL)
            .await
            .map_err(|e| ColdError::query("events", e))?;
        self.hold_in_memory("events", events).await
    }

    /// Runs `df` once and registers its result under `name`, in a few large batches.
    async fn hold_in_memory(
        &self,
        name: &str,
        df: datafusion::dataframe::DataFrame,
    ) -> Result<(), ColdError> {
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|e| ColdError::query(name, e))?;
        let partitions =
            rebatch(&schema, batches, self.partitions).map_err(|e| ColdError::output(name, e))?;
        let table = MemTable::try_new(schema, partitions).map_err(|e| ColdError::query(name, e))?;
        self.replace(name, Arc::new(table))
    }

    /// Registers a table's live files (all days, each with its day) under its own name,
    /// decoded into memory: the history definitions join them several times, and they
    /// are small.
    pub async fn register_history(
        &self,
        table: &Table,
        files: Vec<(i32, Bytes)>,
    ) -> Result<(), ColdError> {
        let schema = table.schema();
        let name = table.name;
        let target = schema.clone();
        let batches = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (day, bytes) in files {
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| ColdError::output(name, e))?;
                for batch in reader {
                    let batch = batch.map_err(|e| ColdError::output(name, e))?;
                    let columns = target
                        .fields()
                        .iter()
                        .map(|f| match f.name().as_str() {
                            "date" => Ok(Arc::new(Date32Array::from(vec![day; batch.num_rows()]))
                                as arrow::array::ArrayRef),
                            n => batch.column_by_name(n).cloned().ok_or_else(|| {
                                ColdError::output(name, format!("a file has no `{n}` column"))
                            }),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    out.push(
                        RecordBatch::try_new(target.clone(), columns)
                            .map_err(|e| ColdError::output(name, e))?,
                    );
                }
            }
            Ok::<_, ColdError>(out)
        })
        .await
        .map_err(|e| ColdError::output(name, e))??;
        let table_provider =
            MemTable::try_new(schema, vec![batches]).map_err(|e| ColdError::query(name, e))?;
        let df = self
            .ctx
            .read_table(Arc::new(table_provider))
            .map_err(|e| ColdError::query(name, e))?;
        self.hold_in_memory(name, df).await
    }

    /// Registers results held in memory under `name`.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(), ColdError> {
        let table =
            MemTable::try_new(schema, vec![batches]).map_err(|e| ColdError::query(name, e))?;
        self.replace(name, Arc::new(table))
    }

    fn replace(
        &self,
        name: &str,
        table: Arc<dyn datafusion::datasource::TableProvider>,
    ) -> Result<(), ColdError> {
        self.ctx
            .deregister_table(name)
            .map_err(|e| ColdError::query(name, e))?;
        self.ctx
            .register_table(name, table)
            .map(|_| ())
            .map_err(|e| ColdError::query(name, e))
    }

    /// Runs `sql` (already filled in) for `table`, sorted by the table's sort keys and
    /// cast to its schema.
    pub async fn run(&self, table: &Table, sql: &str) -> Result<Vec<RecordBatch>, ColdError> {
        let df = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| ColdError::query(table.name, e))?;
        let mut keys = vec![ident("date").sort(true, true)];
        keys.extend(table.sort.iter().map(|k| ident(*k).sort(true, true)));
        let batches = df
            .sort(keys)
            .map_err(|e| ColdError::query(table.name, e))?
            .collect()
            .await
            .map_err(|e| ColdError::query(table.name, e))?;
        let schema = table.schema();
        batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(table, &schema, b))
            .collect()
    }
}

/// Rows per batch of the in-memory `events`.
const BATCH_ROWS: usize = 64 * 1024;

/// Regroups many small batches (one per raw file: hourly files of a quiet lake hold a few
/// hundred rows) into large ones spread over `partitions`: a plan over hundreds of tiny
/// partitions spends its time in overhead, not in the data.
fn rebatch(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    partitions: usize,
) -> Result<Vec<Vec<RecordBatch>>, arrow::error::ArrowError> {
    let mut out: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions.max(1)];
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    let mut next = 0;
    let mut flush = |pending: &mut Vec<RecordBatch>, out: &mut Vec<Vec<RecordBatch>>| {
        if pending.is_empty() {
            return Ok(());
        }
        let merged = arrow::compute::concat_batches(schema, pending.iter())?;
        pending.clear();
        let slot = next % out.len();
        next += 1;
        out[slot].push(merged);
        Ok::<_, arrow::error::ArrowError>(())
    };
    for batch in batches {
        rows += batch.num_rows();
        pending.push(batch);
        if rows >= BATCH_ROWS {
            flush(&mut pending, &mut out)?;
            rows = 0;
        }
    }
    flush(&mut pending, &mut out)?;
    Ok(out)
}

/// Picks the table's columns by name and casts each to its declared type, so that both
/// engines' small type differences (Int32 against Int64, timestamp units) never reach a file.
fn conform(
    table: &Table,
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, ColdError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                ColdError::output(
                    table.name,
                    format!("the definition returns no `{}` column", field.name()),
                )
            })?;
            cast(column, field.data_type()).map_err(|e| ColdError::output(table.name, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| ColdError::output(table.name, e))
}
