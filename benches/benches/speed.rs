//! The speed layer's cost per core: decoding with and without the per-chunk events the
//! rules read, and the rules themselves over those events, on a 64-partition stream.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kvlake_benches::{envelope_messages, speed_thresholds};
use kvlake_hotpath::encode::OpenBatch;
use kvlake_hotpath::messages::Msg;
use kvlake_hotpath::speed::event::Event;
use kvlake_hotpath::speed::history::History;
use kvlake_hotpath::speed::rules::Rules;

const PARTITIONS: usize = 64;
/// Messages per chunk a partition task takes from the source.
const CHUNK: usize = 32;

/// Messages dealt to the partitions in runs of `CHUNK`, as the source routes them.
fn chunks(msgs: &[Msg]) -> Vec<(i32, &[Msg])> {
    msgs.chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| ((i % PARTITIONS) as i32, c))
        .collect()
}

fn decode(chunks: &[(i32, &[Msg])], speed: bool) -> (usize, Vec<Event>) {
    let mut batches: Vec<OpenBatch> = (0..PARTITIONS)
        .map(|_| OpenBatch::new(1 << 20, 128 * 1024).with_speed(speed))
        .collect();
    let mut events = Vec::new();
    for (p, c) in chunks {
        let b = &mut batches[*p as usize];
        b.add(c, "kv-audit", *p, 0).expect("decode");
        events.extend(b.take_events());
    }
    let rows = batches
        .into_iter()
        .flat_map(|b| b.finish().staged)
        .map(|s| s.rows as usize)
        .sum();
    (rows, events)
}

fn bench(c: &mut Criterion) {
    // The e2e harness's day-spread density: 2.3 events a second of event time.
    let msgs = envelope_messages(20_000, 2.3, 11);
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let chunks = chunks(&msgs);
    let (_, events) = decode(&chunks, true);
    let mut group = c.benchmark_group("speed_layer");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("decode_speed_off", |b| {
        b.iter(|| black_box(decode(&chunks, false).0))
    });
    group.bench_function("decode_speed_on", |b| {
        b.iter(|| black_box(decode(&chunks, true).1.len()))
    });
    group.bench_function("rules", |b| {
        b.iter_batched(
            || {
                Rules::new(
                    speed_thresholds(),
                    "kv-audit",
                    History::default(),
                    3_600_000_000,
                )
            },
            |mut rules| {
                let mut alerts = 0;
                for (i, ev) in events.iter().enumerate() {
                    alerts += rules.observe(ev, ev.time).len();
                    if i % 2048 == 0 {
                        rules.evict();
                    }
                }
                black_box(alerts)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
