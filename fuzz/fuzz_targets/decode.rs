//! Any bytes into the decoder: it must not panic, and every message must be accounted
//! for (one message-level dead letter, or record indexes 0..n exactly once).
#![no_main]

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use kvlake_schemas::{DecodeOptions, Decoder, SourceCoords};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(DecodeOptions::default());
    let coords = SourceCoords { source: "fuzz", partition: 0, offset: 0, enqueued_time_micros: None };
    let o = d.decode_message(data, &coords);
    let out = d.finish();
    assert!(o.raw_rows + o.dead_letter_rows >= 1);
    let dl = out.dead_letter.column_by_name("_record_index").unwrap().as_primitive::<Int32Type>().clone();
    if dl.null_count() > 0 {
        assert_eq!((o.raw_rows, o.dead_letter_rows), (0, 1));
        return;
    }
    let raw = out.raw.column_by_name("_record_index").unwrap().as_primitive::<Int32Type>().clone();
    let mut idx: Vec<i32> = dl.values().iter().chain(raw.values().iter()).copied().collect();
    idx.sort_unstable();
    assert_eq!(idx, (0..idx.len() as i32).collect::<Vec<_>>());
});
