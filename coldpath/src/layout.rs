//! Where the cold path's tables live in the lake: `agg/<table>/`, a Delta table each,
//! partitioned by `date` (files `date=YYYY-MM-DD/part-<run>.parquet`).

/// Prefix of the aggregate tables.
pub const AGG_PREFIX: &str = "agg";

/// Folder of one table.
pub fn agg_dir(table: &str) -> String {
    format!("{AGG_PREFIX}/{table}")
}
