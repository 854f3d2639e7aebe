//! Decode + Parquet (zstd) encoding of a batch, as a partition task does it, per core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvlake_hotpath::encode::{OpenBatch, encode_by_hour, writer_properties};

fn bench(c: &mut Criterion) {
    let msgs = kvlake_benches::envelope_messages(20_000, 50.0, 7);
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let mut group = c.benchmark_group("decode_and_encode_parquet");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    let props = writer_properties(128 * 1024);
    // Decode into Arrow (as a partition task does), then one Parquet file per hour (as
    // the table's publisher does for the merged batches).
    group.bench_function("20000_records", |b| {
        b.iter(|| {
            let mut batch = OpenBatch::new(1 << 20, 128 * 1024);
            for chunk in msgs.chunks(256) {
                batch.add(chunk, "kv-audit", 0, 0).expect("decode");
            }
            let mut files = 0;
            for st in batch.finish().staged {
                let parts: Vec<_> = st.batches.iter().collect();
                files += encode_by_hour(st.table, &parts, &props)
                    .expect("encode")
                    .len();
            }
            black_box(files)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
