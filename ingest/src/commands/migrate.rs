//! `kvlake migrate`: a lake written by a kvlake before Delta tables, turned into Delta
//! tables in place; the checkpoint log goes on from where it was.

use anyhow::{Context, Result};
use kvlake_coldpath::TABLES;
use kvlake_coldpath::job::agg_table;

use crate::cli::MigrateArgs;

pub async fn run(args: &MigrateArgs) -> Result<()> {
    let lake = super::cold::open_lake(&args.lake).await?;
    let folders: Vec<_> = TABLES.iter().map(agg_table).collect();
    let report = kvlake_hotpath::migrate::migrate(&lake, &folders)
        .await
        .context("migration stopped (run it again: it resumes)")?;
    println!(
        "migrate: {} checkpoint-log commits read in {}",
        report.commits,
        lake.display()
    );
    for (table, files) in &report.files {
        println!("  {table:<24} {files:>7} files now in its Delta log");
    }
    println!(
        "the lake's tables are Delta tables; `kvlake hot` and `kvlake cold` carry on from here"
    );
    Ok(())
}
