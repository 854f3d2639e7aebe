//! Decode + Parquet (zstd) encoding of a batch, as a partition task and the table's
//! publisher do it, per core; and the Parquet encoding alone of the same decoded rows.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvlake_hotpath::encode::{FinishedBatch, OpenBatch, encode_by_hour, writer_properties};

/// Decodes as a partition task does: chunks of 256 messages, rows moved out of the
/// decoder every 8,192 (so a table's rows arrive in several parts).
fn decode(msgs: &[kvlake_hotpath::messages::Msg]) -> FinishedBatch {
    let mut batch = OpenBatch::new(1 << 20, 128 * 1024);
    for chunk in msgs.chunks(256) {
        batch.add(chunk, "kv-audit", 0, 0).expect("decode");
    }
    batch.finish()
}

fn bench(c: &mut Criterion) {
    let msgs = kvlake_benches::envelope_messages(20_000, 50.0, 7);
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let props = writer_properties(128 * 1024);
    // One Parquet file per table and hour, as the table's publisher writes them; their bytes.
    let encode = |finished: &FinishedBatch| -> usize {
        let mut bytes = 0;
        for st in &finished.staged {
            let parts: Vec<_> = st.batches.iter().collect();
            bytes += encode_by_hour(st.table, &parts, &props)
                .expect("encode")
                .iter()
                .map(|f| f.bytes.len())
                .sum::<usize>();
        }
        bytes
    };
    let decoded = decode(&msgs);
    eprintln!("parquet: {} bytes", encode(&decoded));
    let mut group = c.benchmark_group("decode_and_encode_parquet");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("20000_records", |b| {
        b.iter(|| black_box(encode(&decode(black_box(&msgs)))))
    });
    // The same rows already decoded (MB/s of their message bytes).
    group.bench_function("20000_records_parquet_only", |b| {
        b.iter(|| black_box(encode(black_box(&decoded))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
