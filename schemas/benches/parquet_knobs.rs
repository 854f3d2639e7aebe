//! Which Parquet writer knobs pay, on decoded generator output (one thread):
//! `cargo bench -p kvlake-schemas --bench parquet_knobs`.
//!
//! Criterion groups: decode + Parquet of the same messages under whole-file settings
//! (MB/s of message bytes), and Parquet alone. Before them a per-column table (median of
//! 7 encodes of each column alone; MB/s of the column's Arrow bytes, and its size in the
//! file) under plain/dictionary × uncompressed/zstd-1/zstd-3, printed to stderr, and
//! where the time of kvlake's own settings goes: each column alone under
//! [`kvlake_schemas::writer::writer_properties`], its share of the sum, its MB/s and size.
//! `KVLAKE_COST_TABLE_ONLY=1` prints only that last table.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvlake_generator::{Format, Generator, GeneratorConfig};
use kvlake_schemas::raw::raw_file_schema;
use kvlake_schemas::{DecodeOptions, Decoder, SourceCoords};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

const RECORDS: usize = 20_000;

fn messages() -> Vec<Vec<u8>> {
    let mut g = Generator::new(GeneratorConfig {
        seed: 42,
        ..GeneratorConfig::default()
    });
    let mut out = Vec::new();
    g.write_records(RECORDS, Format::Envelope, &mut out);
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Decodes every message into one batch of the raw file schema (partition columns dropped).
fn decode(msgs: &[Vec<u8>]) -> RecordBatch {
    let mut d = Decoder::new(DecodeOptions::default());
    for (i, m) in msgs.iter().enumerate() {
        let coords = SourceCoords {
            source: "kv-audit",
            partition: 3,
            offset: i as i64,
            enqueued_time_micros: Some(1_793_528_130_000_000 + i as i64 * 1000),
        };
        d.decode_message(m, &coords);
    }
    let raw = d.finish().raw;
    let schema = raw_file_schema();
    let cols = schema
        .fields()
        .iter()
        .map(|f| raw.column_by_name(f.name()).cloned())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    RecordBatch::try_new(schema, cols).unwrap_or(raw)
}

fn write(batch: &RecordBatch, props: &WriterProperties) -> usize {
    let mut w = match ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone())) {
        Ok(w) => w,
        Err(e) => panic!("writer: {e}"),
    };
    if let Err(e) = w.write(batch) {
        panic!("write: {e}");
    }
    w.into_inner().map_or(0, |v| v.len())
}

fn zstd(level: i32) -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())
}

/// hotpath's `writer_properties` before issue 15 (zstd-3; its dictionary list as it was).
const UNIQUE: &[&str] = &[
    "_offset",
    "_enqueued_time",
    "time",
    "correlation_id",
    "properties_id",
    "request_uri",
    "object_version",
    "extra",
    "secret_properties",
    "key_properties",
    "certificate_properties",
    "nested_properties",
];
/// Few-value columns, dictionary-encoded and uncompressed, as they were before
/// `PLAIN_COLUMNS` (`reason` only exists in dead letters).
const TINY: &[&str] = &[
    "_source",
    "_partition",
    "_record_index",
    "operation_version",
    "category",
    "result_type",
    "result_signature",
    "http_status_code",
    "is_access_policy_match",
    "is_rbac_authorized",
    "tls_version",
    "identity_type",
    "identity_app_id_acr",
    "identity_tenant_id",
    "result_class",
    "subscription_id",
    "resource_group",
    "vault_name",
    "object_kind",
    "address_authorization_type",
    "trusted_service",
    "reason",
];

fn base(level: i32) -> WriterPropertiesBuilder {
    let mut b = WriterProperties::builder();
    for col in UNIQUE {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*col), false);
    }
    for col in TINY {
        b = b.set_column_compression(ColumnPath::from(*col), Compression::UNCOMPRESSED);
    }
    b.set_compression(zstd(level))
        .set_max_row_group_row_count(Some(1024 * 1024))
}

/// The settings kvlake writes with ([`kvlake_schemas::writer::writer_properties`]):
/// zstd-1, dictionaries except on unique columns, statistics only on the columns readers
/// filter.
fn issue15() -> WriterPropertiesBuilder {
    kvlake_schemas::writer::writer_properties(1024 * 1024).into_builder()
}

/// kvlake's settings with dictionaries (uncompressed) back on its `PLAIN_COLUMNS`: the
/// settings before them.
fn tiny_dictionaries(b: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
    kvlake_schemas::writer::PLAIN_COLUMNS
        .iter()
        .fold(b, |b, col| {
            b.set_column_dictionary_enabled(ColumnPath::from(*col), true)
                .set_column_compression(ColumnPath::from(*col), Compression::UNCOMPRESSED)
        })
}

/// Few-value columns that keep their dictionary: each is a few KB larger without it.
const PLAIN_MORE: &[&str] = &[
    "tls_version",
    "result_description",
    "identity_type",
    "identity_app_id_acr",
    "operation_version",
];

fn variants() -> Vec<(&'static str, WriterProperties)> {
    vec![
        ("issue15", issue15().build()),
        ("tiny_dictionaries", tiny_dictionaries(issue15()).build()),
        (
            "plain_more",
            PLAIN_MORE
                .iter()
                .fold(issue15(), |b, col| {
                    b.set_column_dictionary_enabled(ColumnPath::from(*col), false)
                        .set_column_compression(ColumnPath::from(*col), zstd(1))
                })
                .build(),
        ),
        (
            "issue15_batch8k",
            issue15().set_write_batch_size(8192).build(),
        ),
        (
            "issue15_correlation_id_uncompressed",
            issue15()
                .set_column_compression(
                    ColumnPath::from("correlation_id"),
                    Compression::UNCOMPRESSED,
                )
                .build(),
        ),
        (
            "issue15_no_dictionary_on_tiny",
            TINY.iter()
                .fold(issue15(), |b, col| {
                    b.set_column_dictionary_enabled(ColumnPath::from(*col), false)
                        .set_column_compression(ColumnPath::from(*col), zstd(1))
                })
                .build(),
        ),
        ("before_zstd3", base(3).build()),
        ("zstd1", base(1).build()),
        (
            "zstd1_chunk_stats",
            base(1)
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .build(),
        ),
        (
            "zstd1_chunk_stats_big_pages",
            base(1)
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .set_data_page_size_limit(4 * 1024 * 1024)
                .set_write_batch_size(8192)
                .build(),
        ),
        (
            "zstd1_no_stats",
            base(1)
                .set_statistics_enabled(EnabledStatistics::None)
                .build(),
        ),
        (
            "uncompressed",
            base(1).set_compression(Compression::UNCOMPRESSED).build(),
        ),
    ]
}

/// One column alone under plain/dictionary × compression: median seconds and file bytes.
fn column_table(batch: &RecordBatch) {
    // The last two: what statistics cost on that column (chunk statistics elsewhere).
    let settings: [(&str, bool, Compression, EnabledStatistics); 8] = [
        (
            "plain",
            false,
            Compression::UNCOMPRESSED,
            EnabledStatistics::Chunk,
        ),
        ("plain_z1", false, zstd(1), EnabledStatistics::Chunk),
        ("plain_z3", false, zstd(3), EnabledStatistics::Chunk),
        (
            "dict",
            true,
            Compression::UNCOMPRESSED,
            EnabledStatistics::Chunk,
        ),
        ("dict_z1", true, zstd(1), EnabledStatistics::Chunk),
        ("dict_z3", true, zstd(3), EnabledStatistics::Chunk),
        ("plain_z1_nostat", false, zstd(1), EnabledStatistics::None),
        ("dict_z1_nostat", true, zstd(1), EnabledStatistics::None),
    ];
    eprint!("{:<32} {:>8}", "column (arrow KB)", "KB");
    for (name, _, _, _) in &settings {
        eprint!(" {:>22}", format!("{name} MB/s|KB"));
    }
    eprintln!();
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let col = batch.column(i).clone();
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![field.as_ref().clone()])),
            vec![col.clone()],
        );
        let Ok(one) = one else { continue };
        let arrow_bytes = col.get_buffer_memory_size();
        eprint!("{:<32} {:>8}", field.name(), arrow_bytes / 1024);
        for (_, dict, compression, stats) in &settings {
            let props = WriterProperties::builder()
                .set_dictionary_enabled(*dict)
                .set_compression(*compression)
                .set_statistics_enabled(*stats)
                .build();
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..7 {
                let t = Instant::now();
                size = write(&one, &props);
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let mbs = arrow_bytes as f64 / times[3] / 1e6;
            eprint!(" {:>22}", format!("{mbs:.0}|{}", size / 1024));
        }
        eprintln!();
    }
}

/// Where the time of kvlake's settings goes: each column alone (median of 11) under the
/// production writer properties, with its share of the sum of columns, and the whole file.
fn cost_table(batch: &RecordBatch) {
    let props = kvlake_schemas::writer::writer_properties(1024 * 1024);
    let median = |one: &RecordBatch| {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..11 {
            let t = Instant::now();
            size = write(one, &props);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        (times[5], size)
    };
    let mut rows = Vec::new();
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let col = batch.column(i).clone();
        let Ok(one) = RecordBatch::try_new(
            Arc::new(Schema::new(vec![field.as_ref().clone()])),
            vec![col.clone()],
        ) else {
            continue;
        };
        let (secs, size) = median(&one);
        rows.push((
            field.name().clone(),
            col.get_buffer_memory_size(),
            secs,
            size,
        ));
    }
    let sum: f64 = rows.iter().map(|r| r.2).sum();
    let (whole, whole_size) = median(batch);
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    eprintln!(
        "{:<28} {:>9} {:>8} {:>6} {:>8} {:>8}",
        "column (kvlake settings)", "arrow KB", "µs", "share", "MB/s", "file KB"
    );
    for (name, arrow_bytes, secs, size) in &rows {
        eprintln!(
            "{:<28} {:>9} {:>8.0} {:>5.1}% {:>8.0} {:>8}",
            name,
            arrow_bytes / 1024,
            secs * 1e6,
            secs / sum * 100.0,
            *arrow_bytes as f64 / secs / 1e6,
            size / 1024
        );
    }
    eprintln!(
        "sum of columns {:.0} µs; whole file {:.0} µs, {} KB",
        sum * 1e6,
        whole * 1e6,
        whole_size / 1024
    );
}

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let batch = decode(&msgs);
    assert_eq!(batch.num_rows(), RECORDS);
    if std::env::var_os("KVLAKE_COST_TABLE_ONLY").is_some() {
        cost_table(&batch);
        return;
    }
    // `KVLAKE_NO_COLUMN_TABLE=1` skips the per-column tables (a minute of encodes).
    if std::env::var_os("KVLAKE_NO_COLUMN_TABLE").is_none() {
        column_table(&batch);
        cost_table(&batch);
    }
    let mut g = c.benchmark_group(format!("decode_parquet_{:.1}MB", bytes as f64 / 1e6));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("decode_only", |b| {
        b.iter(|| black_box(decode(black_box(&msgs))))
    });
    for (name, props) in variants() {
        eprintln!("{name}: file {} KB", write(&batch, &props) / 1024);
        g.bench_function(name, |b| {
            b.iter(|| black_box(write(&decode(black_box(&msgs)), &props)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group(format!("parquet_only_{:.1}MB", bytes as f64 / 1e6));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    for (name, props) in variants() {
        g.bench_function(name, |b| {
            b.iter(|| black_box(write(black_box(&batch), &props)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
