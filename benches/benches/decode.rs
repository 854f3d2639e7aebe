//! Decoder throughput on generator output: envelope JSON into Arrow, per core.
//! `cargo bench -p kvlake-benches --bench decode`; reports read in MB/s of message bytes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvlake_generator::{Format, Generator, GeneratorConfig};
use kvlake_schemas::{DecodeOptions, Decoder, SourceCoords};

fn messages(format: Format) -> (Vec<Vec<u8>>, usize) {
    let mut g = Generator::new(GeneratorConfig {
        seed: 42,
        ..GeneratorConfig::default()
    });
    let mut out = Vec::new();
    g.write_records(20_000, format, &mut out);
    let msgs: Vec<Vec<u8>> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    (msgs, 20_000)
}

/// Decodes every message into one batch; `reserve`: the rows announced beforehand
/// ([`Decoder::reserve_rows`], as a caller that knows its flush size does).
fn decode_all(msgs: &[Vec<u8>], reserve: Option<usize>) -> usize {
    let mut d = Decoder::new(DecodeOptions::default());
    if let Some(rows) = reserve {
        d.reserve_rows(rows);
    }
    for (i, m) in msgs.iter().enumerate() {
        let coords = SourceCoords {
            source: "kv-audit",
            partition: 0,
            offset: i as i64,
            enqueued_time_micros: Some(0),
        };
        d.decode_message(m, &coords);
    }
    let out = d.finish();
    out.raw.num_rows() + out.dead_letter.num_rows()
}

fn bench(c: &mut Criterion) {
    for (name, format) in [
        ("envelope", Format::Envelope),
        ("json_lines", Format::Lines),
    ] {
        let (msgs, records) = messages(format);
        assert_eq!(decode_all(&msgs, None), records, "every record decodes");
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(format!("decode_{name}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.sample_size(20);
        g.bench_function(
            format!("{records}_records_{:.1}MB", bytes as f64 / 1e6),
            |b| b.iter(|| black_box(decode_all(black_box(&msgs), None))),
        );
        // The same with the builders sized for the batch up front: no regrowth.
        g.bench_function("reserved", |b| {
            b.iter(|| black_box(decode_all(black_box(&msgs), Some(records))))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("decode_{name}_records"));
        g.throughput(Throughput::Elements(records as u64));
        g.sample_size(20);
        g.bench_function("records", |b| {
            b.iter(|| black_box(decode_all(black_box(&msgs), None)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
