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
use crate::encode::FinishedBatch;
use crate::encode::OpenBatch;
use crate::error::HotError;
use crate::lake::Lake;
use crate::log::PartitionLog;
use crate::messages::Msg;
use crate::partition::{BatchMeta, Committed, Shared, write_batch};
use crate::progress::Progress;
use kvlake_schemas::Shape;

use crate::publish::Tables;
use crate::spans::BatchSpans;
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
    convert_with_progress(
        inputs,
        lake,
        limits,
        writer_id,
        None,
        crate::progress::none(),
    )
    .await
}

/// [`convert`], decoding every record as `shape` when one is given (else each record's
/// shape is detected), telling `progress` the number of files, the file being read,
/// each committed batch's rows and each finished file.
pub async fn convert_with_progress(
    inputs: &[PathBuf],
    lake: &Lake,
    limits: &BatchLimits,
    writer_id: &str,
    shape: Option<Shape>,
    progress: Progress,
) -> Result<ConvertSummary, HotError> {
    let files = expand_inputs(inputs).map_err(|e| HotError::LakeConfig {
        url: "input".into(),
        detail: e.to_string(),
    })?;
    progress.add_total(files.len() as u64);
    let tables = Tables::open(lake).await?;
    let mut summary = ConvertSummary::default();
    for path in files {
        progress.working_on(&path.display().to_string());
        let log_name = file_log_name(&path);
        let log = PartitionLog::new(lake.clone(), &log_name, 0);
        let resume = match log.resume_published(&tables).await? {
            Resume::Fresh => FileResume {
                seq: 0,
                from_line: 1,
                rerun_end: None,
            },
            Resume::From { seq, offset } => FileResume {
                seq,
                from_line: offset,
                rerun_end: None,
            },
            Resume::Rerun(plan) => FileResume {
                seq: plan.seq,
                from_line: plan.start_offset,
                rerun_end: Some(plan.end_offset),
            },
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
            queued_bytes: None,
            progress: progress.clone(),
            tables: tables.clone(),
            shape,
            speed: None,
            reading_done: None,
        };
        let source = path.display().to_string();
        let handle = tokio::runtime::Handle::current();
        let limits = limits.clone();
        let result = tokio::task::spawn_blocking(move || {
            convert_file(&path, &source, resume, shared, log, &limits, &handle)
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
        progress.advance(1, 0);
    }
    Ok(summary)
}

/// Where a file's conversion resumes, from its log.
#[derive(Debug, Clone, Copy)]
struct FileResume {
    /// Next plan's sequence number.
    seq: u64,
    /// First line not yet in a committed batch.
    from_line: i64,
    /// An uncommitted plan's end: the first batch must close exactly there.
    rerun_end: Option<i64>,
}

/// A batch of a file being built, with the line it starts at.
struct FileBatch<'a> {
    shared: &'a Shared,
    log: &'a PartitionLog,
    handle: &'a tokio::runtime::Handle,
    source: &'a str,
    limits: &'a BatchLimits,
    max_message_bytes: usize,
    open: OpenBatch,
    start: i64,
    seq: u64,
    now: i64,
    summary: ConvertSummary,
    spans: BatchSpans,
}

impl FileBatch<'_> {
    fn add(&mut self, msgs: &[Msg]) -> Result<(), HotError> {
        let _span = self.spans.decode(msgs.len()).entered();
        Ok(self.open.add(msgs, self.source, 0, self.now)?)
    }

    /// Plan → files → commit for lines `[start, end)`.
    fn close(&mut self, end: i64) -> Result<(), HotError> {
        let fresh = OpenBatch::new(self.max_message_bytes, self.limits.row_group_rows)
            .with_shape(self.shared.shape);
        let batch = std::mem::replace(&mut self.open, fresh);
        let mut spans = std::mem::replace(&mut self.spans, BatchSpans::open(self.source, 0, end));
        let (bytes, messages) = (batch.message_bytes(), batch.messages());
        spans.closed(self.seq, self.start, end, messages);
        let plan = file_plan(self.shared, self.seq, self.start, end, messages, self.now);
        let finished = spans.flush().in_scope(|| batch.finish());
        let meta = BatchMeta {
            message_bytes: bytes,
            opened_at: tokio::time::Instant::now(),
            revoked: None,
            in_flight: Vec::new(),
            span: spans.batch,
            // convert counts progress in files, not lines
            progress_units: 0,
        };
        let c = commit(
            self.handle,
            self.shared,
            self.log,
            plan,
            finished,
            meta,
            self.source,
        )?;
        self.summary.raw_rows += c.raw_rows;
        self.summary.dead_letter_rows += c.dead_letter_rows;
        self.summary.bytes += c.bytes;
        self.seq += 1;
        self.start = end;
        Ok(())
    }
}

/// Reads one file on a blocking thread, a chunk of lines at a time, so memory holds one
/// batch, not the file; batches are written through the runtime handle.
fn convert_file(
    path: &Path,
    source: &str,
    resume: FileResume,
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
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let blank = |l: &[u8]| l.iter().all(u8::is_ascii_whitespace);
    // The first non-blank line decides: a JSON value of its own means JSON lines,
    // anything else is one document (a pretty-printed {"records": [...]}).
    let mut line_no = 0i64;
    let mut first = Vec::new();
    loop {
        first.clear();
        if reader.read_until(b'\n', &mut first).map_err(io_err)? == 0 {
            first.clear();
            break;
        }
        line_no += 1;
        // A UTF-8 byte-order mark (files saved by Windows tools) is not part of line 1.
        if line_no == 1 && first.starts_with(b"\xEF\xBB\xBF") {
            first = first.split_off(3);
        }
        if !blank(&first) {
            break;
        }
    }
    let is_lines =
        first.is_empty() || serde_json::from_slice::<serde::de::IgnoredAny>(&first).is_ok();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let max_message_bytes = if is_lines {
        limits.max_message_bytes
    } else {
        usize::MAX
    };
    let mut batch = FileBatch {
        shared: &shared,
        log: &log,
        handle,
        source,
        limits,
        max_message_bytes,
        open: OpenBatch::new(max_message_bytes, limits.row_group_rows).with_shape(shared.shape),
        start: resume.from_line,
        seq: resume.seq,
        now,
        summary: ConvertSummary::default(),
        spans: BatchSpans::open(source, 0, resume.from_line),
    };
    if !is_lines {
        // One document is one message at line 1; a file that grew later is not read again.
        if resume.from_line > 1 {
            return Ok(None);
        }
        reader.read_to_end(&mut first).map_err(io_err)?;
        batch.add(&[Msg {
            offset: 1,
            timestamp_ms: None,
            payload: first,
        }])?;
        batch.close(2)?;
        return Ok(Some(batch.summary));
    }
    let mut rerun_end = resume.rerun_end;
    let mut chunk: Vec<Msg> = Vec::with_capacity(1024);
    let mut pending = (!first.is_empty()).then_some((line_no, first));
    let mut buf = Vec::new();
    loop {
        let next = match pending.take() {
            Some(l) => Some(l),
            None => {
                buf.clear();
                if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
                    None
                } else {
                    line_no += 1;
                    Some((line_no, std::mem::take(&mut buf)))
                }
            }
        };
        let Some((n, line)) = next else { break };
        if n < resume.from_line || blank(&line) {
            continue;
        }
        if let Some(end) = rerun_end.filter(|e| n >= *e) {
            batch.add(&std::mem::take(&mut chunk))?;
            batch.close(end)?;
            rerun_end = None;
        }
        chunk.push(Msg {
            offset: n,
            timestamp_ms: None,
            payload: line,
        });
        if chunk.len() == 1024 {
            batch.add(&std::mem::take(&mut chunk))?;
            if rerun_end.is_none() && batch.open.memory_bytes() >= limits.file_target_bytes {
                batch.close(n + 1)?;
            }
        }
    }
    batch.add(&chunk)?;
    let end = rerun_end.unwrap_or(line_no + 1).max(batch.start);
    if end == batch.start && batch.open.messages() == 0 {
        // Nothing after the last batch: converted before (or just now, up to EOF).
        return Ok((batch.seq != resume.seq).then_some(batch.summary));
    }
    batch.close(end)?;
    tracing::info!(
        file = source,
        rows = batch.summary.raw_rows,
        dead_letters = batch.summary.dead_letter_rows,
        "file converted"
    );
    Ok(Some(batch.summary))
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
    finished: FinishedBatch,
    meta: BatchMeta,
    source: &str,
) -> Result<Committed, HotError> {
    let c = handle.block_on(write_batch(
        shared.clone(),
        log.clone(),
        plan,
        finished,
        meta,
    ))?;
    if let Some(by) = &c.lost_to {
        return Err(HotError::Task(format!(
            "{source}: another writer ({by}) is converting this file"
        )));
    }
    Ok(c)
}
