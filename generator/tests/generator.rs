//! Behaviour of the public generator API: determinism, message shape, bad messages,
//! record variants and injected attacks.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use kvlake_generator::{
    Attack, BAD_REASONS, Format, Generator, GeneratorConfig, InjectedAttack, Message, MessageKind,
};
use serde_json::Value;

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
/// 2026-11-01T00:00:00Z
const START: i64 = 1_793_491_200 * SECOND;

const LONG_OID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";

fn generator(seed: u64) -> Generator {
    Generator::new(GeneratorConfig {
        seed,
        ..GeneratorConfig::default()
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` to UTC micros.
fn parse_time(s: &str) -> i64 {
    let num = |range: std::ops::Range<usize>| s[range].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    let rest = &s[19..];
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(rest) => rest.split_at(rest.find(['Z', '+']).unwrap()),
        None => ("", rest),
    };
    assert!(zone == "Z" || zone == "+00:00", "zone of {s}");
    let micros = format!("{fraction:0<6}")[..6].parse::<i64>().unwrap();
    secs * SECOND + micros
}

fn time_of(record: &Value) -> i64 {
    parse_time(record["time"].as_str().unwrap())
}

fn claim<'a>(record: &'a Value, short: &str, long: &str) -> Option<&'a str> {
    let claims = record.get("identity")?.get("claim")?;
    claims.get(short).or_else(|| claims.get(long))?.as_str()
}

fn oid(record: &Value) -> Option<&str> {
    claim(record, "oid", LONG_OID)
}

/// `kv-payments-prod-01` from the record's resource id.
fn vault(record: &Value) -> String {
    record["resourceId"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_lowercase()
}

fn op(record: &Value) -> &str {
    record["operationName"].as_str().unwrap()
}

fn status(record: &Value) -> u64 {
    let code = &record["properties"]["httpStatusCode"];
    code.as_u64()
        .or_else(|| code.as_str()?.parse().ok())
        .unwrap()
}

fn records_of(message: &Message) -> Vec<Value> {
    let value: Value = serde_json::from_slice(&message.bytes).unwrap();
    value["records"].as_array().unwrap().clone()
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let config = GeneratorConfig {
        seed: 42,
        bad_message_rate: 0.05,
        attacks: vec![
            Attack::MassSecretRetrieval {
                at_micros: 10 * SECOND,
                count: 50,
            },
            Attack::VolumeSpike {
                at_micros: 20 * SECOND,
                factor: 5.0,
            },
        ],
        ..GeneratorConfig::default()
    };
    let a: Vec<Message> = Generator::new(config.clone()).take(1000).collect();
    let b: Vec<Message> = Generator::new(config.clone()).take(1000).collect();
    assert_eq!(a, b);
    let c: Vec<Message> = Generator::new(GeneratorConfig {
        seed: 43,
        ..config.clone()
    })
    .take(1000)
    .collect();
    assert_ne!(a, c);
    assert!(a.iter().zip(&c).filter(|(x, y)| x.bytes == y.bytes).count() < 10);

    let mut out_a = Vec::new();
    let mut out_b = Vec::new();
    Generator::new(config.clone()).write_records(5000, Format::Envelope, &mut out_a);
    Generator::new(config.clone()).write_records(5000, Format::Envelope, &mut out_b);
    assert_eq!(out_a, out_b);

    let mut x = generator(1);
    let mut y = generator(1);
    for _ in 0..200 {
        assert_eq!(x.next_record(), y.next_record());
    }
}

#[test]
fn good_messages_announce_their_records() {
    let config = GeneratorConfig {
        seed: 3,
        records_per_message: (2, 9),
        ..GeneratorConfig::default()
    };
    let mut previous = 0;
    let mut sizes = BTreeSet::new();
    for message in Generator::new(config).take(1000) {
        let MessageKind::Good { records: announced } = message.kind else {
            panic!("bad message with a zero bad rate: {:?}", message.kind);
        };
        let records = records_of(&message);
        assert_eq!(records.len(), announced);
        assert!((2..=9).contains(&announced));
        sizes.insert(announced);
        let first = time_of(&records[0]);
        assert!(first <= message.event_time_micros && message.event_time_micros - first < SECOND);
        for record in &records {
            assert!(record.is_object());
            assert!(!op(record).is_empty());
            assert_eq!(record["category"], "AuditEvent");
            let time = time_of(record);
            // Times are floored to their printed precision (down to whole seconds).
            assert!(
                time > previous - SECOND,
                "event time goes backwards: {} after {previous}",
                record["time"]
            );
            previous = previous.max(time);
        }
    }
    assert_eq!(sizes.len(), 8, "every size of the range occurs: {sizes:?}");
}

#[test]
fn write_records_writes_exactly_the_requested_records() {
    let config = GeneratorConfig {
        seed: 5,
        bad_message_rate: 0.3,
        ..GeneratorConfig::default()
    };
    let mut out = Vec::new();
    let lines = Generator::new(config.clone()).write_records(2345, Format::Lines, &mut out);
    assert_eq!(lines, 2345);
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.ends_with('\n'));
    let mut count = 0;
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert!(record.get("time").is_some() && record.get("operationName").is_some());
        count += 1;
    }
    assert_eq!(count, 2345);

    let mut out = Vec::new();
    let messages = Generator::new(config).write_records(2345, Format::Envelope, &mut out);
    let text = std::str::from_utf8(&out).unwrap();
    assert_eq!(text.lines().count(), messages);
    let mut total = 0;
    for line in text.lines() {
        let envelope: Value = serde_json::from_str(line).unwrap();
        let records = envelope["records"].as_array().unwrap();
        assert!((1..=25).contains(&records.len()));
        assert!(records.iter().all(|r| r.get("operationName").is_some()));
        total += records.len();
    }
    assert_eq!(total, 2345);
    assert!(messages > 2345 / 25 && messages < 2345 / 5);
}

#[test]
fn bad_messages_have_their_defect_at_the_configured_rate() {
    let config = GeneratorConfig {
        seed: 11,
        bad_message_rate: 0.2,
        ..GeneratorConfig::default()
    };
    let messages: Vec<Message> = Generator::new(config).take(3000).collect();
    let bad: Vec<(&Message, &str)> = messages
        .iter()
        .filter_map(|m| match m.kind {
            MessageKind::Bad { reason } => Some((m, reason)),
            MessageKind::Good { .. } => None,
        })
        .collect();
    assert!(
        (450..=750).contains(&bad.len()),
        "{} bad of 3000",
        bad.len()
    );
    for (i, (message, reason)) in bad.iter().enumerate() {
        assert_eq!(*reason, BAD_REASONS[i % BAD_REASONS.len()]);
        let bytes = &message.bytes;
        match *reason {
            "invalid_json" => {
                assert!(std::str::from_utf8(bytes).is_ok());
                assert!(serde_json::from_slice::<Value>(bytes).is_err());
            }
            "not_utf8" => {
                assert!(std::str::from_utf8(bytes).is_err());
                assert!(bytes.contains(&0xff));
                let repaired: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0xff).collect();
                let envelope: Value = serde_json::from_slice(&repaired).unwrap();
                assert_eq!(envelope["records"].as_array().unwrap().len(), 1);
            }
            "not_an_object" => {
                let envelope: Value = serde_json::from_slice(bytes).unwrap();
                let records = envelope["records"].as_array().unwrap();
                assert_eq!(records.len(), 1);
                assert!(!records[0].is_object());
            }
            "uncoercible_value" => {
                let records = records_of(message);
                assert_eq!(records.len(), 1);
                assert_eq!(records[0]["durationMs"], "fast");
                assert!(records[0].get("operationName").is_some());
            }
            "missing_field" => {
                let records = records_of(message);
                assert_eq!(records.len(), 1);
                assert!(records[0].get("operationName").is_none());
                assert!(records[0].get("time").is_some());
            }
            other => panic!("unknown reason {other}"),
        }
    }
    let no_bad = Generator::new(GeneratorConfig {
        bad_message_rate: 0.0,
        ..GeneratorConfig::default()
    });
    assert!(
        no_bad
            .take(2000)
            .all(|m| matches!(m.kind, MessageKind::Good { .. }))
    );
}

#[test]
fn record_variants_all_occur() {
    let mut out = Vec::new();
    generator(9).write_records(20_000, Format::Lines, &mut out);
    let text = std::str::from_utf8(&out).unwrap();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hit = |name: &'static str, yes: bool| {
        if yes {
            *seen.entry(name).or_default() += 1;
        }
    };
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<u64, usize> = BTreeMap::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let time = r["time"].as_str().unwrap();
        let fraction = time
            .find('.')
            .map(|dot| time[dot + 1..].trim_end_matches(['Z', '+', ':', '0']).len());
        hit("time 7 digits Z", time.len() == 28 && time.ends_with('Z'));
        hit("time 3 digits", time.len() == 24);
        hit("time no fraction", fraction.is_none());
        hit("time +00:00", time.ends_with("+00:00"));
        parse_time(time);
        hit("duration string", r["durationMs"].is_string());
        hit("duration number", r["durationMs"].is_u64());
        hit("duration missing", r.get("durationMs").is_none());
        hit("description missing", r.get("resultDescription").is_none());
        let p = &r["properties"];
        hit("status string", p["httpStatusCode"].is_string());
        hit("status number", p["httpStatusCode"].is_u64());
        hit("bool string", p["isRbacAuthorized"].is_string());
        hit("bool native", p["isRbacAuthorized"].is_boolean());
        hit("False", p["isAccessPolicyMatch"] == "False");
        for nested in [
            "secretProperties",
            "keyProperties",
            "certificateProperties",
            "properties",
        ] {
            hit(nested, p[nested].is_object());
        }
        hit(
            "location (archive shape)",
            r.get("location").is_some() && line.starts_with("{\"time\":"),
        );
        hit(
            "type (event hub shape)",
            r["type"] == "AzureDiagnostics" && line.starts_with("{\"time\":"),
        );
        match r.get("identity") {
            None => hit("401 without identity", status(&r) == 401),
            Some(identity) => {
                let claims = identity["claim"].as_object().unwrap();
                hit(
                    "short claims",
                    claims.contains_key("oid") && claims.contains_key("tid"),
                );
                hit("long claims", claims.contains_key(LONG_OID));
                let user = claims["idtyp"] == "user";
                let has_upn = claims.contains_key("upn")
                    || claims
                        .contains_key("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn");
                assert_eq!(user, has_upn, "users and only users have a upn: {line}");
                hit("user", user && claims.contains_key("ipaddr"));
                hit(
                    "service principal",
                    !user && !claims.contains_key("xms_mirid"),
                );
                let mirid = claims
                    .get("xms_mirid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                hit(
                    "managed identity",
                    mirid.contains("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"),
                );
                hit(
                    "perimeter array",
                    claims.get("xms_az_nwperimid").is_some_and(|v| {
                        v.as_array()
                            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
                    }),
                );
            }
        }
        let code = status(&r);
        let signature = r["resultSignature"].as_str().unwrap();
        let expected = match code {
            200 => "OK",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            429 => "TooManyRequests",
            _ => "InternalServerError",
        };
        assert_eq!(signature, expected);
        if code == 403 {
            assert_eq!(r["resultType"], "Success");
        }
        let name = op(&r);
        let uri = p["requestUri"].as_str().unwrap();
        let id = p["id"].as_str().unwrap();
        let host = format!("https://{}.vault.azure.net/", vault(&r));
        assert!(uri.starts_with(&host) && id.starts_with(&host), "{line}");
        let path = &id[host.len()..];
        match name {
            "Authentication" | "VaultGet" => assert_eq!(path, ""),
            "SecretList" => assert_eq!(path, "secrets"),
            "KeyList" => assert_eq!(path, "keys"),
            "SecretGet" => assert!(
                path.starts_with("secrets/") && path.split('/').count() == 3,
                "{path}"
            ),
            "KeyDecrypt" => assert!(uri.contains("/keys/") && uri.contains("/decrypt?"), "{uri}"),
            "CertificateGet" => assert!(path.starts_with("certificates/")),
            _ => {}
        }
        *ops.entry(name.to_owned()).or_default() += 1;
        *statuses.entry(code).or_default() += 1;
    }
    for (name, count) in &seen {
        assert!(*count > 0, "{name}");
    }
    let expected = [
        "time 7 digits Z",
        "time 3 digits",
        "time no fraction",
        "time +00:00",
        "duration string",
        "duration number",
        "duration missing",
        "description missing",
        "status string",
        "status number",
        "bool string",
        "bool native",
        "False",
        "secretProperties",
        "keyProperties",
        "certificateProperties",
        "properties",
        "location (archive shape)",
        "type (event hub shape)",
        "401 without identity",
        "short claims",
        "long claims",
        "user",
        "service principal",
        "managed identity",
        "perimeter array",
    ];
    for name in expected {
        assert!(seen.contains_key(name), "variant never generated: {name}");
    }
    let share = |name: &str| *ops.get(name).unwrap_or(&0) as f64 / 20_000.0;
    assert!(
        (0.30..0.40).contains(&share("SecretGet")),
        "SecretGet {}",
        share("SecretGet")
    );
    assert!((0.05..0.11).contains(&share("Authentication")));
    let key_crypto: f64 = [
        "KeyDecrypt",
        "KeyEncrypt",
        "KeyUnwrap",
        "KeyWrap",
        "KeySign",
        "KeyVerify",
    ]
    .map(share)
    .iter()
    .sum();
    assert!(
        (0.16..0.24).contains(&key_crypto),
        "key crypto {key_crypto}"
    );
    let ok = *statuses.get(&200).unwrap_or(&0) as f64 / 20_000.0;
    assert!((0.90..0.96).contains(&ok), "200 share {ok}");
    for code in [401, 403, 404, 429] {
        assert!(
            statuses.contains_key(&code),
            "status {code} never generated"
        );
    }
}

#[test]
fn caller_ips_are_few_per_identity() {
    let mut g = generator(21);
    let mut ips: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for _ in 0..10_000 {
        let r = g.next_record();
        if let Some(oid) = oid(&r) {
            ips.entry(oid.to_owned())
                .or_default()
                .insert(r["callerIpAddress"].as_str().unwrap().to_owned());
        }
    }
    assert!(ips.len() > 100);
    assert!(ips.values().all(|set| (1..=3).contains(&set.len())));
    let all: BTreeSet<&String> = ips.values().flatten().collect();
    assert!(all.iter().any(|ip| ip.starts_with("10.")));
    assert!(
        all.iter()
            .any(|ip| ip.starts_with("203.0.113.") || ip.starts_with("198.51.100."))
    );
    assert!(
        !all.iter().any(|ip| ip.starts_with("192.0.2.")),
        "192.0.2.0/24 is kept for attacks"
    );
}

#[test]
fn generator_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let g = generator(0);
    assert_send(&g);
    let handle = std::thread::spawn(move || g.take(3).count());
    assert_eq!(handle.join().unwrap(), 3);
}

#[test]
fn out_of_range_config_is_corrected() {
    let config = GeneratorConfig {
        vaults: 0,
        identities: 0,
        records_per_message: (0, 0),
        events_per_second: f64::NAN,
        bad_message_rate: 7.0,
        ..GeneratorConfig::default()
    };
    let mut g = Generator::new(config);
    for _ in 0..20 {
        assert!(matches!(g.next_message().kind, MessageKind::Bad { .. }));
    }
    let mut out = Vec::new();
    assert_eq!(g.write_records(10, Format::Envelope, &mut out), 10);
    let value = g.next_record();
    assert!(value.get("time").is_some());
}

/// One run with every attack, shared by the attack tests.
struct AttackRun {
    records: Vec<Value>,
    injected: Vec<InjectedAttack>,
}

fn attack_run() -> &'static AttackRun {
    static RUN: OnceLock<AttackRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let config = GeneratorConfig {
            seed: 2026,
            vaults: 6,
            identities: 60,
            events_per_second: 1.0,
            attacks: vec![
                Attack::VolumeSpike {
                    at_micros: 11 * HOUR,
                    factor: 8.0,
                },
                Attack::NewIpForIdentity {
                    at_micros: 9 * HOUR,
                },
                Attack::MassSecretRetrieval {
                    at_micros: 9 * HOUR + 30 * MINUTE,
                    count: 300,
                },
                Attack::ListThenRead {
                    at_micros: 10 * HOUR,
                    gets: 25,
                },
                Attack::SensitiveOperation {
                    at_micros: 10 * HOUR + 15 * MINUTE,
                    operation: "SecretPurge".into(),
                },
                Attack::NewIdentityOnVault {
                    at_micros: 10 * HOUR + 20 * MINUTE,
                },
                Attack::DeniedBurst {
                    at_micros: 10 * HOUR + 40 * MINUTE,
                    count: 40,
                },
            ],
            ..GeneratorConfig::default()
        };
        let mut g = Generator::new(config);
        assert!(
            g.injected().is_empty(),
            "nothing is injected before its time"
        );
        let mut records = Vec::new();
        loop {
            let record = g.next_record();
            let done = time_of(&record) > START + 12 * HOUR + 10 * MINUTE;
            records.push(record);
            if done {
                break;
            }
        }
        AttackRun {
            records,
            injected: g.injected().to_vec(),
        }
    })
}

fn injected(matches: impl Fn(&Attack) -> bool) -> &'static InjectedAttack {
    let run = attack_run();
    let found: Vec<&InjectedAttack> = run.injected.iter().filter(|i| matches(&i.attack)).collect();
    assert_eq!(found.len(), 1, "injected exactly once: {:?}", run.injected);
    found[0]
}

fn by(oid_of: &str) -> impl Iterator<Item = &'static Value> + '_ {
    attack_run()
        .records
        .iter()
        .filter(move |r| oid(r) == Some(oid_of))
}

#[test]
fn all_attacks_are_reported_in_time_order() {
    let run = attack_run();
    assert_eq!(run.injected.len(), 7);
    assert!(
        run.injected
            .windows(2)
            .all(|w| w[0].start_micros <= w[1].start_micros)
    );
    for attack in &run.injected {
        assert_eq!(attack.start_micros, START + attack.attack.at_micros());
        assert!(attack.end_micros >= attack.start_micros);
        assert!(attack.vault.starts_with("kv-"));
    }
}

#[test]
fn mass_secret_retrieval_is_visible() {
    let attack = injected(|a| matches!(a, Attack::MassSecretRetrieval { .. }));
    let who = attack.object_id.as_deref().unwrap();
    let reads = by(who)
        .filter(|r| vault(r) == attack.vault)
        .filter(|r| matches!(op(r), "SecretGet" | "KeyGet" | "VaultGet"))
        .filter(|r| (attack.start_micros..=attack.start_micros + HOUR).contains(&time_of(r)))
        .count();
    assert!(reads >= 300, "{reads} reads");
    assert!(attack.end_micros - attack.start_micros <= HOUR);
}

#[test]
fn list_then_read_is_visible() {
    let attack = injected(|a| matches!(a, Attack::ListThenRead { .. }));
    let who = attack.object_id.as_deref().unwrap();
    let window = attack.start_micros..=attack.start_micros + 10 * MINUTE;
    let mine: Vec<&Value> = by(who)
        .filter(|r| vault(r) == attack.vault && window.contains(&time_of(r)))
        .collect();
    let list = mine.iter().position(|r| op(r) == "SecretList").unwrap();
    let secrets: BTreeSet<&str> = mine[list..]
        .iter()
        .filter(|r| op(r) == "SecretGet")
        .map(|r| {
            r["properties"]["requestUri"]
                .as_str()
                .unwrap()
                .split("/secrets/")
                .nth(1)
                .unwrap()
        })
        .map(|rest| rest.split(['?', '/']).next().unwrap())
        .collect();
    assert!(secrets.len() >= 25, "{} distinct secrets", secrets.len());
}

#[test]
fn sensitive_operation_is_visible() {
    let attack = injected(|a| matches!(a, Attack::SensitiveOperation { .. }));
    let purges: Vec<&Value> = attack_run()
        .records
        .iter()
        .filter(|r| op(r) == "SecretPurge")
        .collect();
    assert_eq!(purges.len(), 1);
    let purge = purges[0];
    assert_eq!(status(purge), 200);
    assert_eq!(purge["resultType"], "Success");
    assert_eq!(oid(purge), attack.object_id.as_deref());
    assert_eq!(vault(purge), attack.vault);
    assert!(
        purge["properties"]["id"]
            .as_str()
            .unwrap()
            .contains("/secrets/")
    );
}

#[test]
fn new_identity_on_vault_is_visible() {
    let attack = injected(|a| matches!(a, Attack::NewIdentityOnVault { .. }));
    let who = attack.object_id.as_deref().unwrap();
    let calls: Vec<&Value> = by(who).collect();
    assert_eq!(calls.len(), 10);
    assert!(
        calls
            .iter()
            .all(|r| vault(r) == attack.vault && time_of(r) >= attack.start_micros)
    );
    assert!(
        calls
            .iter()
            .all(|r| time_of(r) <= attack.start_micros + 10 * MINUTE)
    );
}

#[test]
fn volume_spike_is_visible() {
    let attack = injected(|a| matches!(a, Attack::VolumeSpike { .. }));
    assert_eq!(attack.end_micros, attack.start_micros + HOUR);
    let on_vault = |from: i64| {
        attack_run()
            .records
            .iter()
            .filter(|r| vault(r) == attack.vault && (from..from + HOUR).contains(&time_of(r)))
            .count()
    };
    let before = on_vault(attack.start_micros - HOUR);
    let during = on_vault(attack.start_micros);
    assert!(before > 50, "baseline {before}");
    assert!(
        during as f64 > 4.0 * before as f64,
        "spike {during} vs baseline {before}"
    );
}

#[test]
fn denied_burst_is_visible() {
    let attack = injected(|a| matches!(a, Attack::DeniedBurst { .. }));
    let who = attack.object_id.as_deref().unwrap();
    let denied = by(who)
        .filter(|r| (attack.start_micros..=attack.start_micros + 10 * MINUTE).contains(&time_of(r)))
        .filter(|r| {
            status(r) == 403 && r["resultSignature"] == "Forbidden" && r["resultType"] == "Success"
        })
        .count();
    assert!(denied >= 40, "{denied} denied");
}

#[test]
fn new_ip_for_identity_is_visible() {
    let attack = injected(|a| matches!(a, Attack::NewIpForIdentity { .. }));
    let who = attack.object_id.as_deref().unwrap();
    let ip = attack.ip.as_deref().unwrap();
    let earlier: Vec<&Value> = by(who)
        .filter(|r| time_of(r) < attack.start_micros)
        .collect();
    assert!(
        earlier.len() > 20,
        "the identity is well known: {} earlier calls",
        earlier.len()
    );
    assert!(earlier.iter().all(|r| r["callerIpAddress"] != ip));
    let from_new_ip = by(who).filter(|r| r["callerIpAddress"] == ip).count();
    assert_eq!(from_new_ip, 5);
}

#[test]
fn traffic_is_busier_by_day() {
    let count = |hour: i64| {
        let window = START + hour * HOUR..START + (hour + 1) * HOUR;
        attack_run()
            .records
            .iter()
            .filter(|r| window.contains(&time_of(r)))
            .count()
    };
    let night = (count(2) + count(3)) as f64 / 2.0;
    let day = count(8) as f64;
    assert!(day > 2.0 * night, "day {day} night {night}");
    // 1 event/s on average over a day, a third of the day rate at night: ~1964 an hour.
    let five_night_hours: usize = (0..5).map(count).sum();
    assert!(
        (9_000..10_700).contains(&five_night_hours),
        "{five_night_hours} in 5 night hours"
    );
}
