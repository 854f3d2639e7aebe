//! The Parquet writer settings every kvlake file shares (raw, dead letters, alerts, merged
//! and compacted files): compression, dictionaries and statistics, measured per column.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::{SCHEMA_VERSION, SCHEMA_VERSION_KEY};

/// Writer settings every kvlake Parquet file shares: zstd, row groups sized for scans,
/// statistics where readers prune, and the schema version in the footer.
pub fn writer_properties(row_group_rows: usize) -> WriterProperties {
    // Min/max of every value of every column cost as much as zstd on the whole file
    // (`schemas/benches/parquet_knobs.rs`: 44 → 28 ms for 20k rows without them), and on
    // ids, URIs and JSON text no reader can prune with them: only the columns below keep
    // them (and so their Delta statistics).
    let mut b = WriterProperties::builder().set_statistics_enabled(EnabledStatistics::None);
    for col in STATISTICS_COLUMNS {
        b = b.set_column_statistics_enabled(ColumnPath::from(*col), EnabledStatistics::Chunk);
    }
    // Nearly unique per row: a dictionary only costs memory and CPU there.
    for col in UNIQUE_COLUMNS {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*col), false);
    }
    // A handful of short values, or nearly always the same one: plain + zstd-1 is as small
    // as a dictionary and skips hashing every value into it (interning was a third of
    // the encoding).
    for col in PLAIN_COLUMNS {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*col), false);
    }
    // Dictionary-encoded columns with a handful of values are a few bytes per page;
    // zstd gains nothing there, and each compressed column chunk costs a compressor
    // and decompressor context, which dominates the cost of small files.
    for col in TINY_COLUMNS {
        b = b.set_column_compression(ColumnPath::from(*col), Compression::UNCOMPRESSED);
    }
    // zstd-1: as small as level 3 on these columns (measured), and faster to write.
    b.set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(row_group_rows.max(1024)))
        .set_created_by(format!("kvlake {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_VERSION_KEY.to_string(),
            SCHEMA_VERSION.to_string(),
        )]))
        .build()
}

/// Columns readers filter on (the time range; the report's and the cold path's filters on
/// operation, vault, status), and the source coordinates: their row-group statistics let
/// DuckDB, Spark and DataFusion skip row groups and Delta readers skip files.
pub const STATISTICS_COLUMNS: &[&str] = &[
    "time",
    "_enqueued_time",
    "_partition",
    "_offset",
    "operation_name",
    "vault_name",
    "http_status_code",
    "result_class",
    "seen_time",
    "reason",
];

/// Columns whose values are (nearly) unique per row: a dictionary only costs there.
/// Measured per column (`schemas/benches/parquet_knobs.rs`): ids, URIs, object versions
/// and the JSON text columns repeat enough that a dictionary makes them 2-7x smaller
/// and faster to write, so they keep it.
pub const UNIQUE_COLUMNS: &[&str] = &[
    "_offset",
    "_enqueued_time",
    "time",
    "correlation_id",
    "message",
    "original",
    "seen_time",
];

/// Columns with few distinct values, stored as dictionary indices without compression.
pub const TINY_COLUMNS: &[&str] = &[
    "operation_version",
    "is_access_policy_match",
    "is_rbac_authorized",
    "tls_version",
    "identity_type",
    "identity_app_id_acr",
    "subscription_id",
    "resource_group",
    "vault_name",
    "object_kind",
    "address_authorization_type",
    "trusted_service",
    "reason",
];

/// Columns with few distinct values where plain + zstd-1 measured faster than a
/// dictionary and no larger (`schemas/benches/parquet_knobs.rs`: per column alone, and
/// the whole file 849 → 841 KB for 20k generator records): dictionaries off, compressed.
/// Those that grew by a few KB each without their dictionary (`tls_version`,
/// `result_description`, `identity_type`, `identity_app_id_acr`, `operation_version`)
/// keep it.
pub const PLAIN_COLUMNS: &[&str] = &[
    "_source",
    "_partition",
    "_record_index",
    "category",
    "result_type",
    "result_signature",
    "http_status_code",
    "result_class",
    "identity_tenant_id",
    "identity_scope",
    "secret_properties",
    "key_properties",
    "certificate_properties",
    "nested_properties",
];
