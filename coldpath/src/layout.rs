//! Where the cold path's tables live in the lake: `agg/<table>/date=YYYY-MM-DD/part-00000.parquet`,
//! one file per table and day, so replacing a day is one write.

use kvlake_schemas::time::format_date;

/// Prefix of the aggregate tables.
pub const AGG_PREFIX: &str = "agg";

/// Folder of one table.
pub fn agg_dir(table: &str) -> String {
    format!("{AGG_PREFIX}/{table}")
}

/// The one file of `table` for `day`.
pub fn agg_file(table: &str, day: i32) -> String {
    format!(
        "{}/date={}/part-00000.parquet",
        agg_dir(table),
        format_date(i64::from(day))
    )
}
