//! The file source: archived diagnostic logs (JSON lines `PT1H.json` or envelopes,
//! optionally gzip) into the same tables and the same kind of checkpoint log as the stream.
//!
//! Each input file gets its own log (`_kvlake/log/file-<hash>/`), with line numbers as
//! offsets, so converting a file twice writes nothing the second time.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvlake_schemas::checkpoint::Resume;
use tokio::sync::Semaphore;

use crate::config::BatchLimits;
use crate::encode::EncodedFile;
use crate::encode::OpenBatch;
use crate::error::HotError;
use crate::lake::Lake;
use crate::log::PartitionLog;
use crate::messages::Msg;
use crate::partition::{Committed, Shared, write_batch};
use kvlake_schemas::checkpoint::{BatchPlan, LOG_FORMAT_VERSION};
use kvlake_schemas::time::format_timestamp_micros;

/// What `convert` did.
#[derive(Debug, Clone, Default)]
pub struct ConvertSummary {
    /// Files converted by this run.
    pub files: u64,
    /// Files already in the lake, skipped.
    pub already_converted: u64,
    /// Raw rows written.
    pub raw_rows: u64,
    /// Dead-letter rows written.
    pub dead_letter_rows: u64,
    /// Input bytes read.
    pub bytes: u64,
}

/// Expands folders (recursively) into the files under them, sorted.
pub fn expand_inputs(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut stack = vec![input.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let path = entry?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        out.push(path);
                    }
                }
            }
        } else if input.exists() {
            out.push(input.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", input.display()),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// A stable log name for a file: FNV-1a of its absolute path.
pub fn file_log_name(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.to_string_lossy().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("file-{h:016x}")
}

/// Converts files into the lake.
pub async fn convert(
    inputs: &[PathBuf],
    lake: &Lake,
    limits: &BatchLimits,
    writer_id: &str,
) -> Result<ConvertSummary, HotError> {
    let files = expand_inputs(inputs).map_err(|e| HotError::LakeConfig {
        url: "input".into(),
        detail: e.to_string(),
    })?;
    let mut summary = ConvertSummary::default();
    for path in files {
        let log_name = file_log_name(&path);
        let log = PartitionLog::new(lake.clone(), &log_name, 0);
        let (seq, from_line) = match log.resume().await? {
            Resume::Fresh => (0, 1),
            Resume::From { seq, offset } => (seq, offset),
            Resume::Rerun(plan) => (plan.seq, plan.start_offset),
        };
        let shared = Shared {
            topic: log_name.clone(),
            lake: lake.clone(),
            limits: limits.clone(),
            file_target_bytes: limits.file_target_bytes,
            flush_rows: 8192,
            consumer: None,
            encode_permits: Arc::new(Semaphore::new(1)),
            starting_timestamp_ms: None,
            ending_timestamp_ms: None,
            writer_id: writer_id.to_string(),
            commit_kafka_offsets: false,
        };
        let source = path.display().to_string();
        let handle = tokio::runtime::Handle::current();
        let limits = limits.clone();
        let result = tokio::task::spawn_blocking(move || {
            convert_file(
                &path, &source, from_line, seq, shared, log, &limits, &handle,
            )
        })
        .await
        .map_err(|e| HotError::Task(e.to_string()))??;
        match result {
            None => summary.already_converted += 1,
            Some(s) => {
                summary.files += 1;
                summary.raw_rows += s.raw_rows;
                summary.dead_letter_rows += s.dead_letter_rows;
                summary.bytes += s.bytes;
            }
        }
    }
    Ok(summary)
}

/// Reads one file on a blocking thread; batches are written through the runtime handle.
#[allow(clippy::too_many_arguments)]
fn convert_file(
    path: &Path,
    source: &str,
    from_line: i64,
    mut seq: u64,
    shared: Shared,
    log: PartitionLog,
    limits: &BatchLimits,
    handle: &tokio::runtime::Handle,
) -> Result<Option<ConvertSummary>, HotError> {
    let io_err = |e: std::io::Error| HotError::LakeConfig {
        url: path.display().to_string(),
        detail: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    while reader.read_until(b'\n', &mut buf).map_err(io_err)? > 0 {
        lines.push(std::mem::take(&mut buf));
    }
    let total_lines = lines.len() as i64;
    if from_line > total_lines {
        return Ok(None);
    }
    // JSON lines when the first line is a JSON value of its own; otherwise one document.
    let first = lines
        .iter()
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let is_lines = first.is_none_or(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
    let msgs: Vec<Msg> = if is_lines {
        lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| Msg {
                offset: i as i64 + 1,
                timestamp_ms: None,
                payload: l,
            })
            .filter(|m| m.offset >= from_line && !m.payload.iter().all(u8::is_ascii_whitespace))
            .collect()
    } else {
        vec![Msg {
            offset: 1,
            timestamp_ms: None,
            payload: lines.concat(),
        }]
    };
    let max_message_bytes = if is_lines {
        limits.max_message_bytes
    } else {
        usize::MAX
    };
    let mut summary = ConvertSummary::default();
    let mut start = from_line;
    let mut open = OpenBatch::new(max_message_bytes, limits.row_group_rows);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let n = msgs.len();
    for (i, chunk) in msgs.chunks(1024).enumerate() {
        open.add(chunk, source, 0, now)?;
        let last = i * 1024 + chunk.len() == n;
        if last || open.memory_bytes() >= limits.file_target_bytes {
            let end = if last {
                total_lines.max(start) + 1
            } else {
                chunk.last().map_or(start, |m| m.offset + 1)
            };
            let batch = std::mem::replace(
                &mut open,
                OpenBatch::new(max_message_bytes, limits.row_group_rows),
            );
            let (bytes, messages) = (batch.message_bytes(), batch.messages());
            let plan = file_plan(&shared, seq, start, end, messages, now);
            let c = commit(handle, &shared, &log, plan, batch.finish()?, bytes, source)?;
            summary.raw_rows += c.raw_rows;
            summary.dead_letter_rows += c.dead_letter_rows;
            summary.bytes += c.bytes;
            seq += 1;
            start = end;
        }
    }
    if n == 0 {
        // An empty file still gets a commit, so it counts as converted.
        let plan = file_plan(&shared, seq, start, total_lines + 1, 0, now);
        commit(handle, &shared, &log, plan, Vec::new(), 0, source)?;
    }
    tracing::info!(
        file = source,
        rows = summary.raw_rows,
        dead_letters = summary.dead_letter_rows,
        "file converted"
    );
    Ok(Some(summary))
}

/// The plan of one batch of a file: line numbers are the offsets.
fn file_plan(
    shared: &Shared,
    seq: u64,
    start: i64,
    end: i64,
    messages: u64,
    now: i64,
) -> BatchPlan {
    BatchPlan {
        version: LOG_FORMAT_VERSION,
        topic: shared.topic.clone(),
        partition: 0,
        seq,
        start_offset: start,
        end_offset: end,
        messages,
        writer: shared.writer_id.clone(),
        planned_at: format_timestamp_micros(now),
    }
}

/// Plan → files → commit for a file batch, from the blocking thread reading the file.
fn commit(
    handle: &tokio::runtime::Handle,
    shared: &Shared,
    log: &PartitionLog,
    plan: BatchPlan,
    files: Vec<EncodedFile>,
    bytes: u64,
    source: &str,
) -> Result<Committed, HotError> {
    let c = handle.block_on(write_batch(
        shared.clone(),
        log.clone(),
        plan,
        files,
        bytes,
        None,
    ))?;
    if let Some(by) = &c.lost_to {
        return Err(HotError::Task(format!(
            "{source}: another writer ({by}) is converting this file"
        )));
    }
    Ok(c)
}
