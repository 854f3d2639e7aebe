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
    let spread_chunks = chunks(&msgs);
    let (_, events) = decode(&spread_chunks, true);
    let mut group = c.benchmark_group("speed_layer");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("decode_speed_off", |b| {
        b.iter(|| black_box(decode(&spread_chunks, false).0))
    });
    group.bench_function("decode_speed_on", |b| {
        b.iter(|| black_box(decode(&spread_chunks, true).1.len()))
    });
    group.bench_function("rules", |b| rules(b, &events));
    group.finish();
    // The e2e harness's dense backlog: 50 events a second over 20 minutes, so keys hold many window
    // events and lists, and counts cross their thresholds early in the day.
    let dense = envelope_messages(60_000, 50.0, 11);
    let (_, dense_events) = decode(&chunks(&dense), true);
    let bytes: usize = dense.iter().map(|m| m.payload.len()).sum();
    let mut group = c.benchmark_group("speed_layer_dense");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("rules", |b| rules(b, &dense_events));
    // The same, on a lake older than the warm-up: every rule evaluates in full, and
    // alerts fire (every subject is new), so the "raised already" checks run too.
    let warm = warm_history(&dense_events);
    group.bench_function("rules_warm_lake", |b| rules_with(b, &dense_events, &warm));
    group.finish();
    for (name, events, history) in [
        ("day-spread", &events, History::default()),
        ("dense", &dense_events, History::default()),
        ("dense, warm lake", &dense_events, warm),
    ] {
        eprintln!("{name}: {}", outcome(events, history));
    }
}

/// 30 lake days before the first event's day, with no series: every subject is new.
fn warm_history(events: &[Event]) -> History {
    let first = events.iter().map(|e| e.time).min().unwrap_or(0) / 86_400_000_000;
    let mut h = History::default();
    let first = i32::try_from(first).unwrap_or(0);
    h.lake_days.extend(first - 30..first);
    h
}

/// What the rules make of `events`: the alerts and the closed days' series (peaks
/// included), as a count and a digest, so that a faster evaluation can be checked to
/// give exactly the same.
fn outcome(events: &[Event], history: History) -> String {
    use std::hash::{Hash, Hasher};
    let mut rules = Rules::new(speed_thresholds(), "kv-audit", history, 3_600_000_000);
    let mut alerts = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        alerts.extend(rules.observe(ev, ev.time));
        if i % 2048 == 0 {
            rules.evict();
        }
    }
    // Two days past the last record: every day closes into the history's series.
    rules.max_time =
        events.iter().map(|e| e.time).max().unwrap_or(0) + 3_600_000_000 + 2 * 86_400_000_000;
    rules.evict();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for a in &alerts {
        format!("{a:?}").hash(&mut h);
    }
    let mut series: Vec<String> = rules
        .history
        .series
        .iter()
        .map(|(m, v)| format!("{m:?} {v:?}"))
        .collect();
    series.sort();
    series.hash(&mut h);
    format!(
        "{} alerts, {} series, digest {:016x}",
        alerts.len(),
        series.len(),
        h.finish()
    )
}

/// The rules over `events` from an empty state, evicting every 2,048 records as the
/// engine does between chunks.
fn rules(b: &mut criterion::Bencher<'_>, events: &[Event]) {
    rules_with(b, events, &History::default());
}

/// [`rules`] starting from `history`.
fn rules_with(b: &mut criterion::Bencher<'_>, events: &[Event], history: &History) {
    b.iter_batched(
        || {
            Rules::new(
                speed_thresholds(),
                "kv-audit",
                history.clone(),
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
