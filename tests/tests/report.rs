//! `kvlake report` as a person sees it: a lake with attacks (generator → convert → cold),
//! the report rendered by headless Chromium with every request refused, screenshots in
//! light and dark, a PDF print, no console message, and the charts' numbers equal to the
//! tables' (read back by the test kit, independently of the report's code).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use kvlake_tests::agg::read_table;
use kvlake_tests::kvlake_bin;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn kvlake(args: &[&str]) -> Result<String> {
    let out = Command::new(kvlake_bin())
        .args(args)
        .env("KVLAKE_LOG", "warn")
        .env_remove("KVLAKE_CONFIG")
        .output()?;
    ensure!(
        out.status.success(),
        "kvlake {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

const EVIL_UPN: &str = "<img src=x onerror=alert(1)>@evil.example";

/// 25,000 generated records over about ten days, one of each attack on day nine, and 30
/// denied calls of a caller whose UPN is markup.
fn make_lake(dir: &Path) -> Result<std::path::PathBuf> {
    let mut args = vec![
        "generate",
        "--records",
        "25000",
        "--events-per-second",
        "0.03",
        "--format",
        "lines",
        "--seed",
        "11",
    ];
    for a in [
        "mass-secret-retrieval@8d10h",
        "list-then-read@8d11h",
        "sensitive-operation@8d12h:KeyBackup",
        "new-identity-on-vault@8d13h",
        "volume-spike@8d14h",
        "denied-burst@8d16h",
        "new-ip-for-identity@8d18h",
    ] {
        args.extend(["--attack", a]);
    }
    let mut traffic = kvlake(&args)?;
    for i in 0..30 {
        let r = json!({
            "time": format!("2026-11-09T20:{:02}:00Z", i),
            "category": "AuditEvent", "operationName": "SecretGet", "resultType": "Success",
            "callerIpAddress": "10.9.9.9",
            "identity": { "claim": { "upn": EVIL_UPN } },
            "properties": { "id": "https://kv-evil.vault.azure.net/secrets/s", "httpStatusCode": 403 },
            "resourceId": "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-EVIL",
            "durationMs": "3",
        });
        traffic.push_str(&format!("{r}\n"));
    }
    let file = dir.join("traffic.json");
    std::fs::write(&file, traffic)?;
    let lake = dir.join("lake");
    kvlake(&["convert", "--lake", s(&lake), s(&file)])?;
    kvlake(&["cold", "--lake", s(&lake)])?;
    Ok(lake)
}

/// The JSON block `id` of the page.
fn block(html: &str, id: &str) -> Result<Value> {
    let open = format!(r#"<script type="application/json" id="{id}">"#);
    let start = html.find(&open).with_context(|| format!("no {id} block"))? + open.len();
    let end = html[start..].find("</script>").context("unclosed block")? + start;
    Ok(serde_json::from_str(&html[start..end])?)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_default()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn the_report_shows_the_tables_numbers_and_renders_offline_in_chromium() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = make_lake(dir.path())?;
    let out = dir.path().join("report.html");
    let printed = kvlake(&["report", "--lake", s(&lake), "--out", s(&out)])?;
    assert!(printed.contains("report:"), "{printed}");
    let html = std::fs::read_to_string(&out)?;

    // Self-contained: nothing to fetch, markup from the data escaped.
    for bad in [
        "<link",
        "src=\"http",
        "href=\"http",
        "url(",
        "@import",
        "<img",
        "<iframe",
    ] {
        assert!(!html.contains(bad), "the page contains {bad}");
    }
    assert!(html.contains("default-src 'none'"));
    assert!(!html.contains(EVIL_UPN), "a UPN reached the page unescaped");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;@evil.example"));

    // Every anomaly kind of the lake is named, with its count.
    let anomalies = read_table(&lake, "anomalies")?;
    let mut in_lake: BTreeMap<String, i64> = BTreeMap::new();
    for a in &anomalies {
        *in_lake
            .entry(a["kind"].as_str().unwrap_or("").into())
            .or_default() += 1;
    }
    assert!(in_lake.len() >= 6, "{in_lake:?}");
    let summary = block(&html, "data-summary")?;
    for (kind, n) in &in_lake {
        assert!(html.contains(kind.as_str()), "{kind} not named");
        let k = summary["kinds"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["kind"] == json!(kind))
            .with_context(|| format!("{kind} not in the summary"))?;
        assert_eq!(int(&k["in_lake"]), *n, "{kind}");
    }
    assert_eq!(summary["alerts_table"], json!(false));
    assert!(
        html.contains(r#"id="no-alerts""#),
        "the missing alerts table is not said"
    );
    let first = summary["period"]["first"]
        .as_str()
        .context("first")?
        .to_string();
    let last = summary["period"]["last"]
        .as_str()
        .context("last")?
        .to_string();
    let in_period = |r: &BTreeMap<String, Value>| {
        let d = r["date"].as_str().unwrap_or("");
        d >= first.as_str() && d <= last.as_str()
    };

    // Calls per vault and day: the JSON, and every drawn point, equal vault_daily's sums;
    // the band's mean is the baselines table's.
    let mut calls: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in read_table(&lake, "vault_daily")?
        .iter()
        .filter(|r| in_period(r))
    {
        if let Some(v) = r["vault_name"].as_str() {
            *calls
                .entry((v.into(), r["date"].as_str().unwrap_or("").into()))
                .or_default() += int(&r["operations"]);
        }
    }
    let baselines = read_table(&lake, "baselines")?;
    let mean: BTreeMap<(String, String), f64> = baselines
        .iter()
        .filter(|r| r["scope"] == json!("vault") && r["metric"] == json!("operations"))
        .filter_map(|r| {
            Some((
                (r["vault_name"].as_str()?.into(), r["date"].as_str()?.into()),
                r["mean_28"].as_f64()?,
            ))
        })
        .collect();
    let series = block(&html, "data-vault-calls")?;
    let mut drawn = 0;
    for v in series.as_array().context("series")? {
        let vault = v["vault"].as_str().context("vault")?;
        for d in v["days"].as_array().context("days")? {
            let date = d["date"].as_str().context("date")?;
            let key = (vault.to_string(), date.to_string());
            assert_eq!(
                int(&d["calls"]),
                calls.get(&key).copied().unwrap_or(0),
                "{key:?}"
            );
            if let Some(m) = d["mean_28"].as_f64() {
                assert!(close(m, mean[&key]), "{key:?}");
            }
            let mark = format!(
                r#"data-vault="{vault}" data-date="{date}" data-calls="{}""#,
                int(&d["calls"])
            );
            assert!(html.contains(&mark), "no point drawn for {key:?}");
            drawn += 1;
        }
    }
    let shown: i64 = series
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| int(&v["total"]))
        .sum();
    assert_eq!(shown, calls.values().sum::<i64>());
    assert!(drawn >= 100, "{drawn} points");

    // Top readers: identity_daily's secret reads.
    let identity_daily: Vec<_> = read_table(&lake, "identity_daily")?
        .into_iter()
        .filter(|r| in_period(r))
        .collect();
    let mut reads: BTreeMap<String, i64> = BTreeMap::new();
    let mut denied: BTreeMap<String, i64> = BTreeMap::new();
    for r in &identity_daily {
        *reads
            .entry(r["identity"].as_str().unwrap_or("").into())
            .or_default() += int(&r["secret_reads"]);
        *denied
            .entry(r["vault_name"].as_str().unwrap_or("").into())
            .or_default() += int(&r["denied_operations"]);
    }
    let mut top: Vec<(&String, &i64)> = reads.iter().filter(|(_, n)| **n > 0).collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let readers = block(&html, "data-top-readers")?;
    let readers = readers.as_array().context("readers")?;
    assert_eq!(readers.len(), top.len().min(10));
    for (r, (id, n)) in readers.iter().zip(&top) {
        assert_eq!(r["identity"].as_str(), Some(id.as_str()));
        assert_eq!(int(&r["reads"]), **n);
        assert!(html.contains(&format!(r#"data-identity="{id}" data-reads="{n}""#)));
        if let (Some(u), Some(day)) = (r["usual_per_day"].as_f64(), r["usual_date"].as_str()) {
            let b = baselines
                .iter()
                .find(|b| {
                    b["scope"] == json!("identity")
                        && b["metric"] == json!("secret_reads")
                        && b["identity"].as_str() == Some(id.as_str())
                        && b["date"] == json!(day)
                })
                .context("the usual volume's baseline row")?;
            assert!(close(u, b["mean_28"].as_f64().unwrap_or(f64::NAN)));
        }
    }

    // Denied calls per vault: identity_daily's.
    let d = block(&html, "data-denied")?;
    for v in d["vaults"].as_array().context("denied vaults")? {
        let name = v["vault"].as_str().context("vault")?;
        assert_eq!(int(&v["denied"]), denied[name], "{name}");
    }
    assert_eq!(
        d["vaults"].as_array().map(Vec::len),
        Some(denied.values().filter(|n| **n > 0).count())
    );
    assert!(
        d["identities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["upn"] == json!(EVIL_UPN)),
        "the 30 denied calls of the markup UPN are not among the top denied"
    );

    // First-seen pairs per day: the baselines rows whose first_seen is their day.
    let news = block(&html, "data-new-subjects")?;
    for day in news["days"].as_array().context("days")? {
        let date = day["date"].as_str().context("date")?;
        let n = |scope: &str| {
            baselines
                .iter()
                .filter(|b| {
                    b["scope"] == json!(scope)
                        && b["metric"] == json!("operations")
                        && b["date"] == json!(date)
                        && b["first_seen"] == json!(date)
                })
                .count() as i64
        };
        assert_eq!(
            int(&day["new_identity_on_vault"]),
            n("vault_identity"),
            "{date}"
        );
        assert_eq!(int(&day["new_ip_for_identity"]), n("identity_ip"), "{date}");
    }

    // Findings: every anomaly of the period, with the raw events behind it counted
    // again here from the raw table's files.
    let findings = block(&html, "data-findings")?;
    let findings = findings.as_array().context("findings")?;
    let expected: BTreeSet<(String, String, String)> = anomalies
        .iter()
        .filter(|r| in_period(r))
        .map(|r| {
            (
                r["date"].as_str().unwrap_or("").into(),
                r["kind"].as_str().unwrap_or("").into(),
                r["description"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let got: BTreeSet<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["date"].as_str().unwrap_or("").into(),
                f["kind"].as_str().unwrap_or("").into(),
                f["description"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let raw = raw_rows(&lake)?;
    let mut checked = 0;
    for f in findings
        .iter()
        .filter(|f| f["kind"] == json!("denied_burst"))
    {
        let (ws, we) = (int(&f["window_start"]), int(&f["window_end"]));
        let n = raw
            .iter()
            .filter(|r| {
                r.time >= ws
                    && r.time <= we
                    && r.vault.as_deref() == f["vault"].as_str()
                    && r.identity.as_deref() == f["identity"].as_str()
                    && matches!(r.status, Some(401 | 403))
            })
            .count() as i64;
        assert_eq!(int(&f["raw"]["total"]), n, "raw events behind {f}");
        assert!(n >= 10, "{n} denied calls behind a burst");
        let shown = f["raw"]["rows"].as_array().map_or(0, Vec::len) as i64;
        assert_eq!(shown, n.min(10));
        checked += 1;
    }
    assert!(checked >= 1, "no denied_burst finding");

    render_in_chromium(dir.path(), &out)
}

struct RawRow {
    time: i64,
    vault: Option<String>,
    identity: Option<String>,
    status: Option<i32>,
}

/// The raw table's live rows (the kit's own Delta replay), the columns a finding matches.
fn raw_rows(lake: &Path) -> Result<Vec<RawRow>> {
    let mut out = Vec::new();
    for file in kvlake_tests::delta::live_files(&lake.join("raw"))? {
        for batch in
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?.build()?
        {
            let batch = batch?;
            let text = |name: &str| -> Result<Vec<Option<String>>> {
                let c = batch.column_by_name(name).context("raw column")?;
                let c = c.as_string::<i32>();
                Ok((0..c.len())
                    .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
                    .collect())
            };
            let time = batch.column_by_name("time").context("time")?;
            let time = time.as_primitive::<TimestampMicrosecondType>();
            let status = batch.column_by_name("http_status_code").context("status")?;
            let status = status.as_primitive::<Int32Type>();
            let (vault, oid, app, upn) = (
                text("vault_name")?,
                text("identity_object_id")?,
                text("identity_app_id")?,
                text("identity_upn")?,
            );
            for i in 0..batch.num_rows() {
                out.push(RawRow {
                    time: time.value(i),
                    vault: vault[i].clone(),
                    identity: oid[i]
                        .clone()
                        .or_else(|| app[i].clone())
                        .or_else(|| upn[i].clone())
                        .map(|s| s.to_lowercase()),
                    status: status.is_valid(i).then(|| status.value(i)),
                });
            }
        }
    }
    Ok(out)
}

/// Chromium's own background services (component updates, sign-in, network time): the
/// browser calls them whatever the page is, so they say nothing about the page.
const BROWSER_HOSTS: &[&str] = &[
    "update.googleapis.com",
    "accounts.google.com",
    "clients2.google.com",
    "clients2.googleusercontent.com",
    "redirector.gvt1.com",
    "optimizationguide-pa.googleapis.com",
    "safebrowsing.googleapis.com",
    "content-autofill.googleapis.com",
    "android.clients.google.com",
    "www.google.com",
];

/// A proxy that answers nothing and records the first line of every request.
fn refusing_proxy() -> Result<(u16, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 512];
            let n = conn.read(&mut buf).unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            if let Ok(mut l) = log.lock() {
                l.push(line);
            }
        }
    });
    Ok((port, seen))
}

/// The host a proxy request line names (`CONNECT h:443 …` or `GET http://h/… …`).
fn host_of(line: &str) -> String {
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let t = target.split("://").nth(1).unwrap_or(target);
    t.split(['/', ':']).next().unwrap_or("").to_string()
}

/// Runs headless Chromium on `page` with `extra` flags through the refusing proxy;
/// returns the console lines and the requests that were not Chromium's own.
fn chromium(
    dir: &Path,
    page: &Path,
    extra: &[String],
) -> Result<(Vec<String>, Vec<String>, String)> {
    let (port, seen) = refusing_proxy()?;
    let profile = tempfile::tempdir_in(dir)?;
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--no-pings",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--proxy-server=http://127.0.0.1:{port}"))
        .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .context("starting chromium")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "chromium failed: {err}");
    let console = err
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let requests = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("proxy log poisoned"))?
        .iter()
        .filter(|l| !BROWSER_HOSTS.contains(&host_of(l).as_str()))
        .cloned()
        .collect();
    Ok((console, requests, err.into_owned()))
}

fn render_in_chromium(dir: &Path, report: &Path) -> Result<()> {
    if Command::new("chromium").arg("--version").output().is_err() {
        bail!(
            "chromium is not installed: run scripts/test, which installs it (apt-get install chromium)"
        );
    }
    // The harness sees what it must refuse: a page that asks the network and logs.
    let control = dir.join("control.html");
    std::fs::write(
        &control,
        r#"<!doctype html><p>control</p><img src="http://kvlake-report.invalid/x.png"><script>console.log("control-message")</script>"#,
    )?;
    let shot = format!("--screenshot={}", dir.join("control.png").display());
    let (console, requests, err) = chromium(dir, &control, &[shot])?;
    ensure!(
        console.iter().any(|l| l.contains("control-message")),
        "console capture does not work: {err}"
    );
    ensure!(
        requests.iter().any(|r| r.contains("kvlake-report.invalid")),
        "the refusing proxy saw no request of the control page: {requests:?}"
    );

    let shots = [
        ("light", vec![]),
        ("dark", vec!["--force-dark-mode".to_string()]),
    ];
    let mut images = Vec::new();
    for (name, flags) in shots {
        let png = dir.join(format!("report-{name}.png"));
        let mut args = flags.clone();
        args.push("--window-size=1280,2400".into());
        args.push(format!("--screenshot={}", png.display()));
        let (console, requests, _) = chromium(dir, report, &args)?;
        ensure!(
            console.is_empty(),
            "console messages in {name}: {console:#?}"
        );
        ensure!(
            requests.is_empty(),
            "the report asked the network ({name}): {requests:#?}"
        );
        let bytes = std::fs::read(&png).context("screenshot")?;
        ensure!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
            "screenshot of {} bytes",
            bytes.len()
        );
        images.push(bytes);
    }
    ensure!(
        images[0] != images[1],
        "the dark theme looks exactly like the light one"
    );
    // Printable: Chromium's print to PDF.
    let pdf = dir.join("report.pdf");
    let (console, requests, _) = chromium(
        dir,
        report,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    )?;
    ensure!(
        console.is_empty() && requests.is_empty(),
        "{console:?} {requests:?}"
    );
    let bytes = std::fs::read(&pdf).context("pdf")?;
    ensure!(
        bytes.starts_with(b"%PDF") && bytes.len() > 20_000,
        "pdf of {} bytes",
        bytes.len()
    );
    Ok(())
}

#[test]
fn a_lake_without_cold_tables_gets_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(kvlake_bin())
        .args([
            "report",
            "--lake",
            s(dir.path()),
            "--out",
            s(&dir.path().join("r.html")),
        ])
        .env_remove("KVLAKE_CONFIG")
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kvlake cold"), "{err}");
    Ok(())
}
