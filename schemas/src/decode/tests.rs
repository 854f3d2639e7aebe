//! Decoder tests: coercions, every dead-letter reason, and property tests for the
//! round trip and the count invariant.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};
use proptest::prelude::*;

use super::*;
use crate::raw::column_index;

const COORDS: SourceCoords<'static> = SourceCoords {
    source: "audit",
    partition: 3,
    offset: 42,
    enqueued_time_micros: Some(1_793_528_130_000_000),
};

fn decode(msg: &str) -> DecodeOutput {
    let mut d = Decoder::new(DecodeOptions {
        seen_time_micros: 7,
        ..DecodeOptions::default()
    });
    d.decode_message(msg.as_bytes(), &COORDS);
    d.finish()
}

fn text(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let a = b.column_by_name(col).unwrap().as_string::<i32>();
    a.is_valid(row).then(|| a.value(row).to_string())
}

fn int64(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let a = b.column_by_name(col).unwrap().as_primitive::<Int64Type>();
    a.is_valid(row).then(|| a.value(row))
}

fn int32(b: &RecordBatch, col: &str, row: usize) -> Option<i32> {
    let a = b.column_by_name(col).unwrap().as_primitive::<Int32Type>();
    a.is_valid(row).then(|| a.value(row))
}

fn boolean(b: &RecordBatch, col: &str, row: usize) -> Option<bool> {
    let a = b.column_by_name(col).unwrap().as_boolean();
    a.is_valid(row).then(|| a.value(row))
}

fn reasons(out: &DecodeOutput) -> Vec<(Option<i32>, String)> {
    let b = &out.dead_letter;
    (0..b.num_rows())
        .map(|i| (int32(b, "_record_index", i), text(b, "reason", i).unwrap()))
        .collect()
}

const REAL: &str = r#"{"records":[{"time":"2026-11-01T10:15:30.1234567Z","category":"AuditEvent","operationName":"SecretGet","resultType":"Success","correlationId":"c-1","callerIpAddress":"10.1.2.3","identity":{"claim":{"http://schemas.microsoft.com/identity/claims/objectidentifier":"oid-1","appid":"app-1","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"alice@contoso.com","tid":"tid-1","xms_az_nwperimid":["p1","p2"],"newclaim":5}},"properties":{"id":"https://kv-prod-01.vault.azure.net/secrets/db-password/5f2c","requestUri":"https://kv-prod-01.vault.azure.net/secrets/db-password?api-version=7.4","httpStatusCode":"403","clientInfo":"azsdk","isAccessPolicyMatch":"False","isRbacAuthorized":true,"tlsVersion":"TLS1_2","secretProperties":{"attributes":{"enabled":true}},"brandNew":"x"},"resourceId":"/SUBSCRIPTIONS/SUB-1/RESOURCEGROUPS/RG-SEC/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PROD-01","operationVersion":"7.4","resultSignature":"Forbidden","durationMs":"23","type":"AzureDiagnostics"}]}"#;

#[test]
fn column_positions_match_schema() {
    let named = [
        (c::SOURCE, "_source"),
        (c::PARTITION, "_partition"),
        (c::OFFSET, "_offset"),
        (c::RECORD_INDEX, "_record_index"),
        (c::ENQUEUED_TIME, "_enqueued_time"),
        (c::TIME, "time"),
        (c::RESOURCE_ID, "resource_id"),
        (c::OPERATION_NAME, "operation_name"),
        (c::OPERATION_VERSION, "operation_version"),
        (c::CATEGORY, "category"),
        (c::RESULT_TYPE, "result_type"),
        (c::RESULT_SIGNATURE, "result_signature"),
        (c::RESULT_DESCRIPTION, "result_description"),
        (c::DURATION_MS, "duration_ms"),
        (c::CALLER_IP_ADDRESS, "caller_ip_address"),
        (c::CORRELATION_ID, "correlation_id"),
        (c::IDENTITY_OBJECT_ID, "identity_object_id"),
        (c::IDENTITY_UPN, "identity_upn"),
        (c::IDENTITY_UNIQUE_NAME, "identity_unique_name"),
        (c::IDENTITY_APP_ID, "identity_app_id"),
        (c::IDENTITY_TENANT_ID, "identity_tenant_id"),
        (c::IDENTITY_SCOPE, "identity_scope"),
        (c::IDENTITY_APP_ID_ACR, "identity_app_id_acr"),
        (c::IDENTITY_IP_ADDRESS, "identity_ip_address"),
        (c::IDENTITY_TYPE, "identity_type"),
        (
            c::IDENTITY_MANAGED_IDENTITY_ID,
            "identity_managed_identity_id",
        ),
        (
            c::IDENTITY_NETWORK_PERIMETER_IDS,
            "identity_network_perimeter_ids",
        ),
        (c::PROPERTIES_ID, "properties_id"),
        (c::REQUEST_URI, "request_uri"),
        (c::HTTP_STATUS_CODE, "http_status_code"),
        (c::CLIENT_INFO, "client_info"),
        (c::IS_ACCESS_POLICY_MATCH, "is_access_policy_match"),
        (c::IS_RBAC_AUTHORIZED, "is_rbac_authorized"),
        (c::TLS_VERSION, "tls_version"),
        (c::APPLIED_ASSIGNMENT_ID, "applied_assignment_id"),
        (c::ADDRESS_AUTHORIZATION_TYPE, "address_authorization_type"),
        (c::TRUSTED_SERVICE, "trusted_service"),
        (c::SECRET_PROPERTIES, "secret_properties"),
        (c::KEY_PROPERTIES, "key_properties"),
        (c::CERTIFICATE_PROPERTIES, "certificate_properties"),
        (c::NESTED_PROPERTIES, "nested_properties"),
        (c::RESULT_CLASS, "result_class"),
        (c::SUBSCRIPTION_ID, "subscription_id"),
        (c::RESOURCE_GROUP, "resource_group"),
        (c::VAULT_NAME, "vault_name"),
        (c::OBJECT_KIND, "object_kind"),
        (c::OBJECT_NAME, "object_name"),
        (c::OBJECT_VERSION, "object_version"),
        (c::EXTRA, "extra"),
        (c::DATE, "date"),
        (c::HOUR, "hour"),
    ];
    assert_eq!(named.len(), c::COUNT);
    assert_eq!(COLUMNS.len(), c::COUNT);
    for (i, name) in named {
        assert_eq!(COLUMNS[i].name, name);
        assert_eq!(column_index(name), i);
    }
}

#[test]
fn real_export_decodes_with_both_claim_forms_and_derived_columns() {
    let out = decode(REAL);
    assert_eq!(out.dead_letter.num_rows(), 0, "{:?}", reasons(&out));
    let b = &out.raw;
    assert_eq!(b.num_rows(), 1);
    let ts = b
        .column_by_name("time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_793_528_130_123_456);
    assert_eq!(text(b, "_source", 0).as_deref(), Some("audit"));
    assert_eq!(int32(b, "_partition", 0), Some(3));
    assert_eq!(int64(b, "_offset", 0), Some(42));
    assert_eq!(int32(b, "_record_index", 0), Some(0));
    assert_eq!(text(b, "identity_object_id", 0).as_deref(), Some("oid-1"));
    assert_eq!(
        text(b, "identity_upn", 0).as_deref(),
        Some("alice@contoso.com")
    );
    assert_eq!(text(b, "identity_app_id", 0).as_deref(), Some("app-1"));
    assert_eq!(
        text(b, "identity_network_perimeter_ids", 0).as_deref(),
        Some(r#"["p1","p2"]"#)
    );
    assert_eq!(int64(b, "duration_ms", 0), Some(23));
    assert_eq!(int32(b, "http_status_code", 0), Some(403));
    assert_eq!(text(b, "result_type", 0).as_deref(), Some("Success"));
    assert_eq!(text(b, "result_class", 0).as_deref(), Some("client_error"));
    assert_eq!(boolean(b, "is_access_policy_match", 0), Some(false));
    assert_eq!(boolean(b, "is_rbac_authorized", 0), Some(true));
    assert_eq!(
        text(b, "secret_properties", 0).as_deref(),
        Some(r#"{"attributes":{"enabled":true}}"#)
    );
    assert_eq!(text(b, "vault_name", 0).as_deref(), Some("kv-prod-01"));
    assert_eq!(text(b, "subscription_id", 0).as_deref(), Some("sub-1"));
    assert_eq!(text(b, "resource_group", 0).as_deref(), Some("rg-sec"));
    assert_eq!(text(b, "object_kind", 0).as_deref(), Some("secret"));
    assert_eq!(text(b, "object_name", 0).as_deref(), Some("db-password"));
    assert_eq!(text(b, "object_version", 0).as_deref(), Some("5f2c"));
    assert_eq!(text(b, "result_description", 0), None);
    let extra: serde_json::Value = serde_json::from_str(&text(b, "extra", 0).unwrap()).unwrap();
    assert_eq!(
        extra,
        serde_json::json!({"identity.claim.newclaim": 5, "properties.brandNew": "x", "type": "AzureDiagnostics"})
    );
    let date = b
        .column_by_name("date")
        .unwrap()
        .as_primitive::<Date32Type>()
        .value(0);
    assert_eq!(crate::time::format_date(i64::from(date)), "2026-11-01");
    assert_eq!(int32(b, "hour", 0), Some(10));
}

#[test]
fn coercions() {
    let rec = |extra: &str| {
        format!(r#"{{"time":"2026-11-01T10:00:00Z","operationName":"KeySign"{extra}}}"#)
    };
    let cases: &[(&str, &str, Option<i64>)] = &[
        (r#","durationMs":17"#, "duration_ms", Some(17)),
        (r#","durationMs":"17""#, "duration_ms", Some(17)),
        (r#","durationMs":" 17 ""#, "duration_ms", Some(17)),
        (r#","durationMs":"17.0""#, "duration_ms", Some(17)),
        (r#","durationMs":1.7e1"#, "duration_ms", Some(17)),
        (r#","durationMs":"""#, "duration_ms", None),
        (r#","durationMs":null"#, "duration_ms", None),
        ("", "duration_ms", None),
    ];
    for (field, col, want) in cases {
        let out = decode(&rec(field));
        assert_eq!(out.raw.num_rows(), 1, "{field}: {:?}", reasons(&out));
        assert_eq!(int64(&out.raw, col, 0), *want, "{field}");
    }
    let out = decode(&rec(
        r#","properties":{"httpStatusCode":"429","isRbacAuthorized":"TRUE","isAccessPolicyMatch":0}"#,
    ));
    assert_eq!(int32(&out.raw, "http_status_code", 0), Some(429));
    assert_eq!(
        text(&out.raw, "result_class", 0).as_deref(),
        Some("throttled")
    );
    assert_eq!(boolean(&out.raw, "is_rbac_authorized", 0), Some(true));
    assert_eq!(boolean(&out.raw, "is_access_policy_match", 0), Some(false));
    let out = decode(&rec(
        r#","resultDescription":12,"callerIpAddress":true,"operationVersion":"7.\u0034""#,
    ));
    assert_eq!(
        text(&out.raw, "result_description", 0).as_deref(),
        Some("12")
    );
    assert_eq!(
        text(&out.raw, "caller_ip_address", 0).as_deref(),
        Some("true")
    );
    assert_eq!(
        text(&out.raw, "operation_version", 0).as_deref(),
        Some("7.4")
    );
    assert_eq!(
        text(&out.raw, "result_class", 0).as_deref(),
        Some("unknown")
    );
    let out = decode(&rec(r#","properties":{"httpStatusCode":503}"#));
    assert_eq!(
        text(&out.raw, "result_class", 0).as_deref(),
        Some("server_error")
    );
    // Timestamp forms: no fraction, offset zone, no zone.
    for (t, want) in [
        ("2026-11-01T12:00:00+02:00", 1_793_527_200_000_000),
        ("2026-11-01T10:00:00", 1_793_527_200_000_000),
        ("2026-11-01T10:00:00.000001Z", 1_793_527_200_000_001),
    ] {
        let out = decode(&format!(r#"{{"time":"{t}","operationName":"X"}}"#));
        let ts = out
            .raw
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), want, "{t}");
    }
    // identity null, claim empty: fine.
    let out = decode(&rec(r#","identity":null,"properties":{}"#));
    assert_eq!(out.raw.num_rows(), 1);
}

#[test]
fn every_dead_letter_reason() {
    let mut d = Decoder::new(DecodeOptions {
        max_message_bytes: 200,
        seen_time_micros: 7,
    });
    let cases: Vec<(Vec<u8>, Reason, Option<i32>)> = vec![
        (vec![b' '; 201], Reason::TooLarge, None),
        (b"{\"records\":[{\"time\":\"\xff\"}]}".to_vec(), Reason::NotUtf8, None),
        (b"{\"records\":[{\"time\":".to_vec(), Reason::InvalidJson, None),
        (b"{\"records\":[42]}".to_vec(), Reason::NotAnObject, Some(0)),
        (b"[1,2]".to_vec(), Reason::NotAnObject, Some(0)),
        (br#"{"time":"2026-11-01T10:00:00Z","operationName":"A","durationMs":"fast"}"#.to_vec(), Reason::UncoercibleValue, Some(0)),
        (br#"{"time":"yesterday","operationName":"A"}"#.to_vec(), Reason::UncoercibleValue, Some(0)),
        (br#"{"time":5,"operationName":"A"}"#.to_vec(), Reason::UncoercibleValue, Some(0)),
        (br#"{"time":"2026-11-01T10:00:00Z","operationName":"A","properties":{"isRbacAuthorized":"maybe"}}"#.to_vec(), Reason::UncoercibleValue, Some(0)),
        (br#"{"time":"2026-11-01T10:00:00Z","operationName":"A","properties":{"httpStatusCode":{}}}"#.to_vec(), Reason::UncoercibleValue, Some(0)),
        (br#"{"time":"2026-11-01T10:00:00Z","operationName":"A","identity":7}"#.to_vec(), Reason::UncoercibleValue, Some(0)),
        (br#"{"time":"2026-11-01T10:00:00Z"}"#.to_vec(), Reason::MissingField, Some(0)),
        (br#"{"operationName":"A"}"#.to_vec(), Reason::MissingField, Some(0)),
        (br#"{"time":"2026-11-01T10:00:00Z","operationName":" "}"#.to_vec(), Reason::MissingField, Some(0)),
        (br#"{"records":[]}"#.to_vec(), Reason::Empty, None),
        (b"  \n ".to_vec(), Reason::Empty, None),
    ];
    for (bytes, _, _) in &cases {
        let o = d.decode_message(bytes, &COORDS);
        assert_eq!(
            o,
            MessageOutcome {
                raw_rows: 0,
                dead_letter_rows: 1
            },
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let out = d.finish();
    let got = reasons(&out);
    for (i, (bytes, reason, index)) in cases.iter().enumerate() {
        assert_eq!(
            got[i],
            (*index, reason.code().to_string()),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(reason.is_message_level(), index.is_none());
    }
    let covered: std::collections::HashSet<_> = cases.iter().map(|c| c.1).collect();
    assert_eq!(covered.len(), Reason::ALL.len(), "every reason has a case");
    // Original bytes: whole message for message-level reasons, the record's text otherwise.
    let orig = out
        .dead_letter
        .column_by_name("original")
        .unwrap()
        .as_binary::<i32>();
    assert_eq!(orig.value(1), cases[1].0.as_slice());
    assert_eq!(orig.value(3), b"42");
    // Messages name the field, never the value.
    let msg = text(&out.dead_letter, "message", 5).unwrap();
    assert!(msg.contains("durationMs") && !msg.contains("fast"), "{msg}");
    let seen = out
        .dead_letter
        .column_by_name("seen_time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(seen.value(0), 7);
}

#[test]
fn bad_record_does_not_spoil_its_neighbours() {
    let msg = r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A"},{"operationName":"B"},"x",{"time":"2026-11-01T11:00:00Z","operationName":"C"}]}"#;
    let out = decode(msg);
    assert_eq!(out.raw.num_rows(), 2);
    assert_eq!(
        (
            int32(&out.raw, "_record_index", 0),
            int32(&out.raw, "_record_index", 1)
        ),
        (Some(0), Some(3))
    );
    assert_eq!(
        reasons(&out),
        vec![
            (Some(1), "missing_field".into()),
            (Some(2), "not_an_object".into())
        ]
    );
}

#[test]
fn json_lines_and_bare_records() {
    let msg = "{\"time\":\"2026-11-01T10:00:00Z\",\"operationName\":\"A\"}\n{\"records\":[{\"time\":\"2026-11-01T10:00:00Z\",\"operationName\":\"B\"}]}\n";
    let out = decode(msg);
    assert_eq!(out.raw.num_rows(), 2);
    assert_eq!(text(&out.raw, "operation_name", 1).as_deref(), Some("B"));
    assert_eq!(int32(&out.raw, "_record_index", 1), Some(1));
}

/// A generated record and the values it must decode to.
#[derive(Debug, Clone)]
struct GenRecord {
    micros: i64,
    op: String,
    duration: Option<i64>,
    duration_as_string: bool,
    status: Option<i32>,
    oid: Option<String>,
    long_claims: bool,
    rbac: Option<bool>,
    ip: Option<String>,
}

fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _\\-\"\\\\/é€\u{1F600}]{1,20}"
}

fn arb_record() -> impl Strategy<Value = GenRecord> {
    (
        0i64..4_102_444_800_000_000,
        arb_text(),
        proptest::option::of(0i64..10_000_000),
        any::<bool>(),
        proptest::option::of(100i32..600),
        proptest::option::of(arb_text()),
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(arb_text()),
    )
        .prop_map(
            |(micros, op, duration, duration_as_string, status, oid, long_claims, rbac, ip)| {
                GenRecord {
                    micros,
                    op,
                    duration,
                    duration_as_string,
                    status,
                    oid,
                    long_claims,
                    rbac,
                    ip,
                }
            },
        )
        .prop_filter("operationName must not be blank", |r| {
            !r.op.trim().is_empty()
        })
}

fn to_json(r: &GenRecord) -> serde_json::Value {
    let mut rec = serde_json::Map::new();
    rec.insert(
        "time".into(),
        crate::time::format_timestamp_micros(r.micros).into(),
    );
    rec.insert("operationName".into(), r.op.clone().into());
    if let Some(d) = r.duration {
        rec.insert(
            "durationMs".into(),
            if r.duration_as_string {
                d.to_string().into()
            } else {
                d.into()
            },
        );
    }
    if let Some(ip) = &r.ip {
        rec.insert("callerIpAddress".into(), ip.clone().into());
    }
    let key = if r.long_claims {
        "http://schemas.microsoft.com/identity/claims/objectidentifier"
    } else {
        "oid"
    };
    let mut claim = serde_json::Map::new();
    if let Some(o) = &r.oid {
        claim.insert(key.into(), o.clone().into());
    }
    rec.insert("identity".into(), serde_json::json!({ "claim": claim }));
    let mut props = serde_json::Map::new();
    if let Some(s) = r.status {
        props.insert(
            "httpStatusCode".into(),
            if r.duration_as_string {
                s.to_string().into()
            } else {
                s.into()
            },
        );
    }
    if let Some(b) = r.rbac {
        props.insert("isRbacAuthorized".into(), b.into());
    }
    rec.insert("properties".into(), props.into());
    rec.into()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn generated_envelopes_decode_to_the_values_put_in(records in proptest::collection::vec(arb_record(), 1..20)) {
        let msg = serde_json::json!({ "records": records.iter().map(to_json).collect::<Vec<_>>() }).to_string();
        let out = decode(&msg);
        prop_assert_eq!(out.dead_letter.num_rows(), 0);
        let b = &out.raw;
        prop_assert_eq!(b.num_rows(), records.len());
        let ts = b.column_by_name("time").unwrap().as_primitive::<TimestampMicrosecondType>();
        for (i, r) in records.iter().enumerate() {
            prop_assert_eq!(ts.value(i), r.micros);
            prop_assert_eq!(text(b, "operation_name", i), Some(r.op.clone()));
            prop_assert_eq!(int64(b, "duration_ms", i), r.duration);
            prop_assert_eq!(int32(b, "http_status_code", i), r.status);
            prop_assert_eq!(text(b, "identity_object_id", i), r.oid.clone());
            prop_assert_eq!(boolean(b, "is_rbac_authorized", i), r.rbac);
            prop_assert_eq!(text(b, "caller_ip_address", i), r.ip.clone());
            prop_assert_eq!(int32(b, "_record_index", i), Some(i as i32));
            prop_assert_eq!(text(b, "extra", i), None);
        }
    }

    #[test]
    fn arbitrary_bytes_never_break_the_count_invariant(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_accounted(&bytes);
    }

    #[test]
    fn mangled_envelopes_never_break_the_count_invariant(
        records in proptest::collection::vec(arb_record(), 1..5),
        cut in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut msg = serde_json::json!({ "records": records.iter().map(to_json).collect::<Vec<_>>() }).to_string().into_bytes();
        let at = cut.index(msg.len());
        msg.splice(at..at, junk);
        check_accounted(&msg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The envelope fast path and the serde path (the reference) give the same rows and
    /// dead letters, byte for byte, on good envelopes and on mangled ones.
    #[test]
    fn fast_path_matches_the_serde_path(
        records in proptest::collection::vec(arb_record(), 1..5),
        cut in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(prop::sample::select(b" \"{}[],:\\0-.e\x01\xffu".to_vec()), 0..3),
        pretty in any::<bool>(),
    ) {
        let v = serde_json::json!({ "records": records.iter().map(to_json).collect::<Vec<_>>() });
        let mut msg = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap().into_bytes();
        if junk.is_empty() {
            prop_assert!(Decoder::new(DecodeOptions::default()).fast_path_reads(&msg));
        }
        let at = cut.index(msg.len());
        msg.splice(at..at, junk);
        assert_same_both_ways(&msg);
    }
}

/// Decodes `bytes` through the fast path and the reference, and compares everything.
fn assert_same_both_ways(bytes: &[u8]) {
    let opts = DecodeOptions {
        seen_time_micros: 7,
        ..DecodeOptions::default()
    };
    let (mut fast, mut reference) = (Decoder::new(opts), Decoder::new(opts));
    let a = fast.decode_message(bytes, &COORDS);
    let b = reference.decode_message_reference(bytes, &COORDS);
    assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes));
    let (x, y) = (fast.finish(), reference.finish());
    assert_eq!(x.raw, y.raw, "{}", String::from_utf8_lossy(bytes));
    assert_eq!(
        x.dead_letter,
        y.dead_letter,
        "{}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn fast_path_matches_the_serde_path_on_edge_cases() {
    let rec = r#"{"time":"2026-11-01T10:00:00Z","operationName":"A"}"#;
    let cases = [
        format!(r#"{{"records":[{rec}]}}"#),
        format!("\u{feff} {{ \"records\" : [ {rec} , 42 , \"x\", null ] }} \n"),
        format!(r#"{{"records":[{rec}],"other":1}}"#),
        format!(r#"{{"records":[{rec}],"records":[{rec},{rec}]}}"#),
        format!(r#"{{"records":[{rec}]}} {{"records":[{rec}]}}"#),
        r#"{"records":[]}"#.to_string(),
        r#"{"records":{}}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A","identity":1e999}]}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A","identity":"{\"claim\":{\"oid\":\"x\"}} junk"}]}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A","identity":[1,{}],"properties":true}]}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A\ud83d\ude00","x\u00e9\n":"\ud800"}]}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A","k\"ey":"v\u0001","e":""}]}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A","durationMs":01}]}"#.to_string(),
        r#"{"records":[{"time":"2026-11-01T10:00:00Z","operationName":"A","durationMs":-0.0e+1}]}"#.to_string(),
        format!(r#"{{"records":[{}{rec}{}]}}"#, "[".repeat(120), "]".repeat(120)),
        REAL.to_string(),
    ];
    for msg in &cases {
        assert_same_both_ways(msg.as_bytes());
    }
    assert!(Decoder::new(DecodeOptions::default()).fast_path_reads(REAL.as_bytes()));
}

/// Every message is accounted for: one message-level dead letter, or record indexes
/// 0..n each exactly once across raw and dead-letter rows.
fn check_accounted(bytes: &[u8]) {
    let mut d = Decoder::new(DecodeOptions::default());
    let o = d.decode_message(bytes, &COORDS);
    let out = d.finish();
    assert_eq!(o.raw_rows, out.raw.num_rows());
    assert_eq!(o.dead_letter_rows, out.dead_letter.num_rows());
    assert!(o.raw_rows + o.dead_letter_rows >= 1, "nothing produced");
    let dl: Vec<Option<i32>> = (0..out.dead_letter.num_rows())
        .map(|i| int32(&out.dead_letter, "_record_index", i))
        .collect();
    if dl.contains(&None) {
        assert_eq!((o.raw_rows, o.dead_letter_rows), (0, 1));
        return;
    }
    let mut idx: Vec<i32> = dl.into_iter().flatten().collect();
    idx.extend((0..out.raw.num_rows()).filter_map(|i| int32(&out.raw, "_record_index", i)));
    idx.sort_unstable();
    assert_eq!(idx, (0..idx.len() as i32).collect::<Vec<_>>());
}

mod shapes;

/// Keys in a pool the fast path's key memo learns from: diagnostic-settings keys, their
/// other shapes' spellings, keys whose slots differ by shape, and unknown ones.
const MEMO_KEYS: &[(&str, &str)] = &[
    ("time", r#""2026-11-01T10:00:00Z""#),
    ("Time", r#""2026-11-01T11:00:00Z""#),
    ("TimeGenerated", r#""2026-11-01T12:00:00Z""#),
    ("operationName", r#""SecretGet""#),
    ("OperationName", r#""KeyGet""#),
    (
        "resourceId",
        r#""/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV""#,
    ),
    (
        "_ResourceId",
        r#""/subscriptions/s/resourcegroups/g/providers/microsoft.keyvault/vaults/kv2""#,
    ),
    ("httpStatusCode", "403"),
    ("requestUri", r#""https://kv.vault.azure.net/secrets/a/1""#),
    ("Type", r#""AzureDiagnostics""#),
    ("type", r#""AzureDiagnostics""#),
    ("httpStatusCode_d", "404"),
    ("identity_claim_oid_g", r#""o-1""#),
    (
        "identity",
        r#"{"claim":{"oid":"o-2","appid":"a","http://schemas.microsoft.com/identity/claims/tenantid":"t"}}"#,
    ),
    (
        "identity",
        r#"{"claim":{"http_schemas_microsoft_com_identity":{"claims":{"objectidentifier":"o-3"}}}}"#,
    ),
    (
        "properties",
        r#"{"id":"https://kv.vault.azure.net/keys/k/2","httpStatusCode":"200","isRbacAuthorized":"yes"}"#,
    ),
    (
        "properties",
        r#"{"requestUri":"https://kv.vault.azure.net/certificates/c","clientInfo":"x","new":1}"#,
    ),
    ("durationMs", r#""12""#),
    ("durationMs", r#""many""#),
    ("category", r#""AuditEvent""#),
    ("brandNew", "[1,2]"),
    ("d\\u0075rationMs", "7"),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The key memo carries what one message taught it to the next: whatever the keys'
    /// order and spelling, from message to message, and with the shape forced or not
    /// between messages, the fast path gives what the reference gives.
    #[test]
    fn the_key_memo_never_changes_what_a_record_gives(
        messages in proptest::collection::vec(
            (
                proptest::collection::vec(
                    proptest::collection::vec(0..MEMO_KEYS.len(), 0..10),
                    1..4,
                ),
                proptest::option::of(0..Shape::ALL.len()),
            ),
            1..6,
        )
    ) {
        let opts = DecodeOptions { seen_time_micros: 7, ..DecodeOptions::default() };
        let (mut fast, mut reference) = (Decoder::new(opts), Decoder::new(opts));
        for (records, shape) in &messages {
            let records: Vec<String> = records
                .iter()
                .map(|keys| {
                    let fields: Vec<String> = keys
                        .iter()
                        .map(|&k| format!(r#""{}":{}"#, MEMO_KEYS[k].0, MEMO_KEYS[k].1))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect();
            let msg = format!(r#"{{"records":[{}]}}"#, records.join(","));
            let shape = shape.map(|i| Shape::ALL[i]);
            fast.set_shape(shape);
            reference.set_shape(shape);
            let a = fast.decode_message(msg.as_bytes(), &COORDS);
            let b = reference.decode_message_reference(msg.as_bytes(), &COORDS);
            prop_assert_eq!(a, b, "{}", msg);
        }
        let (x, y) = (fast.finish(), reference.finish());
        prop_assert_eq!(x.raw, y.raw);
        prop_assert_eq!(x.dead_letter, y.dead_letter);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Sizing the builders for the expected rows (after the first message with a row,
    /// whatever it holds) never changes the batches: the rows so far are carried over.
    #[test]
    fn reserving_rows_changes_nothing(
        messages in proptest::collection::vec(
            proptest::collection::vec(arb_record(), 0..4), 1..5),
        expected in 0usize..40,
    ) {
        let opts = DecodeOptions { seen_time_micros: 7, ..DecodeOptions::default() };
        let (mut plain, mut sized) = (Decoder::new(opts), Decoder::new(opts));
        sized.reserve_rows(expected);
        for round in 0..2 {
            for records in &messages {
                let v = serde_json::json!({ "records": records.iter().map(to_json).collect::<Vec<_>>() });
                let msg = serde_json::to_vec(&v).unwrap();
                prop_assert_eq!(plain.decode_message(&msg, &COORDS), sized.decode_message(&msg, &COORDS));
            }
            let (a, b) = (plain.finish(), sized.finish());
            prop_assert_eq!(a.raw, b.raw, "round {}", round);
            prop_assert_eq!(a.dead_letter, b.dead_letter);
        }
    }
}

/// Unknown fields' names: plain, needing escapes once written back, escaped in the
/// message, and under each section (and a claim namespace) of a record.
const EXTRA_KEYS: &[&str] = &[
    "type",
    "newField",
    "",
    "k\\\"ey",
    "k\\u0065y",
    "tab\\t",
    "é",
    "identity\":{\"claim\":{\"newClaim",
    "properties\":{\"newProp",
    "identity\":{\"newIdentity",
];

/// Their values: every JSON kind, empty ones, and strings with escapes of every sort.
const EXTRA_VALUES: &[&str] = &[
    r#""AzureDiagnostics""#,
    r#""""#,
    r#"" ""#,
    "null",
    "true",
    "false",
    "0",
    "-1.5e3",
    "{}",
    r#"{"a":"\u0041","b":[1,null]}"#,
    r#"[1,"a"]"#,
    r#""\u00e9\n\"\\\/""#,
    r#""\u0000""#,
    r#""é""#,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// What the fast path writes to `extra` for unknown fields (their text as it stands
    /// when nothing needs escaping again) is what the reference writes, for every kind of
    /// value and name, in every section, null and empty ones included, in every shape.
    #[test]
    fn unknown_fields_go_to_extra_as_the_reference_writes_them(
        fields in proptest::collection::vec((0..EXTRA_KEYS.len(), 0..EXTRA_VALUES.len()), 0..6),
        shape in proptest::option::of(0..Shape::ALL.len()),
    ) {
        let mut record = String::from(r#"{"time":"2026-11-01T10:00:00Z","operationName":"A""#);
        for &(k, v) in &fields {
            let key = EXTRA_KEYS[k];
            // A key that opens a section closes it after its value.
            let closing = "}".repeat(key.matches('{').count());
            record.push_str(&format!(r#","{key}":{}{closing}"#, EXTRA_VALUES[v]));
        }
        record.push('}');
        let msg = format!(r#"{{"records":[{record},{record}]}}"#);
        let opts = DecodeOptions { seen_time_micros: 7, ..DecodeOptions::default() };
        let shape = shape.map(|i| Shape::ALL[i]);
        let mut fast = Decoder::new(opts).with_shape(shape);
        let mut reference = Decoder::new(opts).with_shape(shape);
        let a = fast.decode_message(msg.as_bytes(), &COORDS);
        let b = reference.decode_message_reference(msg.as_bytes(), &COORDS);
        prop_assert_eq!(a, b, "{}", msg);
        let (x, y) = (fast.finish(), reference.finish());
        prop_assert_eq!(x.raw, y.raw, "{}", msg);
        prop_assert_eq!(x.dead_letter, y.dead_letter, "{}", msg);
    }
}
