//! Event Hubs' front door end to end, through the kit's Event Hubs stand-in (TLS, SASL
//! PLAIN with `$ConnectionString`, OAUTHBEARER with managed-identity tokens, short
//! sessions) in front of the mock broker: every record exactly once with either auth mode,
//! re-authentication mid-run with a refreshed token, and each refusal said in one line,
//! within seconds, with the namespace and the fix.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kvlake_tests::eventhubs::{self, EventHubsStandIn, Options, Tier};
use kvlake_tests::standin::AzureStandIn;
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";
const AUDIENCE: &str = "https://ns1.servicebus.windows.net";

/// Nothing of the developer's machine may stand in for the identity or secret under test.
fn clean_env(cmd: &mut Command, kv: &AzureStandIn) {
    for (k, v) in kv.identity_env() {
        cmd.env(k, v);
    }
    for k in [
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "KVLAKE_EVENTHUBS_CONNECTION_STRING",
        "KVLAKE_AUTH",
    ] {
        cmd.env_remove(k);
    }
}

/// `kvlake hot` against the stand-in with a connection string (from the environment, as
/// in production), trusting the stand-in's CA.
fn hot_with_connection_string(
    eh: &EventHubsStandIn,
    kv: &AzureStandIn,
    cs: &str,
    lake: &str,
    extra: &[&str],
) -> Command {
    let ca = format!("ssl.ca.location={}", eh.ca_file.display());
    let mut args = vec!["--kafka-option", &ca];
    args.extend(extra);
    let mut cmd = hot_command(&eh.bootstrap, TOPIC, lake, &args);
    clean_env(&mut cmd, kv);
    cmd.env("KVLAKE_EVENTHUBS_CONNECTION_STRING", cs);
    cmd
}

/// `kvlake hot --auth entra` against the stand-in, the token from the managed identity.
fn hot_with_entra(
    eh: &EventHubsStandIn,
    kv: &AzureStandIn,
    scope: &str,
    lake: &str,
    extra: &[&str],
) -> Command {
    let ca = format!("ssl.ca.location={}", eh.ca_file.display());
    let ca_file = kv.ca_file.display().to_string();
    let mut args = vec![
        "--auth",
        "entra",
        "--security-protocol",
        "sasl_ssl",
        "--kafka-oauth-scope",
        scope,
        "--ca-file",
        &ca_file,
        "--kafka-option",
        &ca,
    ];
    args.extend(extra);
    let mut cmd = hot_command(&eh.bootstrap, TOPIC, lake, &args);
    clean_env(&mut cmd, kv);
    cmd
}

/// Runs a command that must be refused: it exits non-zero within `within`, long before
/// its 60 s connect timeout, with exactly one `error:` line that holds every `want`.
fn assert_refused_fast(mut cmd: Command, within: Duration, want: &[&str]) -> Result<String> {
    cmd.args(["--connect-timeout", "60s"]);
    let started = Instant::now();
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(90))?;
    let took = started.elapsed();
    ensure!(code != 0, "the run succeeded: {out}\n{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    ensure!(
        errors.len() == 1,
        "want one error line, got {errors:?}\n{err}"
    );
    let line = errors[0].to_string();
    let librdkafka: Vec<&str> = err.lines().take(40).collect();
    let line_and_log = format!("{line}\nlibrdkafka said:\n{}", librdkafka.join("\n"));
    for w in want {
        ensure!(
            line.contains(w),
            "the error line lacks `{w}`: {line_and_log}"
        );
    }
    ensure!(
        !line.contains("cannot read metadata"),
        "the refusal is reported as a metadata timeout: {line}"
    );
    ensure!(
        took < within,
        "refused only after {took:?} (want < {within:?}): {line_and_log}"
    );
    Ok(line)
}

fn rows_written(port: u16) -> usize {
    http_get(port, "/metrics")
        .map(|(_, m)| prometheus_sum(&m, "kvlake_hot_rows_written_total") as usize)
        .unwrap_or(0)
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !f() {
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[test]
fn connection_string_auth_over_tls_reads_every_record_exactly_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let (broker, ledger) = loaded_broker(TOPIC, 3, 41, 0.02, 300)?;
    let eh = EventHubsStandIn::start(
        &kv,
        &broker.bootstrap,
        Options {
            session_lifetime: Duration::from_secs(1),
            ..Options::standard("ns1", TOPIC)
        },
    )?;
    let lake = tempfile::tempdir()?;
    let cmd = hot_with_connection_string(
        &eh,
        &kv,
        &eh.connection_string(),
        lake.path().to_str().context("lake path")?,
        &["--until-caught-up"],
    );
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(120))?;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    let auths = eh.authentications();
    assert!(
        !auths.is_empty(),
        "nothing authenticated through the stand-in"
    );
    assert!(auths.iter().all(|a| a.mechanism == "PLAIN"), "{auths:?}");
    assert!(eh.refusals().is_empty(), "{:?}", eh.refusals());
    assert!(
        !err.contains("R1ghtK3y") && !out.contains("R1ghtK3y"),
        "the key leaked"
    );
    Ok(())
}

#[test]
fn entra_auth_refreshes_its_token_and_reauthenticates_mid_run_with_nothing_lost_or_doubled()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    // Tokens live 15 s: kvlake refreshes its token after ~11 s, librdkafka asks for it
    // after 12 s; sessions of 3 s make librdkafka re-authenticate every few seconds.
    kv.set_token_lifetime(Duration::from_secs(15));
    let (broker, mut ledger) = loaded_broker(TOPIC, 2, 42, 0.0, 120)?;
    let eh = EventHubsStandIn::start(
        &kv,
        &broker.bootstrap,
        Options {
            session_lifetime: Duration::from_secs(3),
            ..Options::standard("ns1", TOPIC)
        },
    )?;
    let lake = tempfile::tempdir()?;
    let port = free_port()?;
    let metrics = format!("127.0.0.1:{port}");
    let mut cmd = hot_with_entra(
        &eh,
        &kv,
        &format!("{AUDIENCE}/.default"),
        lake.path().to_str().context("lake path")?,
        &["--metrics-addr", &metrics],
    );
    let mut proc = Proc(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?);
    let first = ledger.records();
    wait_until(
        Duration::from_secs(60),
        "the first messages committed",
        || rows_written(port) >= first,
    )?;
    let first_token = eh
        .authentications()
        .first()
        .and_then(|a| a.token.clone())
        .context("no OAUTHBEARER authentication")?;
    // A live connection re-authenticates with a token issued after the first one.
    wait_until(
        Duration::from_secs(60),
        "a re-authentication with a refreshed token",
        || {
            eh.reauthentications()
                .iter()
                .any(|a| a.token.as_deref().is_some_and(|t| t != first_token))
        },
    )?;
    ensure!(
        matches!(proc.0.try_wait(), Ok(None)),
        "kvlake stopped during re-authentication"
    );
    produce(
        &broker.bootstrap,
        TOPIC,
        2,
        small_messages(43, 0.0),
        120,
        &mut ledger,
    )?;
    let all = ledger.records();
    wait_until(
        Duration::from_secs(60),
        "the later messages committed",
        || rows_written(port) >= all,
    )?;
    signal(&proc.0, "TERM");
    let (code, stderr) = proc.finish()?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_exactly_once(&ledger.expected(), &lake_coordinates(lake.path())?)?;
    let asked = kv
        .token_requests()
        .iter()
        .filter(|r| r.as_str() == AUDIENCE)
        .count();
    assert!(
        asked >= 2,
        "the token was never refreshed ({asked} requests)"
    );
    assert!(eh.refusals().is_empty(), "{:?}", eh.refusals());
    assert!(
        eh.authentications()
            .iter()
            .all(|a| a.mechanism == "OAUTHBEARER")
    );
    for t in kv.issued_tokens() {
        assert!(!stderr.contains(&t), "a token leaked into the logs");
    }
    Ok(())
}

#[test]
fn a_wrong_key_is_refused_in_one_line_within_seconds_naming_the_namespace_and_the_fix() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let broker = Broker::start(TOPIC, 1)?;
    let eh = EventHubsStandIn::start(&kv, &broker.bootstrap, Options::standard("ns1", TOPIC))?;
    let wrong =
        eventhubs::connection_string("ns1", TOPIC, "Wr0ngK3yWr0ngK3yWr0ngK3yWr0ngK3yWr0ngK3y0=");
    let lake = tempfile::tempdir()?;
    let cmd = hot_with_connection_string(
        &eh,
        &kv,
        &wrong,
        lake.path().to_str().context("lake path")?,
        &["--until-caught-up"],
    );
    let line = assert_refused_fast(
        cmd,
        Duration::from_secs(15),
        &[
            "ns1.servicebus.windows.net",
            "connection string",
            "fix: copy the connection string",
        ],
    )?;
    assert!(!line.contains("Wr0ngK3y"), "the key leaked: {line}");
    assert!(!eh.refusals().is_empty());
    Ok(())
}

#[test]
fn an_expired_token_is_refused_in_one_line_within_seconds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    kv.issue_expired_tokens();
    let broker = Broker::start(TOPIC, 1)?;
    let eh = EventHubsStandIn::start(&kv, &broker.bootstrap, Options::standard("ns1", TOPIC))?;
    let lake = tempfile::tempdir()?;
    let cmd = hot_with_entra(
        &eh,
        &kv,
        &format!("{AUDIENCE}/.default"),
        lake.path().to_str().context("lake path")?,
        &["--until-caught-up"],
    );
    assert_refused_fast(
        cmd,
        Duration::from_secs(15),
        &["ns1.servicebus.windows.net", "expired", "fix:", "clock"],
    )?;
    Ok(())
}

#[test]
fn a_token_for_another_namespace_is_refused_in_one_line_within_seconds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let broker = Broker::start(TOPIC, 1)?;
    let eh = EventHubsStandIn::start(&kv, &broker.bootstrap, Options::standard("ns1", TOPIC))?;
    let lake = tempfile::tempdir()?;
    let cmd = hot_with_entra(
        &eh,
        &kv,
        "https://ns2.servicebus.windows.net/.default",
        lake.path().to_str().context("lake path")?,
        &["--until-caught-up"],
    );
    assert_refused_fast(
        cmd,
        Duration::from_secs(15),
        &[
            "ns2.servicebus.windows.net",
            AUDIENCE,
            "fix:",
            "--kafka-oauth-scope",
        ],
    )?;
    Ok(())
}

#[test]
fn a_basic_tier_namespace_is_refused_in_one_line_within_seconds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let broker = Broker::start(TOPIC, 1)?;
    let eh = EventHubsStandIn::start(
        &kv,
        &broker.bootstrap,
        Options {
            tier: Tier::Basic,
            ..Options::standard("ns1", TOPIC)
        },
    )?;
    let lake = tempfile::tempdir()?;
    let cmd = hot_with_connection_string(
        &eh,
        &kv,
        &eh.connection_string(),
        lake.path().to_str().context("lake path")?,
        &["--until-caught-up"],
    );
    assert_refused_fast(
        cmd,
        Duration::from_secs(15),
        &[
            "ns1.servicebus.windows.net",
            "fix:",
            "Basic tier",
            "Standard",
        ],
    )?;
    Ok(())
}

#[test]
fn messages_over_one_megabyte_are_refused_and_smaller_ones_pass_through() -> Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let broker = Broker::start(TOPIC, 1)?;
    let eh = EventHubsStandIn::start(&kv, &broker.bootstrap, Options::standard("ns1", TOPIC))?;
    let producer: FutureProducer = eh
        .client_config()
        .set("message.max.bytes", "4000000")
        .set("linger.ms", "0")
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let big = vec![b'x'; 1_500_000];
    let sent = rt.block_on(
        producer.send(
            FutureRecord::<(), [u8]>::to(TOPIC)
                .partition(0)
                .payload(&big),
            Duration::from_secs(30),
        ),
    );
    let err = sent.err().context("a 1.5 MB message was accepted")?.0;
    assert_eq!(
        err.rdkafka_error_code(),
        Some(rdkafka::error::RDKafkaErrorCode::MessageSizeTooLarge),
        "{err}"
    );
    assert_eq!(eh.oversized_refused(), 1);
    let small = vec![b'y'; 900_000];
    let delivery = rt
        .block_on(
            producer.send(
                FutureRecord::<(), [u8]>::to(TOPIC)
                    .partition(0)
                    .payload(&small),
                Duration::from_secs(30),
            ),
        )
        .map_err(|(e, _)| e)?;
    assert_eq!((delivery.partition, delivery.offset), (0, 0));
    Ok(())
}

fn check_rows(stdout: &str) -> Result<Vec<(String, String, String)>> {
    let v: serde_json::Value = serde_json::from_str(stdout)?;
    Ok(v["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                f("check"),
                f("status"),
                format!("{} {}", f("detail"), f("fix")),
            )
        })
        .collect())
}

#[test]
fn check_reports_ok_through_event_hubs_and_denied_for_a_wrong_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let broker = Broker::start(TOPIC, 3)?;
    let eh = EventHubsStandIn::start(&kv, &broker.bootstrap, Options::standard("ns1", TOPIC))?;
    let lake = tempfile::tempdir()?;
    let check = |cs: &str| -> Result<Vec<(String, String, String)>> {
        let mut c = Command::new(kvlake_bin());
        c.args([
            "check",
            "--json",
            "--brokers",
            &eh.bootstrap,
            "--topic",
            TOPIC,
        ])
        .args(["--group", "kvlake-test", "--timeout", "10s"])
        .args(["--lake", lake.path().to_str().unwrap_or_default()])
        .args(["--ca-file", eh.ca_file.to_str().unwrap_or_default()])
        .arg("--kafka-option")
        .arg(format!("ssl.ca.location={}", eh.ca_file.display()))
        .env_remove("KVLAKE_CONFIG");
        clean_env(&mut c, &kv);
        c.env("KVLAKE_EVENTHUBS_CONNECTION_STRING", cs);
        let (_, out, err) = run_to_end(c, Duration::from_secs(60))?;
        check_rows(&out).with_context(|| format!("{out}\n{err}"))
    };
    let status = |rows: &[(String, String, String)], name: &str| {
        rows.iter()
            .find(|r| r.0 == name)
            .map(|r| (r.1.clone(), r.2.clone()))
            .unwrap_or_default()
    };
    let rows = check(&eh.connection_string())?;
    assert_eq!(status(&rows, "event hubs network").0, "OK", "{rows:?}");
    let (st, detail) = status(&rows, "event hubs read");
    assert_eq!(st, "OK", "{rows:?}");
    assert!(detail.contains("3 partitions"), "{detail}");

    let wrong =
        eventhubs::connection_string("ns1", TOPIC, "Wr0ngK3yWr0ngK3yWr0ngK3yWr0ngK3yWr0ngK3y0=");
    let rows = check(&wrong)?;
    assert_eq!(status(&rows, "event hubs network").0, "OK", "{rows:?}");
    let (st, detail) = status(&rows, "event hubs read");
    assert_eq!(st, "DENIED", "{rows:?}");
    assert!(
        detail.contains("ns1.servicebus.windows.net") && detail.contains("Shared access policies"),
        "{detail}"
    );
    assert!(!detail.contains("Wr0ngK3y"), "{detail}");
    Ok(())
}
