//! Per-file statistics for Delta `add` actions (numRecords, minValues, maxValues,
//! nullCount), read from the Parquet footer kvlake just wrote, so readers can skip files.

use arrow::datatypes::{DataType, Schema};
use bytes::Bytes;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value};

use super::DeltaFormatError;
use crate::time::{format_date, format_timestamp_micros};

/// Statistics JSON of a Parquet file in memory, typed by the table's `file_schema`.
pub fn stats_of_file(bytes: &Bytes, file_schema: &Schema) -> Result<String, DeltaFormatError> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(|e| DeltaFormatError::Footer(e.to_string()))?;
    Ok(stats_of_metadata(&meta, file_schema))
}

/// Statistics JSON from a parsed footer. A column gets min/max only when every row group
/// has exact ones (a truncated string bound is not a bound), and a null count only when
/// every row group has one. Booleans and binaries get null counts only, as in Spark.
pub fn stats_of_metadata(meta: &ParquetMetaData, file_schema: &Schema) -> String {
    let rows: i64 = meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let (mut mins, mut maxs, mut nulls) = (Map::new(), Map::new(), Map::new());
    for field in file_schema.fields() {
        let name = field.name();
        let mut acc = Bounds::default();
        let mut complete = !meta.row_groups().is_empty();
        for rg in meta.row_groups() {
            let col = rg
                .columns()
                .iter()
                .find(|c| c.column_path().parts() == [name.as_str()]);
            match col.and_then(|c| c.statistics()) {
                Some(s) => acc.merge(s, field.data_type()),
                None => complete = false,
            }
        }
        if !complete {
            continue;
        }
        if let Some(n) = acc.nulls {
            nulls.insert(name.clone(), n.into());
        }
        if acc.bounded {
            if let Some(v) = acc.min.and_then(|v| v.render(field.data_type(), false)) {
                mins.insert(name.clone(), v);
            }
            if let Some(v) = acc.max.and_then(|v| v.render(field.data_type(), true)) {
                maxs.insert(name.clone(), v);
            }
        }
    }
    serde_json::json!({
        "numRecords": rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls,
    })
    .to_string()
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Bound {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Bound {
    fn render(self, t: &DataType, upper: bool) -> Option<Value> {
        Some(match (self, t) {
            // Delta's timestamp statistics have millisecond precision: round the lower
            // bound down and the upper bound up, so they stay bounds.
            (Bound::Int(us), DataType::Timestamp(..)) => {
                let ms = if upper {
                    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
                } else {
                    us.div_euclid(1000)
                };
                let text = format_timestamp_micros(ms * 1000);
                // `…SS.mmm000Z` → `…SS.mmmZ`.
                Value::String(format!("{}Z", &text[..text.len() - 4]))
            }
            (Bound::Int(d), DataType::Date32) => Value::String(format_date(d)),
            (Bound::Int(i), _) => i.into(),
            (Bound::Float(f), _) => serde_json::Number::from_f64(f)?.into(),
            (Bound::Text(s), _) => s.into(),
        })
    }
}

#[derive(Debug)]
struct Bounds {
    min: Option<Bound>,
    max: Option<Bound>,
    nulls: Option<u64>,
    /// False once a row group lacks exact bounds for a column that has values.
    bounded: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min: None,
            max: None,
            nulls: Some(0),
            bounded: true,
        }
    }
}

impl Bounds {
    fn merge(&mut self, s: &Statistics, t: &DataType) {
        self.nulls = match (self.nulls, s.null_count_opt()) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        let exact = s.min_is_exact() && s.max_is_exact();
        let pair = match (s, t) {
            (Statistics::Int32(v), _) => v
                .min_opt()
                .zip(v.max_opt())
                .map(|(a, b)| (Bound::Int(i64::from(*a)), Bound::Int(i64::from(*b)))),
            (Statistics::Int64(v), _) => v
                .min_opt()
                .zip(v.max_opt())
                .map(|(a, b)| (Bound::Int(*a), Bound::Int(*b))),
            (Statistics::Double(v), _) => v
                .min_opt()
                .zip(v.max_opt())
                .filter(|(a, b)| !a.is_nan() && !b.is_nan())
                .map(|(a, b)| (Bound::Float(*a), Bound::Float(*b))),
            (Statistics::ByteArray(v), DataType::Utf8 | DataType::LargeUtf8) => {
                let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
                v.min_bytes_opt()
                    .and_then(text)
                    .zip(v.max_bytes_opt().and_then(text))
                    .map(|(a, b)| (Bound::Text(a), Bound::Text(b)))
            }
            _ => None,
        };
        match pair {
            Some((lo, hi)) if exact => {
                self.min = Some(match self.min.take() {
                    Some(m) if m <= lo => m,
                    _ => lo,
                });
                self.max = Some(match self.max.take() {
                    Some(m) if m >= hi => m,
                    _ => hi,
                });
            }
            Some(_) => self.bounded = false,
            // No bounds recorded: a row group of nulls only (or a type without bounds).
            None if s.min_bytes_opt().is_none() => {}
            None => self.bounded = false,
        }
    }
}

/// The `numRecords` of a statistics JSON, without building the rest of it (the bounds
/// are skipped by serde, not allocated: a year of raw files is thousands of these).
pub fn num_records(stats: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Rows {
        #[serde(rename = "numRecords")]
        num_records: Option<u64>,
    }
    serde_json::from_str::<Rows>(stats).ok()?.num_records
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, TimeUnit};
    use parquet::arrow::ArrowWriter;

    use super::*;

    #[test]
    fn stats_bound_every_column_and_count_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![5, -2, 9])),
                Arc::new(StringArray::from(vec![Some("b"), None, Some("a")])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_500, 1_000, 2_001]).with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        let bytes = Bytes::from(w.into_inner().unwrap());
        let v: Value = serde_json::from_str(&stats_of_file(&bytes, &schema).unwrap()).unwrap();
        assert_eq!(v["numRecords"], 3);
        assert_eq!(v["minValues"]["n"], -2);
        assert_eq!(v["maxValues"]["n"], 9);
        assert_eq!(v["minValues"]["s"], "a");
        assert_eq!(v["maxValues"]["s"], "b");
        assert_eq!(v["nullCount"]["s"], 1);
        assert_eq!(v["nullCount"]["n"], 0);
        assert_eq!(v["minValues"]["t"], "1970-01-01T00:00:00.001Z");
        // 2.001 ms rounds up to 3 ms: still an upper bound.
        assert_eq!(v["maxValues"]["t"], "1970-01-01T00:00:00.003Z");
    }
}
