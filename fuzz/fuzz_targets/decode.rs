//! Any bytes into the decoder: it must not panic, every message must be accounted for
//! (one message-level dead letter, or record indexes 0..n exactly once), and one decoder
//! carried across messages (its key memo and resource-id table learn from each) gives
//! exactly what the reference (serde) path gives. The input is split into messages at
//! each 0xFF byte, which JSON text never holds.
#![no_main]

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use kvlake_schemas::{DecodeOptions, Decoder, SourceCoords};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fast = Decoder::new(DecodeOptions::default());
    let mut reference = Decoder::new(DecodeOptions::default());
    let mut messages = 0;
    for (i, m) in data.split(|b| *b == 0xFF).enumerate() {
        let coords = SourceCoords {
            source: "fuzz",
            partition: 0,
            offset: i as i64,
            enqueued_time_micros: None,
        };
        let o = fast.decode_message(m, &coords);
        assert!(o.raw_rows + o.dead_letter_rows >= 1);
        assert_eq!(
            o,
            reference.decode_message_reference(m, &coords),
            "message {i}"
        );
        messages += 1;
    }
    let (out, expected) = (fast.finish(), reference.finish());
    assert_eq!(out.raw, expected.raw);
    assert_eq!(out.dead_letter, expected.dead_letter);
    // Record indexes per message: a message-level dead letter (null index), or 0..n.
    let offsets = |b: &arrow::array::RecordBatch| {
        b.column_by_name("_offset")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone()
    };
    let index = |b: &arrow::array::RecordBatch| {
        b.column_by_name("_record_index")
            .unwrap()
            .as_primitive::<Int32Type>()
            .clone()
    };
    let mut by_message: Vec<Vec<Option<i32>>> = vec![Vec::new(); messages];
    for b in [&out.raw, &out.dead_letter] {
        let (o, r) = (offsets(b), index(b));
        for row in 0..b.num_rows() {
            let i = usize::try_from(o.value(row)).unwrap();
            by_message[i].push(r.is_valid(row).then(|| r.value(row)));
        }
    }
    for (i, mut idx) in by_message.into_iter().enumerate() {
        if idx.contains(&None) {
            assert_eq!(
                idx,
                vec![None],
                "message {i}: a message-level dead letter alone"
            );
            continue;
        }
        idx.sort_unstable();
        let want: Vec<Option<i32>> = (0..idx.len() as i32).map(Some).collect();
        assert_eq!(idx, want, "message {i}: record indexes 0..n once each");
    }
});
