//! The alerts table's columns: what the speed layer raised, one row per alert, with the
//! source coordinates of the record that triggered it (rows are written by `hotpath::speed`).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Path of the alerts table under the lake root.
pub const ALERTS_TABLE: &str = "alerts";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Columns of the alerts table's files (`date` is the partition, in the path).
pub fn alert_file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("subject_type", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("vault_name", DataType::Utf8, true),
        Field::new("identity", DataType::Utf8, true),
        Field::new("caller_object_id", DataType::Utf8, true),
        Field::new("ip", DataType::Utf8, true),
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("observed", DataType::Float64, false),
        Field::new("threshold", DataType::Float64, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("detected_at", ts(), false),
        Field::new("event_time", ts(), true),
        Field::new("_source", DataType::Utf8, true),
        Field::new("_partition", DataType::Int32, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new("_record_index", DataType::Int32, true),
    ]))
}
