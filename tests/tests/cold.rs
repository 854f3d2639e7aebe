//! `kvlake cold` end to end: hand-computed aggregates on a small fixture, incremental runs
//! and late data against one full run, `--rebuild`, injected attacks found, a clean month
//! nearly silent, and files without a commit never read.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use kvlake_tests::agg::{Row, difference, read_table};
use kvlake_tests::kvlake_bin;
use serde_json::{Value, json};

/// Runs the binary; returns stdout, failing with stderr on a non-zero exit.
fn kvlake(args: &[&str]) -> Result<String> {
    let out = Command::new(kvlake_bin())
        .args(args)
        .env("KVLAKE_LOG", "warn")
        .output()?;
    ensure!(
        out.status.success(),
        "kvlake {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn convert(lake: &Path, file: &Path) -> Result<()> {
    kvlake(&["convert", "--lake", s(lake), s(file)]).map(|_| ())
}

fn cold(lake: &Path, extra: &[&str]) -> Result<String> {
    let mut args = vec!["cold", "--lake", s(lake)];
    args.extend_from_slice(extra);
    kvlake(&args)
}

/// One AuditEvent record as the storage archive holds it.
#[allow(clippy::too_many_arguments)]
fn record(
    time: &str,
    op: &str,
    vault: &str,
    oid: Option<&str>,
    appid: &str,
    ip: &str,
    status: u16,
    ms: u64,
    object: Option<(&str, &str)>,
) -> Value {
    let host = format!("https://{vault}.vault.azure.net");
    let id = object.map_or(host.clone(), |(kind, name)| format!("{host}/{kind}/{name}"));
    let mut claim = json!({ "appid": appid });
    if let Some(oid) = oid {
        claim["http://schemas.microsoft.com/identity/claims/objectidentifier"] = json!(oid);
    }
    json!({
        "time": time,
        "category": "AuditEvent",
        "operationName": op,
        "resultType": "Success",
        "callerIpAddress": ip,
        "identity": { "claim": claim },
        "properties": { "id": id, "requestUri": format!("{id}?api-version=7.4"), "httpStatusCode": status },
        "resourceId": format!("/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{}", vault.to_uppercase()),
        "durationMs": ms.to_string(),
    })
}

fn write_lines(path: &Path, records: &[Value]) -> Result<()> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text)?;
    Ok(())
}

fn find<'a>(rows: &'a [Row], pairs: &[(&str, Value)]) -> Result<&'a Row> {
    let hits: Vec<&Row> = rows
        .iter()
        .filter(|r| pairs.iter().all(|(k, v)| r.get(*k) == Some(v)))
        .collect();
    ensure!(hits.len() == 1, "{} rows match {pairs:?}", hits.len());
    Ok(hits[0])
}

fn micros(t: &str) -> Value {
    json!(kvlake_schemas::time::parse_timestamp_micros(t).unwrap_or_default())
}

const U1: &str = "00000000-0000-0000-0000-0000000000a1";
const A2: &str = "00000000-0000-0000-0000-0000000000b2";
const U3: &str = "00000000-0000-0000-0000-0000000000c3";
const APP: &str = "00000000-0000-0000-0000-0000000000ff";

#[test]
fn aggregates_and_baselines_match_hand_computed_values() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let d = "2026-11-02T";
    let mut r = vec![
        record(
            &format!("{d}10:00:00Z"),
            "SecretGet",
            "kv-a",
            Some(U1),
            APP,
            "10.0.0.1",
            200,
            10,
            Some(("secrets", "s1")),
        ),
        record(
            &format!("{d}10:01:00Z"),
            "SecretGet",
            "kv-a",
            Some(U1),
            APP,
            "10.0.0.2",
            200,
            20,
            Some(("secrets", "s2")),
        ),
        record(
            &format!("{d}10:02:00Z"),
            "SecretGet",
            "kv-a",
            Some(U1),
            APP,
            "10.0.0.1",
            200,
            30,
            Some(("secrets", "s1")),
        ),
        record(
            &format!("{d}10:03:00Z"),
            "SecretGet",
            "kv-a",
            Some(U1),
            APP,
            "10.0.0.1",
            403,
            5,
            Some(("secrets", "s3")),
        ),
        record(
            &format!("{d}11:00:00Z"),
            "SecretPurge",
            "kv-a",
            Some(U1),
            APP,
            "10.0.0.1",
            200,
            40,
            Some(("secrets", "s2")),
        ),
        // An app without an object id: its identity is its app id.
        record(
            &format!("{d}12:00:00Z"),
            "KeyGet",
            "kv-a",
            None,
            A2,
            "10.0.1.1",
            200,
            8,
            Some(("keys", "k1")),
        ),
        record(
            &format!("{d}12:00:30Z"),
            "KeyGet",
            "kv-a",
            None,
            A2,
            "10.0.1.1",
            429,
            1,
            Some(("keys", "k1")),
        ),
        record(
            &format!("{d}13:00:00Z"),
            "SecretList",
            "kv-b",
            Some(U3),
            APP,
            "10.0.2.1",
            200,
            50,
            Some(("secrets", "")),
        ),
    ];
    // Twelve different secrets within nine minutes of the list, then one more outside it.
    for i in 0..12u32 {
        let t = format!("{d}13:{:02}:{:02}Z", (i * 45 + 45) / 60, (i * 45 + 45) % 60);
        r.push(record(
            &t,
            "SecretGet",
            "kv-b",
            Some(U3),
            APP,
            "10.0.2.1",
            200,
            12,
            Some(("secrets", &format!("x{i}"))),
        ));
    }
    r.push(record(
        &format!("{d}13:20:00Z"),
        "SecretGet",
        "kv-b",
        Some(U3),
        APP,
        "10.0.2.1",
        200,
        12,
        Some(("secrets", "x0")),
    ));
    // Two more days of U1 on kv-a: 1 call, then 2 calls.
    r.push(record(
        "2026-11-03T09:00:00Z",
        "SecretGet",
        "kv-a",
        Some(U1),
        APP,
        "10.0.0.1",
        200,
        10,
        Some(("secrets", "s1")),
    ));
    r.push(record(
        "2026-11-04T09:00:00Z",
        "SecretGet",
        "kv-a",
        Some(U1),
        APP,
        "10.0.0.1",
        200,
        10,
        Some(("secrets", "s1")),
    ));
    r.push(record(
        "2026-11-04T09:30:00Z",
        "SecretGet",
        "kv-a",
        Some(U1),
        APP,
        "10.0.0.1",
        200,
        10,
        Some(("secrets", "s1")),
    ));
    let file = dir.path().join("fixture.json");
    write_lines(&file, &r)?;
    convert(&lake, &file)?;
    let out = cold(&lake, &[])?;
    assert!(out.contains("recomputed 2026-11-02 to 2026-11-04"), "{out}");

    let vd = read_table(&lake, "vault_daily")?;
    let day = ("date", json!("2026-11-02"));
    let gets = find(
        &vd,
        &[
            day.clone(),
            ("vault_name", json!("kv-a")),
            ("operation_name", json!("SecretGet")),
            ("result_class", json!("success")),
        ],
    )?;
    assert_eq!(gets["operations"], json!(3));
    assert_eq!(gets["distinct_identities"], json!(1));
    assert_eq!(gets["distinct_ips"], json!(2));
    assert_eq!(gets["duration_p50_ms"], json!(20.0));
    // Linear interpolation: 20 + 0.9 * (30 - 20). DataFusion 55's percentile_cont is off in
    // the sixth significant digit (28.99999); Spark gives 29 exactly.
    assert!((gets["duration_p95_ms"].as_f64().unwrap_or_default() - 29.0).abs() < 1e-4);
    assert_eq!(gets["duration_max_ms"], json!(30));
    let denied = find(
        &vd,
        &[
            day.clone(),
            ("vault_name", json!("kv-a")),
            ("operation_name", json!("SecretGet")),
            ("result_class", json!("client_error")),
        ],
    )?;
    assert_eq!(
        (
            denied["operations"].clone(),
            denied["client_errors"].clone()
        ),
        (json!(1), json!(1))
    );
    let throttled = find(
        &vd,
        &[
            day.clone(),
            ("operation_name", json!("KeyGet")),
            ("result_class", json!("throttled")),
        ],
    )?;
    assert_eq!(throttled["throttled"], json!(1));
    assert_eq!(throttled["distinct_identities"], json!(1));

    let id = read_table(&lake, "identity_daily")?;
    let u1 = find(
        &id,
        &[
            day.clone(),
            ("identity", json!(U1)),
            ("vault_name", json!("kv-a")),
        ],
    )?;
    assert_eq!(u1["operations"], json!(5));
    assert_eq!(u1["distinct_secrets"], json!(3));
    assert_eq!(u1["distinct_ips"], json!(2));
    assert_eq!(u1["failed_operations"], json!(1));
    assert_eq!(u1["denied_operations"], json!(1));
    assert_eq!(u1["secret_reads"], json!(3));
    assert_eq!(u1["peak_denied"], json!(1));
    assert_eq!(u1["first_seen"], micros("2026-11-02T10:00:00Z"));
    assert_eq!(u1["last_seen"], micros("2026-11-02T11:00:00Z"));
    let a2 = find(&id, &[day.clone(), ("identity", json!(A2))])?;
    assert_eq!(a2["object_id"], Value::Null);
    assert_eq!(a2["app_id"], json!(A2));
    assert_eq!(
        (
            a2["operations"].clone(),
            a2["secret_reads"].clone(),
            a2["distinct_keys"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    let u3 = find(&id, &[day.clone(), ("identity", json!(U3))])?;
    assert_eq!(u3["peak_list_read"], json!(12));
    assert_eq!(u3["peak_list_read_at"], micros("2026-11-02T13:00:00Z"));
    assert_eq!(u3["secret_reads"], json!(13));

    let ips = read_table(&lake, "identity_ip_daily")?;
    let ip = find(
        &ips,
        &[
            day.clone(),
            ("identity", json!(U1)),
            ("ip", json!("10.0.0.2")),
        ],
    )?;
    assert_eq!(ip["operations"], json!(1));

    // Sensitive: found with no history. Nothing else: the lake is younger than the warm-up,
    // so the list-then-read of U3 is not reported yet.
    let an = read_table(&lake, "anomalies")?;
    assert_eq!(an.len(), 1, "{an:?}");
    assert_eq!(an[0]["kind"], json!("sensitive_operation"));
    assert_eq!(an[0]["identity"], json!(U1));
    assert!(
        an[0]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("SecretPurge")
    );
    assert_eq!(read_table(&lake, "sensitive_operations")?.len(), 1);

    // Baselines: U1 on kv-a had 5, 1 and 2 calls; kv-a had 7, 1 and 2.
    let b = read_table(&lake, "baselines")?;
    let key = |date: &str, scope: &str| {
        let mut k = vec![
            ("date", json!(date)),
            ("scope", json!(scope)),
            ("metric", json!("operations")),
            ("vault_name", json!("kv-a")),
        ];
        if scope == "vault_identity" {
            k.push(("identity", json!(U1)));
        }
        k
    };
    let first = find(&b, &key("2026-11-02", "vault_identity"))?;
    assert_eq!(
        (first["days_28"].clone(), first["mean_28"].clone()),
        (json!(0), Value::Null)
    );
    let second = find(&b, &key("2026-11-03", "vault_identity"))?;
    assert_eq!(
        (
            second["value"].clone(),
            second["mean_7"].clone(),
            second["stddev_7"].clone()
        ),
        (json!(1), json!(5.0), Value::Null)
    );
    let third = find(&b, &key("2026-11-04", "vault_identity"))?;
    assert_eq!(
        (
            third["value"].clone(),
            third["days_7"].clone(),
            third["mean_28"].clone()
        ),
        (json!(2), json!(2), json!(3.0))
    );
    assert!((third["stddev_28"].as_f64().unwrap_or_default() - 8f64.sqrt()).abs() < 1e-9);
    let vault = find(&b, &key("2026-11-04", "vault"))?;
    assert_eq!(vault["mean_7"], json!(4.0));
    assert!((vault["stddev_7"].as_f64().unwrap_or_default() - 18f64.sqrt()).abs() < 1e-9);
    assert_eq!(vault["first_seen"], json!("2026-11-02"));
    assert_eq!(vault["lake_age"], json!(2));
    Ok(())
}

/// Generated traffic with one of each attack after the warm-up, as lines.
fn generated(
    dir: &Path,
    records: &str,
    rate: &str,
    attacks: &[&str],
) -> Result<(PathBuf, Vec<Value>)> {
    let file = dir.join("traffic.json");
    let injected = dir.join("injected.jsonl");
    let mut args = vec![
        "generate",
        "--records",
        records,
        "--events-per-second",
        rate,
        "--format",
        "lines",
        "--seed",
        "11",
        "--injected",
        s(&injected),
    ];
    for a in attacks {
        args.extend(["--attack", a]);
    }
    let out = Command::new(kvlake_bin()).args(&args).output()?;
    ensure!(
        out.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&file, &out.stdout)?;
    let report = std::fs::read_to_string(&injected)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?;
    Ok((file, report))
}

/// Every cold-path table, in the order the job writes them.
fn all_tables(lake: &Path) -> Result<Vec<Vec<Row>>> {
    kvlake_coldpath::TABLES
        .iter()
        .map(|t| read_table(lake, t.name))
        .collect()
}

fn assert_same_tables(a: &Path, b: &Path) -> Result<()> {
    let names = kvlake_coldpath::TABLES.iter().map(|t| t.name);
    for (table, (x, y)) in names.zip(all_tables(a)?.iter().zip(&all_tables(b)?)) {
        ensure!(!x.is_empty(), "{table} is empty");
        if let Some(d) = difference(x, y) {
            anyhow::bail!("{table}: {d}");
        }
    }
    Ok(())
}

/// The anomaly an injected attack must produce: (kind, columns that must match).
fn expected_finding(attack: &Value) -> Result<(&'static str, Vec<(&'static str, Value)>)> {
    let name = attack["attack"].as_str().context("attack name")?;
    let date = json!(attack["start"].as_str().context("start")?.get(..10));
    let who = attack["object_id"].clone();
    let vault = attack["vault"].clone();
    Ok(match name.split_whitespace().next().unwrap_or_default() {
        "MassSecretRetrieval" => (
            "mass_secret_retrieval",
            vec![("date", date), ("identity", who)],
        ),
        "ListThenRead" => (
            "list_then_read",
            vec![("date", date), ("identity", who), ("vault_name", vault)],
        ),
        "SensitiveOperation" => (
            "sensitive_operation",
            vec![("date", date), ("identity", who), ("vault_name", vault)],
        ),
        "NewIdentityOnVault" => (
            "new_identity_on_vault",
            vec![("date", date), ("identity", who), ("vault_name", vault)],
        ),
        "VolumeSpike" => ("unusual_volume", vec![("date", date), ("subject", vault)]),
        "DeniedBurst" => (
            "denied_burst",
            vec![("date", date), ("identity", who), ("vault_name", vault)],
        ),
        "NewIpForIdentity" => (
            "new_ip_for_identity",
            vec![
                ("date", date),
                ("identity", who),
                ("ip", attack["ip"].clone()),
            ],
        ),
        other => anyhow::bail!("unknown attack {other}"),
    })
}

const ATTACKS: [&str; 7] = [
    "mass-secret-retrieval@8d10h",
    "list-then-read@8d11h",
    "sensitive-operation@8d12h:KeyBackup",
    "new-identity-on-vault@8d13h",
    "volume-spike@8d14h",
    "denied-burst@8d16h",
    "new-ip-for-identity@8d18h",
];

#[test]
fn incremental_runs_with_late_data_equal_one_full_run_and_find_every_attack() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // About 9.6 days of traffic at 0.03 events/s, attacks on day 9.
    let (traffic, injected) = generated(dir.path(), "25000", "0.03", &ATTACKS)?;
    let text = std::fs::read_to_string(&traffic)?;
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (lines.len() * 2 / 5, lines.len() * 7 / 10);
    let parts = [&lines[..a], &lines[a..b], &lines[b..]];
    let part_files: Vec<PathBuf> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = dir.path().join(format!("part{i}.json"));
            std::fs::write(&f, p.join("\n") + "\n").map(|_| f)
        })
        .collect::<Result<_, _>>()?;

    // One lake gets the first part, then the last, then the middle one: late data for
    // days already aggregated, and baselines downstream of them to redo.
    let incremental = dir.path().join("incremental");
    for i in [0, 2, 1] {
        convert(&incremental, &part_files[i])?;
        let out = cold(&incremental, &[])?;
        assert!(out.contains("recomputed"), "{out}");
    }
    let full = dir.path().join("full");
    for f in &part_files {
        convert(&full, f)?;
    }
    cold(&full, &[])?;
    assert_same_tables(&incremental, &full)?;

    // Nothing new: nothing written.
    let before = all_tables(&full)?;
    let out = cold(&full, &[])?;
    assert!(out.contains("nothing new"), "{out}");
    for (x, y) in before.iter().zip(&all_tables(&full)?) {
        assert!(difference(x, y).is_none());
    }

    // Every injected pattern is in the anomalies.
    let anomalies = read_table(&full, "anomalies")?;
    assert_eq!(injected.len(), ATTACKS.len());
    for attack in &injected {
        let (kind, mut keys) = expected_finding(attack)?;
        keys.push(("kind", json!(kind)));
        let hit = anomalies
            .iter()
            .any(|r| keys.iter().all(|(k, v)| r.get(*k) == Some(v)));
        assert!(hit, "no {kind} anomaly for {attack}");
    }

    // A rebuild recomputes the range and changes nothing; twice is the same as once.
    let out = cold(
        &full,
        &["--rebuild", "--from", "2026-11-03", "--to", "2026-11-06"],
    )?;
    assert!(out.contains("recomputed 2026-11-03 to 2026-11-06"), "{out}");
    for (x, y) in before.iter().zip(&all_tables(&full)?) {
        assert!(difference(x, y).is_none(), "{:?}", difference(x, y));
    }
    // A day lost from a table comes back with a rebuild of that day.
    std::fs::remove_dir_all(full.join("agg/vault_daily/date=2026-11-04"))?;
    cold(
        &full,
        &["--rebuild", "--from", "2026-11-04", "--to", "2026-11-04"],
    )?;
    assert_same_tables(&incremental, &full)?;
    Ok(())
}

#[test]
fn a_clean_month_raises_at_most_a_few_anomalies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // 31 days at 0.02 events/s (about 1,730 calls a day, 200 identities, 12 vaults).
    let (traffic, _) = generated(dir.path(), "53500", "0.02", &[])?;
    let lake = dir.path().join("lake");
    convert(&lake, &traffic)?;
    cold(&lake, &[])?;
    let days = read_table(&lake, "vault_daily")?
        .iter()
        .map(|r| r["date"].to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(days >= 30, "{days} days");
    let anomalies = read_table(&lake, "anomalies")?;
    println!("clean month: {} anomalies", anomalies.len());
    for a in &anomalies {
        println!("  {} {} {}", a["date"], a["kind"], a["description"]);
    }
    assert!(
        anomalies.len() <= 10,
        "{} anomalies in a clean month",
        anomalies.len()
    );
    Ok(())
}

#[test]
fn files_without_a_commit_are_never_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (traffic, _) = generated(dir.path(), "3000", "0.5", &[])?;
    let lake = dir.path().join("lake");
    convert(&lake, &traffic)?;
    // A batch caught between its files and its commit: a file no commit lists.
    let committed = kvlake_tests::parquet_files(&lake.join("raw"))?;
    let stray = committed[0].with_file_name("uncommitted-batch.parquet");
    std::fs::copy(&committed[0], &stray)?;
    cold(&lake, &[])?;
    let total: i64 = read_table(&lake, "vault_daily")?
        .iter()
        .map(|r| r["operations"].as_i64().unwrap_or_default())
        .sum();
    assert_eq!(total, 3000, "only the 3,000 committed rows are counted");
    Ok(())
}

#[test]
fn bad_settings_stop_with_the_name_of_the_setting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cold.toml");
    std::fs::write(&config, "window_minutes = 30\n")?;
    let out = Command::new(kvlake_bin())
        .args(["cold", "--lake", s(dir.path()), "--thresholds", s(&config)])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("window_minutes"), "{err}");
    let out = Command::new(kvlake_bin())
        .args([
            "cold",
            "--lake",
            s(dir.path()),
            "--rebuild",
            "--from",
            "2026-02-30",
            "--to",
            "2026-03-01",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--from"), "{err}");
    // The effective settings, with the environment over the defaults.
    let out = Command::new(kvlake_bin())
        .args(["cold", "--lake", s(dir.path()), "--show-settings"])
        .env("KVLAKE_COLD_MASS_RETRIEVAL_THRESHOLD", "40")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mass_retrieval_threshold = 40"), "{text}");
    Ok(())
}

#[test]
fn the_demo_ends_with_aggregates_and_anomalies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("demo");
    let out = kvlake(&["demo", "--lake", s(&lake)])?;
    assert!(out.contains("6. cold path: 9 days"), "{out}");
    assert!(out.contains("calls per day on"), "{out}");
    // The demo injects these after a week of history; each must be reported.
    for kind in [
        "sensitive_operation",
        "mass_secret_retrieval",
        "list_then_read",
        "denied_burst",
        "new_identity_on_vault",
        "new_ip_for_identity",
    ] {
        assert!(out.contains(kind), "{kind} missing from the demo:\n{out}");
    }
    let anomalies = read_table(&lake, "anomalies")?;
    assert!(anomalies.len() >= 6, "{anomalies:?}");
    Ok(())
}

#[test]
fn an_unreadable_state_stops_the_run_and_says_how_to_recover() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (traffic, _) = generated(dir.path(), "1000", "0.5", &[])?;
    let lake = dir.path().join("lake");
    convert(&lake, &traffic)?;
    cold(&lake, &[])?;
    let state = lake.join("_kvlake/cold/state.json");
    std::fs::write(&state, b"{ not json")?;
    let out = Command::new(kvlake_bin())
        .args(["cold", "--lake", s(&lake)])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("state.json") && err.contains("delete it"),
        "{err}"
    );
    // Following the advice recomputes everything from the checkpoint log.
    std::fs::remove_file(&state)?;
    let out = cold(&lake, &[])?;
    assert!(out.contains("recomputed"), "{out}");
    let total: i64 = read_table(&lake, "vault_daily")?
        .iter()
        .map(|r| r["operations"].as_i64().unwrap_or_default())
        .sum();
    assert_eq!(total, 1000);
    Ok(())
}
