//! The Delta definitions of the tables the hot path writes: `raw` and `deadletter`,
//! partitioned by the UTC `date` and `hour` of each row.

use arrow::datatypes::DataType;
use kvlake_schemas::deadletter::dead_letter_file_schema;
use kvlake_schemas::layout::{DEAD_LETTER_TABLE, RAW_TABLE};
use kvlake_schemas::raw::raw_file_schema;

use crate::delta::TableDef;

/// The raw table.
pub fn raw_table() -> TableDef {
    TableDef {
        path: RAW_TABLE.into(),
        file_schema: raw_file_schema(),
        partitions: vec![("date", DataType::Date32), ("hour", DataType::Int32)],
        description:
            "Key Vault AuditEvent records, one row each, with their source coordinates (kvlake raw)"
                .into(),
    }
}

/// The dead-letter table.
pub fn dead_letter_table() -> TableDef {
    TableDef {
        path: DEAD_LETTER_TABLE.into(),
        file_schema: dead_letter_file_schema(),
        partitions: vec![("date", DataType::Date32), ("hour", DataType::Int32)],
        description: "Messages and records kvlake could not decode, with the reason and the original bytes (kvlake deadletter)".into(),
    }
}

/// The alerts table the speed layer writes (`alerts/date=…/<alert_id>.parquet`, one row
/// per file, so that an alert's file is named by its id).
pub fn alerts_table() -> TableDef {
    TableDef {
        path: kvlake_schemas::alerts::ALERTS_TABLE.into(),
        file_schema: kvlake_schemas::alerts::alert_file_schema(),
        partitions: vec![("date", DataType::Date32)],
        description: "Detections the hot path raised in transit, each exactly once by alert_id, with the source coordinates of the triggering record (kvlake alerts)".into(),
    }
}
