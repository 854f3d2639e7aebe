//! Reading the cold path's tables back for assertions: every row of `agg/<table>/` as a map
//! of column name to a JSON value, `date` taken from the partition folder.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use arrow::array::{
    Array, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// One row: column → value (timestamps as UTC microseconds, dates as `YYYY-MM-DD`).
pub type Row = BTreeMap<String, Value>;

fn cell(array: &dyn Array, i: usize) -> Result<Value> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let any = array.as_any();
    Ok(match array.data_type() {
        DataType::Utf8 => Value::from(
            any.downcast_ref::<StringArray>()
                .context("utf8")?
                .value(i)
                .to_string(),
        ),
        DataType::Int64 => Value::from(any.downcast_ref::<Int64Array>().context("i64")?.value(i)),
        DataType::Int32 => Value::from(any.downcast_ref::<Int32Array>().context("i32")?.value(i)),
        DataType::Float64 => {
            Value::from(any.downcast_ref::<Float64Array>().context("f64")?.value(i))
        }
        DataType::Date32 => Value::from(kvlake_schemas::time::format_date(i64::from(
            any.downcast_ref::<Date32Array>().context("date")?.value(i),
        ))),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Value::from(
            any.downcast_ref::<TimestampMicrosecondArray>()
                .context("ts")?
                .value(i),
        ),
        other => bail!("unexpected column type {other}"),
    })
}

/// Every row of one table, in file order (days ascending): the files its Delta log
/// lists (the test kit's own replay), the day from each file's `date=` folder.
pub fn read_table(lake: &Path, table: &str) -> Result<Vec<Row>> {
    let root = lake.join("agg").join(table);
    if !root.join("_delta_log").is_dir() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for file in crate::delta::live_files(&root)? {
        let date = file
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("date="))
            .with_context(|| format!("{} is not in a date= folder", file.display()))?
            .to_string();
        let reader = std::fs::File::open(&file)?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(reader)?.build()? {
            let batch = batch?;
            for i in 0..batch.num_rows() {
                let mut row = Row::new();
                row.insert("date".into(), Value::from(date.as_str()));
                for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
                    row.insert(f.name().clone(), cell(col.as_ref(), i)?);
                }
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// True when both values are equal, floats within a relative 1e-9 (summation order may
/// differ between runs on several threads).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        _ => a == b,
    }
}

/// Describes the first difference between two tables, or `None` when they hold the same rows
/// in the same order.
pub fn difference(a: &[Row], b: &[Row]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} rows against {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.len() != y.len()
            || x.iter()
                .any(|(k, v)| !y.get(k).is_some_and(|w| same_value(v, w)))
        {
            return Some(format!("row {i} differs:\n  {x:?}\n  {y:?}"));
        }
    }
    None
}
