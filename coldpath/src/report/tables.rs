//! Reading the lake's Delta tables for the report: the live files of each table (from its
//! `_delta_log`, never a folder listing), limited to the days asked, decoded into memory.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kvlake_lake::{DeltaTable, Lake, TableDef};
use kvlake_schemas::time::parse_date;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::ReportError;

/// One table held in memory: every column, `date` (from the partition) first.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

fn def(path: &str) -> TableDef {
    TableDef {
        path: path.to_string(),
        file_schema: Arc::new(Schema::empty()),
        partitions: vec![("date", DataType::Date32)],
        description: String::new(),
    }
}

fn day_of(add: &kvlake_schemas::delta::Add) -> Option<i32> {
    let d = add.partition_values.get("date")?.as_deref()?;
    i32::try_from(parse_date(d)?).ok()
}

/// The days a date-partitioned table has live files for; `None` when it does not exist.
pub async fn days(lake: &Lake, path: &str) -> Result<Option<BTreeSet<i32>>, ReportError> {
    let table = DeltaTable::new(lake, def(path));
    if !table.exists().await? {
        return Ok(None);
    }
    let snap = table.load().await?;
    Ok(Some(snap.files.values().filter_map(day_of).collect()))
}

/// The rows of the table at `path` whose day is within `range` (inclusive; all days when
/// `None`), with `date` added. With `schema` (every column, `date` first) each column is
/// taken by name and cast to it; without, the columns of the files are kept (a table
/// whose schema this build does not know, such as the speed layer's `alerts`).
/// `None` when the table does not exist.
pub async fn load(
    lake: &Lake,
    path: &str,
    schema: Option<SchemaRef>,
    range: Option<(i32, i32)>,
) -> Result<Option<Loaded>, ReportError> {
    let table = DeltaTable::new(lake, def(path));
    if !table.exists().await? {
        return Ok(None);
    }
    let snap = table.load().await?;
    let wanted: Vec<(i32, String)> = snap
        .files
        .values()
        .filter_map(|a| day_of(a).map(|d| (d, a.path.clone())))
        .filter(|(d, _)| range.is_none_or(|(lo, hi)| *d >= lo && *d <= hi))
        .collect();
    let root = table.root();
    let files: Vec<(i32, Bytes)> = futures::stream::iter(wanted)
        .map(|(day, rel)| async move {
            let bytes = root
                .get(&rel)
                .await?
                .ok_or_else(|| ReportError::table(path, format!("live file {rel} is missing")))?;
            Ok::<_, ReportError>((day, bytes))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let name = path.to_string();
    tokio::task::spawn_blocking(move || decode(&name, schema, files))
        .await
        .map_err(|e| ReportError::table(path, e))?
        .map(Some)
}

fn decode(
    name: &str,
    schema: Option<SchemaRef>,
    mut files: Vec<(i32, Bytes)>,
) -> Result<Loaded, ReportError> {
    files.sort_by_key(|(d, _)| *d);
    let mut target = schema;
    let mut batches = Vec::new();
    for (day, bytes) in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| ReportError::table(name, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| ReportError::table(name, e))?;
            let schema = target
                .get_or_insert_with(|| {
                    let mut fields = vec![Field::new("date", DataType::Date32, true)];
                    fields.extend(
                        batch
                            .schema()
                            .fields()
                            .iter()
                            .filter(|f| f.name() != "date")
                            .map(|f| f.as_ref().clone().with_nullable(true)),
                    );
                    Arc::new(Schema::new(fields))
                })
                .clone();
            let columns = schema
                .fields()
                .iter()
                .map(|f| -> Result<ArrayRef, ReportError> {
                    if f.name() == "date" {
                        return Ok(Arc::new(Date32Array::from(vec![day; batch.num_rows()])));
                    }
                    match batch.column_by_name(f.name()) {
                        Some(c) => cast(c, f.data_type()).map_err(|e| {
                            ReportError::table(name, format!("column `{}`: {e}", f.name()))
                        }),
                        // A column newer files have and older ones do not.
                        None => Ok(new_null_array(f.data_type(), batch.num_rows())),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            batches.push(
                RecordBatch::try_new(schema, columns).map_err(|e| ReportError::table(name, e))?,
            );
        }
    }
    let schema = target.unwrap_or_else(|| {
        Arc::new(Schema::new(vec![Field::new(
            "date",
            DataType::Date32,
            true,
        )]))
    });
    Ok(Loaded { schema, batches })
}
