//! The decoder's envelope fast path gives exactly what its serde path (the reference)
//! gives, row for row and byte for byte, on generated traffic of every shape, good and bad.
#![allow(clippy::unwrap_used)]

use kvlake_generator::{Generator, GeneratorConfig, Shape};
use kvlake_schemas::{DecodeOptions, Decoder, SourceCoords};

const MESSAGES: usize = 400;

fn coords(i: usize) -> SourceCoords<'static> {
    SourceCoords {
        source: "gen",
        partition: 1,
        offset: i as i64,
        enqueued_time_micros: Some(1_793_528_130_000_000 + i as i64),
    }
}

/// Decodes `messages` through both paths, message by message, and compares everything.
fn compare(messages: &[Vec<u8>], shape: Option<kvlake_schemas::Shape>, what: &str) -> usize {
    let opts = DecodeOptions {
        seen_time_micros: 5,
        ..DecodeOptions::default()
    };
    let mut fast = Decoder::new(opts).with_shape(shape);
    let mut reference = Decoder::new(opts).with_shape(shape);
    let mut took_fast = 0;
    for (i, m) in messages.iter().enumerate() {
        took_fast += usize::from(fast.fast_path_reads(m));
        let a = fast.decode_message(m, &coords(i));
        let b = reference.decode_message_reference(m, &coords(i));
        assert_eq!(a, b, "{what}: message {i}: {}", String::from_utf8_lossy(m));
    }
    let (a, b) = (fast.finish(), reference.finish());
    assert_eq!(a.raw, b.raw, "{what}: raw rows");
    assert_eq!(a.dead_letter, b.dead_letter, "{what}: dead letters");
    took_fast
}

#[test]
fn fast_path_matches_the_serde_path_on_every_shape() {
    for shape in Shape::ALL {
        for seed in [3, 11] {
            let mut g = Generator::new(GeneratorConfig {
                seed,
                shape,
                bad_message_rate: 0.1,
                ..GeneratorConfig::default()
            });
            let messages: Vec<Vec<u8>> = (0..MESSAGES).map(|_| g.next_message().bytes).collect();
            let what = format!("{} seed {seed}", shape.name());
            let took = compare(&messages, None, &what);
            // Good envelopes take the fast path (bad ones may or may not).
            assert!(
                took >= MESSAGES * 8 / 10,
                "{what}: only {took} took the fast path"
            );
            let forced = shape.name().parse().ok();
            assert!(forced.is_some());
            compare(&messages, forced, &format!("{what}, forced shape"));
        }
    }
}

/// Bytes that change what JSON means.
const INSERTS: &[u8] = b"\"{}[],:\\ 0e-.tfnu\x01\xff";

#[test]
fn fast_path_matches_the_serde_path_on_mangled_envelopes() {
    let mut g = Generator::new(GeneratorConfig {
        seed: 5,
        records_per_message: (1, 3),
        ..GeneratorConfig::default()
    });
    let base: Vec<Vec<u8>> = (0..40).map(|_| g.next_message().bytes).collect();
    let mut messages = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for m in &base {
        for _ in 0..60 {
            let mut m = m.clone();
            let at = (next() % m.len() as u64) as usize;
            match next() % 4 {
                0 => {
                    m.remove(at);
                }
                1 => m.insert(at, INSERTS[(next() % INSERTS.len() as u64) as usize]),
                2 => m[at] = INSERTS[(next() % INSERTS.len() as u64) as usize],
                _ => m.truncate(at),
            }
            messages.push(m);
        }
    }
    compare(&messages, None, "mangled");
}
