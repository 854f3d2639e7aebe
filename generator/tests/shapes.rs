//! The same generated events in every shape decode to the same raw columns: the decoder
//! of `kvlake-schemas` is the judge, the diagnostic-settings decode the reference.
#![allow(clippy::unwrap_used)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kvlake_generator::{Format, Generator, GeneratorConfig, Shape};
use kvlake_schemas::raw::{COLUMNS, Kind};
use kvlake_schemas::{DecodeOptions, DecodeOutput, Decoder, SourceCoords};
use serde_json::Value;

const RECORDS: usize = 3000;

/// Where a record came from, and the fields kvlake does not know, differ by nature.
const NOT_COMPARED: [&str; 6] = [
    "_source",
    "_partition",
    "_offset",
    "_record_index",
    "_enqueued_time",
    "extra",
];

/// Columns holding JSON text: compared as JSON, null members aside (Log Analytics stores
/// no null, so a flattened `AzureDiagnostics` object comes back without them).
const JSON_COLUMNS: [&str; 5] = [
    "identity_network_perimeter_ids",
    "secret_properties",
    "key_properties",
    "certificate_properties",
    "nested_properties",
];

fn generate(seed: u64, shape: Shape, format: Format) -> Vec<u8> {
    let mut g = Generator::new(GeneratorConfig {
        seed,
        shape,
        ..GeneratorConfig::default()
    });
    let mut out = Vec::new();
    g.write_records(RECORDS, format, &mut out);
    out
}

fn decode(bytes: &[u8], shape: Option<kvlake_schemas::Shape>) -> RecordBatch {
    let mut d = Decoder::new(DecodeOptions::default()).with_shape(shape);
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let coords = SourceCoords {
            source: "gen",
            partition: 0,
            offset: i as i64,
            enqueued_time_micros: None,
        };
        d.decode_message(line, &coords);
    }
    let DecodeOutput { raw, dead_letter } = d.finish();
    assert_eq!(
        dead_letter.num_rows(),
        0,
        "{:?}",
        dead_letter.column_by_name("message")
    );
    raw
}

fn cell(b: &RecordBatch, col: usize, row: usize) -> Option<String> {
    let a = b.column(col);
    if a.is_null(row) {
        return None;
    }
    Some(match COLUMNS[col].kind {
        Kind::Timestamp => a
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .to_string(),
        _ => ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
            .unwrap()
            .value(row)
            .to_string(),
    })
}

fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn json(s: Option<String>) -> Option<Value> {
    s.map(|s| without_nulls(serde_json::from_str(&s).unwrap()))
}

fn assert_same_columns(want: &RecordBatch, got: &RecordBatch, what: &str) {
    assert_eq!(want.num_rows(), got.num_rows(), "{what}: rows");
    for (col, meta) in COLUMNS.iter().enumerate() {
        if NOT_COMPARED.contains(&meta.name) {
            continue;
        }
        for row in 0..want.num_rows() {
            let (x, y) = (cell(want, col, row), cell(got, col, row));
            let ctx = || format!("{what}: row {row}, column {}", meta.name);
            if meta.name == "resource_id" {
                // AZKVAuditLogs has only `_ResourceId`, lower-cased by Log Analytics.
                assert_eq!(
                    x.map(|s| s.to_ascii_lowercase()),
                    y.map(|s| s.to_ascii_lowercase()),
                    "{}",
                    ctx()
                );
            } else if JSON_COLUMNS.contains(&meta.name) {
                assert_eq!(json(x), json(y), "{}", ctx());
            } else {
                assert_eq!(x, y, "{}", ctx());
            }
        }
    }
}

#[test]
fn every_shape_of_the_same_events_decodes_to_the_same_columns() {
    for seed in [1, 7] {
        let want = decode(
            &generate(seed, Shape::DiagnosticSettings, Format::Lines),
            None,
        );
        assert_eq!(want.num_rows(), RECORDS);
        // The comparison means something only if the columns are filled.
        for name in [
            "identity_object_id",
            "identity_upn",
            "vault_name",
            "object_name",
            "http_status_code",
            "nested_properties",
            "secret_properties",
            "key_properties",
            "identity_network_perimeter_ids",
        ] {
            let col = want.column_by_name(name).unwrap();
            assert!(
                col.null_count() < col.len(),
                "seed {seed}: {name} is never filled"
            );
        }
        for shape in Shape::ALL {
            let bytes = generate(seed, shape, Format::Lines);
            let got = decode(&bytes, None);
            assert_same_columns(&want, &got, &format!("seed {seed}, {shape}, detected"));
            let forced = shape.name().parse::<kvlake_schemas::Shape>().unwrap();
            let got = decode(&bytes, Some(forced));
            assert_same_columns(&want, &got, &format!("seed {seed}, {shape}, forced"));
        }
    }
}

#[test]
fn envelopes_of_other_shapes_decode_too() {
    let want = decode(
        &generate(3, Shape::DiagnosticSettings, Format::Envelope),
        None,
    );
    for shape in Shape::ALL {
        let got = decode(&generate(3, shape, Format::Envelope), None);
        assert_same_columns(&want, &got, &format!("{shape} envelopes"));
    }
}

#[test]
fn rows_look_like_their_documentation() {
    let first = |shape| -> Value {
        let bytes = generate(5, shape, Format::Lines);
        let line = bytes.split(|b| *b == b'\n').next().unwrap();
        serde_json::from_slice(line).unwrap()
    };
    let ad = first(Shape::AzureDiagnostics);
    assert_eq!(ad["Type"], "AzureDiagnostics");
    assert!(
        ad.get("TimeGenerated").is_some() && ad.get("httpStatusCode_d").is_some(),
        "{ad}"
    );
    let azkv = first(Shape::AzkvAuditLogs);
    assert_eq!(azkv["Type"], "AZKVAuditLogs");
    assert!(
        azkv.get("HttpStatusCode").is_some() && azkv.get("_ResourceId").is_some(),
        "{azkv}"
    );
    let hsm = first(Shape::ManagedHsm);
    assert!(
        hsm.get("httpStatusCode").is_some() && hsm.get("PoolName").is_some(),
        "{hsm}"
    );
    if let Some(identity) = hsm.get("identity") {
        assert!(identity.is_string(), "{hsm}");
    }
}

#[test]
fn shape_names_are_the_decoders() {
    for (g, s) in Shape::ALL.iter().zip(kvlake_schemas::Shape::ALL) {
        assert_eq!(g.name(), s.name());
    }
}

#[test]
fn a_shape_changes_the_encoding_not_the_events() {
    let mut a = Generator::new(GeneratorConfig {
        seed: 9,
        ..GeneratorConfig::default()
    });
    let mut b = Generator::new(GeneratorConfig {
        seed: 9,
        shape: Shape::AzureDiagnostics,
        ..GeneratorConfig::default()
    });
    for _ in 0..50 {
        let (x, y) = (a.next_record(), b.next_record());
        assert_eq!(x["time"], y["TimeGenerated"]);
        assert_eq!(x["operationName"], y["OperationName"]);
    }
}
