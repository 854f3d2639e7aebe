//! Decoding of one open batch on a blocking thread (messages in, Arrow rows per table
//! out), and the Parquet encoding of rows into one file per hour partition.

use std::collections::BTreeMap;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{Date32Type, Int32Type, SchemaRef};
use bytes::Bytes;
use kvlake_schemas::deadletter::dead_letter_file_schema;
use kvlake_schemas::delta::stats::stats_of_file;
use kvlake_schemas::layout::{DEAD_LETTER_TABLE, RAW_TABLE};
use kvlake_schemas::raw::raw_file_schema;
use kvlake_schemas::{DecodeOptions, Decoder, Shape, SourceCoords};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

pub use kvlake_schemas::writer::writer_properties;

use crate::messages::Msg;

/// One finished Parquet file of a batch, still in memory.
#[derive(Debug)]
pub struct EncodedFile {
    /// `raw` or `deadletter`.
    pub table: &'static str,
    /// Partition day (since epoch).
    pub day: i32,
    /// Partition hour.
    pub hour: i32,
    /// The file.
    pub bytes: Bytes,
    /// Rows in it.
    pub rows: u64,
    /// Its Delta statistics, read back from the footer just written.
    pub stats: Option<String>,
}

/// The decoded rows of one table in a closed batch (`date`/`hour` columns last).
#[derive(Debug)]
pub struct StagedRows {
    /// `raw` or `deadletter`.
    pub table: &'static str,
    /// The rows, in source order.
    pub batches: Vec<RecordBatch>,
    /// How many.
    pub rows: u64,
}

/// A closed batch: its rows per table, and what the metrics need to know of it.
#[derive(Debug, Default)]
pub struct FinishedBatch {
    /// Rows per table.
    pub staged: Vec<StagedRows>,
    /// Dead letters by reason code.
    pub dead_letter_reasons: BTreeMap<String, u64>,
}

/// A batch being built: decoder output is kept as Arrow, per table, until the batch
/// closes. Its rows are staged as Arrow IPC and encoded to Parquet only when the table's
/// publisher merges every partition's batch of the same hour into one file
/// (`publish::merge`), so no Parquet file is ever written per Kafka partition.
pub struct OpenBatch {
    /// Created on the first message and kept for the batch's life: what it learnt of
    /// the stream (keys in their order, resource ids) outlives a flush, and a flush
    /// leaves its builders empty, without capacity.
    decoder: Option<Decoder>,
    max_message_bytes: usize,
    raw: Vec<RecordBatch>,
    dead: Vec<RecordBatch>,
    /// Memory of the decoded batches held.
    held_bytes: u64,
    records: u64,
    messages: u64,
    message_bytes: u64,
    /// Decoded rows are moved out of the decoder in groups of at least this many.
    flush_rows: usize,
    /// Message bytes decoded since the last flush (decoded Arrow is about this size).
    unflushed_bytes: u64,
    /// Dead letters by reason code, for the metrics.
    dead_reasons: BTreeMap<String, u64>,
    /// A forced record shape (`kvlake convert --format`); `None` detects it per record.
    shape: Option<Shape>,
    /// The speed layer reads each chunk's records: flush after every chunk and keep
    /// what the rules need (see [`OpenBatch::take_events`]).
    speed: bool,
    events: Vec<crate::speed::event::Event>,
}

impl std::fmt::Debug for OpenBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBatch")
            .field("records", &self.records)
            .field("messages", &self.messages)
            .finish()
    }
}

impl OpenBatch {
    /// An empty batch.
    pub fn new(max_message_bytes: usize, row_group_rows: usize) -> Self {
        Self::with_flush_rows(max_message_bytes, row_group_rows, 8192)
    }

    /// An empty batch that moves decoded rows out of the decoder in groups of `flush_rows`.
    pub fn with_flush_rows(
        max_message_bytes: usize,
        _row_group_rows: usize,
        flush_rows: usize,
    ) -> Self {
        OpenBatch {
            flush_rows: flush_rows.max(1),
            unflushed_bytes: 0,
            dead_reasons: BTreeMap::new(),
            decoder: None,
            max_message_bytes,
            raw: Vec::new(),
            dead: Vec::new(),
            held_bytes: 0,
            records: 0,
            messages: 0,
            message_bytes: 0,
            shape: None,
            speed: false,
            events: Vec::new(),
        }
    }

    /// Keeps the records of every chunk for the speed layer (rows then leave the decoder
    /// per chunk instead of in groups of `flush_rows`: detection does not wait for a group).
    pub fn with_speed(mut self, on: bool) -> Self {
        self.speed = on;
        self
    }

    /// The speed layer's events of the chunks added since the last call.
    pub fn take_events(&mut self) -> Vec<crate::speed::event::Event> {
        std::mem::take(&mut self.events)
    }

    /// Decodes every record as `shape` instead of detecting each record's shape.
    pub fn with_shape(mut self, shape: Option<Shape>) -> Self {
        self.shape = shape;
        self
    }

    /// Decodes messages of `source[partition]`.
    pub fn add(
        &mut self,
        msgs: &[Msg],
        source: &str,
        partition: i32,
        seen_micros: i64,
    ) -> Result<(), ParquetError> {
        let (max_message_bytes, shape) = (self.max_message_bytes, self.shape);
        let decoder = self.decoder.get_or_insert_with(|| {
            Decoder::new(DecodeOptions {
                max_message_bytes,
                seen_time_micros: seen_micros,
            })
            .with_shape(shape)
        });
        decoder.set_seen_time(seen_micros);
        // Builders sized for the rows to come do not regrow on the way (each regrowth
        // copies the column again): a flush's worth, or with the speed layer on (a
        // flush per call) this call's messages at the record size seen so far. Only
        // while the decoder is empty: sizing copies the rows it holds.
        if decoder.raw_rows() + decoder.dead_letter_rows() == 0 {
            let rows = if self.speed {
                let bytes: u64 = msgs.iter().map(|m| m.payload.len() as u64).sum();
                match self.message_bytes.checked_div(self.records) {
                    Some(per_record) if per_record > 0 => bytes / per_record * 9 / 8 + 1,
                    _ => 0,
                }
            } else {
                self.flush_rows as u64 * 9 / 8
            };
            decoder.reserve_rows(usize::try_from(rows).unwrap_or(usize::MAX));
        }
        for m in msgs {
            let coords = SourceCoords {
                source,
                partition,
                offset: m.offset,
                enqueued_time_micros: m.timestamp_ms.map(|t| t * 1000),
            };
            let o = decoder.decode_message(&m.payload, &coords);
            self.records += (o.raw_rows + o.dead_letter_rows) as u64;
            self.messages += 1;
            self.message_bytes += m.payload.len() as u64;
            self.unflushed_bytes += m.payload.len() as u64;
        }
        if self.speed || decoder.raw_rows() + decoder.dead_letter_rows() >= self.flush_rows {
            self.flush();
        }
        Ok(())
    }

    /// Moves decoded rows out of the decoder into the batch.
    pub fn flush(&mut self) {
        let Some(decoder) = &mut self.decoder else {
            return;
        };
        if decoder.raw_rows() + decoder.dead_letter_rows() == 0 {
            return;
        }
        let out = decoder.finish();
        if self.speed {
            self.events.extend(crate::speed::event::events_of(&out.raw));
        }
        if let Some(reasons) = out.dead_letter.column_by_name("reason") {
            let reasons = reasons.as_string::<i32>();
            for r in reasons.iter().flatten() {
                *self.dead_reasons.entry(r.to_string()).or_default() += 1;
            }
        }
        self.unflushed_bytes = 0;
        for (held, batch) in [(&mut self.raw, out.raw), (&mut self.dead, out.dead_letter)] {
            if batch.num_rows() > 0 {
                self.held_bytes += batch.get_array_memory_size() as u64;
                held.push(batch);
            }
        }
    }

    /// Dead letters so far, by reason code.
    pub fn dead_letter_reasons(&self) -> &BTreeMap<String, u64> {
        &self.dead_reasons
    }

    /// Records (raw + dead-letter rows) so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Messages so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Message bytes so far.
    pub fn message_bytes(&self) -> u64 {
        self.message_bytes
    }

    /// Memory the batch holds: decoded Arrow batches, and rows still in the decoder.
    pub fn memory_bytes(&self) -> u64 {
        self.held_bytes + self.unflushed_bytes
    }

    /// The batch's rows per table (tables without rows left out).
    pub fn finish(mut self) -> FinishedBatch {
        self.flush();
        let mut staged = Vec::new();
        for (table, batches) in [(RAW_TABLE, self.raw), (DEAD_LETTER_TABLE, self.dead)] {
            let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            if rows > 0 {
                staged.push(StagedRows {
                    table,
                    batches,
                    rows,
                });
            }
        }
        FinishedBatch {
            staged,
            dead_letter_reasons: self.dead_reasons,
        }
    }
}

/// The file schema of a table (its columns without the `date`/`hour` partition columns).
pub fn file_schema(table: &str) -> SchemaRef {
    if table == RAW_TABLE {
        raw_file_schema()
    } else {
        dead_letter_file_schema()
    }
}

/// Encodes decoded batches of one table (with their `date`/`hour` columns last) into one
/// Parquet file per hour, rows in the order given. Each hour's rows are concatenated
/// first, so the bytes depend only on the rows and their order, never on how they were
/// cut into batches: the same rows always make the same file.
pub fn encode_by_hour(
    table: &'static str,
    batches: &[&RecordBatch],
    props: &WriterProperties,
) -> Result<Vec<EncodedFile>, ParquetError> {
    let file_schema = file_schema(table);
    let mut by_hour: BTreeMap<(i32, i32), Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        split_by_hour(batch, &file_schema, &mut by_hour)?;
    }
    by_hour
        .into_iter()
        .map(|((day, hour), parts)| {
            encode_file(table, &file_schema, &parts, props).map(|(bytes, rows, stats)| {
                EncodedFile {
                    table,
                    day,
                    hour,
                    bytes,
                    rows,
                    stats,
                }
            })
        })
        .collect()
}

/// Splits one decoded batch's rows by hour, each part projected to `file_schema`.
pub fn split_by_hour(
    batch: &RecordBatch,
    file_schema: &SchemaRef,
    by_hour: &mut BTreeMap<(i32, i32), Vec<RecordBatch>>,
) -> Result<(), ParquetError> {
    for (key, selection) in hours_of(batch) {
        let part = hour_part(batch, file_schema, selection.as_ref())?;
        by_hour.entry(key).or_default().push(part);
    }
    Ok(())
}

/// The (day, hour)s of a decoded batch's rows, in order, each with the rows of it: `None`
/// when every row is of that hour, else a mask ([`hour_part`] takes them out). A mask is a
/// bit per row, so a merge can hold every hour's selection and copy an hour's rows only
/// when it encodes that hour.
pub fn hours_of(batch: &RecordBatch) -> Vec<((i32, i32), Option<BooleanArray>)> {
    if batch.num_rows() == 0 {
        return Vec::new();
    }
    let n = batch.num_columns();
    let days = batch.column(n - 2).as_primitive::<Date32Type>();
    let hours = batch.column(n - 1).as_primitive::<Int32Type>();
    let keys: Vec<(i32, i32)> = (0..batch.num_rows())
        .map(|i| (days.value(i), hours.value(i)))
        .collect();
    let mut distinct: Vec<(i32, i32)> = keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if let [only] = distinct.as_slice() {
        return vec![(*only, None)];
    }
    distinct
        .into_iter()
        .map(|key| {
            let mask = BooleanArray::from(keys.iter().map(|k| *k == key).collect::<Vec<_>>());
            (key, Some(mask))
        })
        .collect()
}

/// The rows of `batch` that `selection` (from [`hours_of`]) picks, projected to
/// `file_schema` (the `date`/`hour` columns dropped).
pub fn hour_part(
    batch: &RecordBatch,
    file_schema: &SchemaRef,
    selection: Option<&BooleanArray>,
) -> Result<RecordBatch, ParquetError> {
    let n = batch.num_columns();
    let project =
        |b: &RecordBatch| RecordBatch::try_new(file_schema.clone(), b.columns()[..n - 2].to_vec());
    Ok(match selection {
        None => project(batch)?,
        Some(mask) => project(&filter_record_batch(batch, mask)?)?,
    })
}

/// One Parquet file of `parts` (already projected to `schema`), with its row count and
/// Delta statistics read back from the footer just written.
///
/// The parts are not concatenated (that copy cost a quarter of the encoding): the writer
/// is handed the rows in slices of [`write_slice_rows`] counted from the file's first
/// row, whatever the parts' boundaries. A slice inside one part is a view of it; only a
/// slice straddling parts is copied (its pieces concatenated). The column writers cut
/// mini-batches, pages and row groups at call boundaries, so the same rows in the same
/// order always reach them in the same calls and make the same bytes
/// (`the_same_rows_cut_differently_make_the_same_bytes`).
pub fn encode_file(
    table: &str,
    schema: &SchemaRef,
    parts: &[RecordBatch],
    props: &WriterProperties,
) -> Result<(Bytes, u64, Option<String>), ParquetError> {
    let slice_rows = write_slice_rows(props);
    let row_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX);
    let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))?;
    let mut rows = 0u64;
    let mut write = |w: &mut ArrowWriter<Vec<u8>>, slice: &RecordBatch| {
        // A write that completes a row group copies its pages into the file: make room
        // for them at once instead of doubling the buffer as they come.
        if w.in_progress_rows() + slice.num_rows() >= row_group_rows {
            let need = w.in_progress_size() + w.in_progress_size() / 8 + FOOTER_ROOM;
            w.inner_mut().reserve(need);
        }
        rows += slice.num_rows() as u64;
        w.write(slice)
    };
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for part in parts {
        let n = part.num_rows();
        let mut at = 0;
        while at < n {
            let take = (slice_rows - pending_rows).min(n - at);
            if pending_rows == 0 && take == slice_rows {
                write(&mut w, &part.slice(at, take))?;
            } else {
                pending.push(part.slice(at, take));
                pending_rows += take;
                if pending_rows == slice_rows {
                    write(&mut w, &concat_batches(schema, &pending)?)?;
                    pending.clear();
                    pending_rows = 0;
                }
            }
            at += take;
        }
    }
    match pending.as_slice() {
        [] => {}
        [one] => write(&mut w, one)?,
        more => write(&mut w, &concat_batches(schema, more)?)?,
    }
    let need = w.in_progress_size() + w.in_progress_size() / 8 + FOOTER_ROOM;
    w.inner_mut().reserve(need);
    let mut bytes = w.into_inner()?;
    bytes.shrink_to_fit();
    let bytes = Bytes::from(bytes);
    // Without statistics a file is only unskippable, not wrong.
    let stats = stats_of_file(&bytes, &file_schema(table)).ok();
    Ok((bytes, rows, stats))
}

/// Room for a file's footer (schema, column chunk metadata, statistics).
const FOOTER_ROOM: usize = 64 * 1024;

/// Rows per call into the writer: no more than the column writers take in one mini-batch
/// (`write_batch_size`, or `data_page_row_count_limit` for columns without nulls), so a
/// call is one mini-batch however its arrays are laid out (with or without a validity
/// buffer), and the bytes depend only on the rows.
pub fn write_slice_rows(props: &WriterProperties) -> usize {
    props
        .write_batch_size()
        .min(props.data_page_row_count_limit())
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn messages(n: i64) -> Vec<Msg> {
        let mut g = kvlake_generator::Generator::new(kvlake_generator::GeneratorConfig {
            seed: 1,
            events_per_second: 0.5,
            bad_message_rate: 0.1,
            ..Default::default()
        });
        (0..n)
            .map(|i| Msg {
                offset: i,
                timestamp_ms: Some(1_793_527_200_000),
                payload: g.next_message().bytes,
            })
            .collect()
    }

    fn encode_all(finished: &FinishedBatch) -> Vec<EncodedFile> {
        let props = writer_properties(4096);
        let mut files = Vec::new();
        for s in &finished.staged {
            let parts: Vec<&RecordBatch> = s.batches.iter().collect();
            files.extend(encode_by_hour(s.table, &parts, &props).unwrap());
        }
        files
    }

    #[test]
    fn batch_splits_by_hour_and_reads_back() {
        let msgs = messages(200);
        let mut b = OpenBatch::new(1 << 20, 4096);
        b.add(&msgs[..100], "audit", 1, 5).unwrap();
        b.add(&msgs[100..], "audit", 1, 5).unwrap();
        let records = b.records();
        assert!(b.memory_bytes() > 0);
        let files = encode_all(&b.finish());
        assert!(
            files.iter().filter(|f| f.table == RAW_TABLE).count() > 1,
            "spans several hours"
        );
        let mut total = 0;
        for f in &files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(f.bytes.clone())
                .unwrap()
                .build()
                .unwrap();
            let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(rows as u64, f.rows);
            assert!(f.stats.is_some());
            total += f.rows;
        }
        assert_eq!(total, records);
    }

    #[test]
    fn the_same_rows_cut_differently_make_the_same_bytes() {
        let msgs = messages(300);
        let mut whole = OpenBatch::with_flush_rows(1 << 20, 4096, 1 << 20);
        whole.add(&msgs, "audit", 1, 5).unwrap();
        let mut cut = OpenBatch::with_flush_rows(1 << 20, 4096, 1);
        for chunk in msgs.chunks(7) {
            cut.add(chunk, "audit", 1, 5).unwrap();
        }
        // With the speed layer on, rows leave the decoder after every call, into builders
        // sized from the record size seen so far (the decoder is kept between calls).
        let mut speed = OpenBatch::with_flush_rows(1 << 20, 4096, 1 << 20).with_speed(true);
        let mut events = 0;
        for chunk in msgs.chunks(13) {
            speed.add(chunk, "audit", 1, 5).unwrap();
            events += speed.take_events().len();
        }
        let whole = whole.finish();
        let raw_rows: u64 = whole
            .staged
            .iter()
            .filter(|s| s.table == RAW_TABLE)
            .map(|s| s.rows)
            .sum();
        assert_eq!(events as u64, raw_rows, "an event per raw row");
        let a = encode_all(&whole);
        for b in [encode_all(&cut.finish()), encode_all(&speed.finish())] {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!((x.table, x.day, x.hour), (y.table, y.day, y.hour));
                assert_eq!(x.bytes, y.bytes, "same rows, same file");
            }
        }
    }

    /// Rows reach the writer in slices of `write_batch_size`: cuts that fall inside a
    /// slice, on its edges, parts with and without validity buffers, and a file of
    /// several row groups all give the bytes of the rows written slice by slice from one
    /// batch, and they read back as those rows.
    #[test]
    fn the_same_rows_in_any_parts_make_the_same_bytes_and_read_back() {
        let msgs = messages(400);
        let mut whole = OpenBatch::with_flush_rows(1 << 20, 4096, 1 << 20);
        whole.add(&msgs, "audit", 1, 5).unwrap();
        let mut cut = OpenBatch::with_flush_rows(1 << 20, 4096, 1);
        for chunk in msgs.chunks(5) {
            cut.add(chunk, "audit", 1, 5).unwrap();
        }
        let (whole, cut) = (whole.finish(), cut.finish());
        for (batch_size, row_group_rows) in [(16, 50), (64, 1 << 20), (1024, 1 << 20)] {
            let props = writer_properties(4096)
                .into_builder()
                .set_write_batch_size(batch_size)
                .set_max_row_group_row_count(Some(row_group_rows))
                .build();
            for (w, c) in whole.staged.iter().zip(&cut.staged) {
                let schema = file_schema(w.table);
                let mut by_hour = BTreeMap::new();
                for b in &w.batches {
                    split_by_hour(b, &schema, &mut by_hour).unwrap();
                }
                let mut cut_by_hour = BTreeMap::new();
                for b in &c.batches {
                    split_by_hour(b, &schema, &mut cut_by_hour).unwrap();
                }
                for ((key, parts), (cut_key, cut_parts)) in by_hour.iter().zip(&cut_by_hour) {
                    assert_eq!(key, cut_key);
                    let all = concat_batches(&schema, parts).unwrap();
                    let mut reference =
                        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))
                            .unwrap();
                    for at in (0..all.num_rows()).step_by(batch_size) {
                        let n = batch_size.min(all.num_rows() - at);
                        reference.write(&all.slice(at, n)).unwrap();
                    }
                    let reference = reference.into_inner().unwrap();
                    // The whole hour in odd pieces too, as views of one batch.
                    let odd: Vec<RecordBatch> = (0..all.num_rows())
                        .step_by(37)
                        .map(|at| all.slice(at, 37.min(all.num_rows() - at)))
                        .collect();
                    for parts in [parts, cut_parts, &odd] {
                        let (bytes, rows, _) =
                            encode_file(w.table, &schema, parts, &props).unwrap();
                        assert_eq!(rows as usize, all.num_rows());
                        assert_eq!(bytes.as_ref(), reference.as_slice(), "{batch_size}");
                    }
                    let back: Vec<RecordBatch> =
                        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(reference))
                            .unwrap()
                            .build()
                            .unwrap()
                            .collect::<Result<_, _>>()
                            .unwrap();
                    assert_eq!(concat_batches(&schema, &back).unwrap(), all);
                }
            }
        }
    }
}
