//! Decoder throughput per core on generator output, with peers on the same bytes:
//! `cargo bench -p kvlake-schemas --bench decode` (MB/s of message bytes, one thread).
//!
//! `fast` is [`Decoder::decode_message`] (the envelope fast path); `reference` is the serde
//! path every message took before it (the old decoder, kept as the test oracle);
//! `serde_json_value` and `sonic_rs_value` parse each message into a generic JSON value.
//! With `KVLAKE_DUMP_MESSAGES=<dir>` the messages are also written there, one per line,
//! for DuckDB's `read_json` on the same bytes (`schemas/benches/decode_duckdb.py`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvlake_generator::{Format, Generator, GeneratorConfig, Shape};
use kvlake_schemas::{DecodeOptions, Decoder, SourceCoords};

const RECORDS: usize = 20_000;

fn messages(shape: Shape, format: Format) -> Vec<Vec<u8>> {
    let mut g = Generator::new(GeneratorConfig {
        seed: 42,
        shape,
        ..GeneratorConfig::default()
    });
    let mut out = Vec::new();
    g.write_records(RECORDS, format, &mut out);
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn decode_all(msgs: &[Vec<u8>], reference: bool) -> usize {
    decode_all_reserved(msgs, reference, 0)
}

/// [`decode_all`] with [`Decoder::reserve_rows`] (`rows` > 0), as a caller that knows its
/// flush size does.
fn decode_all_reserved(msgs: &[Vec<u8>], reference: bool, rows: usize) -> usize {
    let mut d = Decoder::new(DecodeOptions::default());
    if rows > 0 {
        d.reserve_rows(rows);
    }
    for (i, m) in msgs.iter().enumerate() {
        let coords = SourceCoords {
            source: "kv-audit",
            partition: 0,
            offset: i as i64,
            enqueued_time_micros: Some(0),
        };
        if reference {
            d.decode_message_reference(m, &coords);
        } else {
            d.decode_message(m, &coords);
        }
    }
    let out = d.finish();
    out.raw.num_rows() + out.dead_letter.num_rows()
}

fn bench(c: &mut Criterion) {
    // `KVLAKE_DECODE_ITERS=<n>`: only decode the envelope case n times with the fast path
    // and exit, for `perf stat`/`perf record` on a fixed amount of work (user-space cycles
    // are steadier than wall time on a shared machine). With `KVLAKE_DECODE_RESERVE=1` the
    // decoder is told the rows to expect ([`Decoder::reserve_rows`]).
    if let Some(n) = std::env::var("KVLAKE_DECODE_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let msgs = messages(Shape::DiagnosticSettings, Format::Envelope);
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        let reserve = match std::env::var_os("KVLAKE_DECODE_RESERVE") {
            Some(_) => RECORDS,
            None => 0,
        };
        let mut secs = Vec::with_capacity(n);
        for _ in 0..n {
            let t = std::time::Instant::now();
            black_box(decode_all_reserved(black_box(&msgs), false, reserve));
            secs.push(t.elapsed().as_secs_f64());
        }
        let total: f64 = secs.iter().sum();
        secs.sort_by(f64::total_cmp);
        let mbs = |s: f64| bytes as f64 / s / 1e6;
        // The best pass too: on a shared machine the slow passes are other work's.
        eprintln!(
            "{n} x {bytes} bytes: {:.0} MB/s, median pass {:.0}, best pass {:.0}",
            (n * bytes) as f64 / total / 1e6,
            mbs(secs[n / 2]),
            mbs(secs[0])
        );
        std::process::exit(0);
    }
    let cases = [
        ("envelope", Shape::DiagnosticSettings, Format::Envelope),
        (
            "envelope_azurediagnostics",
            Shape::AzureDiagnostics,
            Format::Envelope,
        ),
        ("envelope_managedhsm", Shape::ManagedHsm, Format::Envelope),
        ("json_lines", Shape::DiagnosticSettings, Format::Lines),
    ];
    for (name, shape, format) in cases {
        let msgs = messages(shape, format);
        // The same bytes for the DuckDB peer (`schemas/benches/decode_duckdb.py`).
        if let Some(dir) = std::env::var_os("KVLAKE_DUMP_MESSAGES") {
            let path = std::path::Path::new(&dir).join(format!("{name}.json"));
            std::fs::write(&path, msgs.join(&b'\n')).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(decode_all(&msgs, false), RECORDS, "every record decodes");
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(format!("decode_{name}_{:.1}MB", bytes as f64 / 1e6));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.sample_size(10);
        g.bench_function("fast", |b| {
            b.iter(|| black_box(decode_all(black_box(&msgs), false)))
        });
        if name == "envelope" {
            g.bench_function("fast_reserved", |b| {
                b.iter(|| black_box(decode_all_reserved(black_box(&msgs), false, RECORDS)))
            });
        }
        g.bench_function("reference", |b| {
            b.iter(|| black_box(decode_all(black_box(&msgs), true)))
        });
        if name == "envelope" {
            g.bench_function("serde_json_value", |b| {
                b.iter(|| {
                    for m in &msgs {
                        let v: serde_json::Value =
                            serde_json::from_slice(black_box(m)).unwrap_or_default();
                        black_box(v);
                    }
                })
            });
            g.bench_function("sonic_rs_value", |b| {
                b.iter(|| {
                    for m in &msgs {
                        let v: sonic_rs::Value =
                            sonic_rs::from_slice(black_box(m)).unwrap_or_default();
                        black_box(v);
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
