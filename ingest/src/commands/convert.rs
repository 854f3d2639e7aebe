//! `kvlake convert`: archived diagnostic-log files into the lake.

use std::sync::Arc;

use anyhow::{Context, Result};
use kvlake_hotpath::{BatchLimits, Lake};

use crate::cli::ConvertArgs;
use crate::progress::Progress;

pub async fn run(args: &ConvertArgs) -> Result<()> {
    let lake = Lake::open(
        &args.lake,
        &args.storage_option,
        args.output_prefix.as_deref(),
    )
    .context("cannot open the lake")?;
    let writer = format!("convert-pid{}", std::process::id());
    let progress = Progress::new("convert", "files");
    let s = kvlake_hotpath::files::convert_with_progress(
        &args.inputs,
        &lake,
        &BatchLimits::default(),
        &writer,
        args.format,
        Arc::new(progress.clone()),
    )
    .await;
    progress.finish(if s.is_ok() { "done" } else { "stopped" });
    let s = s.context("convert stopped")?;
    println!(
        "converted {} files ({} already in the lake): {} rows, {} dead letters, {:.1} MB read, into {}",
        s.files,
        s.already_converted,
        s.raw_rows,
        s.dead_letter_rows,
        s.bytes as f64 / 1e6,
        lake.display()
    );
    Ok(())
}
