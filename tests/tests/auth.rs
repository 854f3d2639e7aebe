//! Identity and secrets end to end: a managed identity (App Service form, HTTPS stand-in)
//! reads Key Vault references (stand-in), the hot path writes to Azurite with what it
//! read, rotated secrets are used without a restart, and no secret value is ever printed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use kvlake_tests::standin::AzureStandIn;
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's account, endpoint and plain HTTP, without a credential: the key comes
/// from Key Vault.
fn azurite_without_key(az: &Azurite) -> Vec<String> {
    [
        "--storage-option".to_string(),
        "azure_storage_account_name=devstoreaccount1".into(),
        "--storage-option".into(),
        format!(
            "azure_storage_endpoint=http://127.0.0.1:{}/devstoreaccount1",
            az.port
        ),
        "--storage-option".into(),
        "azure_allow_http=true".into(),
    ]
    .into()
}

fn with_identity(cmd: &mut Command, kv: &AzureStandIn) {
    for (k, v) in kv.identity_env() {
        cmd.env(k, v);
    }
    // Nothing of the developer's machine may stand in for the identity under test.
    for k in [
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "KVLAKE_EVENTHUBS_CONNECTION_STRING",
    ] {
        cmd.env_remove(k);
    }
}

#[test]
fn managed_identity_reads_the_storage_key_from_key_vault_and_the_hot_path_commits_to_azurite()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let az = Azurite::with_container(dir.path(), "lake")?;
    let kv = AzureStandIn::start(dir.path())?;
    kv.set_secret("lake-key", AZURITE_KEY);
    let (broker, ledger) = loaded_broker(TOPIC, 2, 5, 0.0, 150)?;
    let mut args = vec![
        "--until-caught-up".to_string(),
        "--storage-account-key".into(),
        kv.secret_url("lake-key"),
        "--ca-file".into(),
        kv.ca_file.display().to_string(),
    ];
    args.extend(azurite_without_key(&az));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = hot_command(&broker.bootstrap, TOPIC, "az://lake/kv", &args);
    with_identity(&mut cmd, &kv);
    let (code, stdout, stderr) = run_to_end(cmd, Duration::from_secs(120))?;
    assert_eq!(code, 0, "stdout {stdout}\nstderr {stderr}");
    assert!(
        stdout.contains(&format!("committed {} rows", ledger.records())),
        "{stdout}"
    );
    assert_eq!(
        kv.token_requests(),
        vec!["https://vault.azure.net".to_string()]
    );
    assert_eq!(kv.secret_reads("lake-key"), 1);
    assert_eq!(
        log_lines(&stderr, "identity: using managed-identity").count(),
        1,
        "the log says which credential the chain used: {stderr}"
    );
    Ok(())
}

#[test]
fn a_rotated_key_vault_secret_is_used_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let az = Azurite::with_container(dir.path(), "lake")?;
    let kv = AzureStandIn::start(dir.path())?;
    kv.set_secret("lake-key", AZURITE_KEY);
    let (broker, ledger) = loaded_broker(TOPIC, 2, 6, 0.0, 60)?;
    let port = free_port()?;
    let metrics = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--storage-account-key".to_string(),
        kv.secret_url("lake-key"),
        "--ca-file".into(),
        kv.ca_file.display().to_string(),
        "--secret-refresh".into(),
        "1s".into(),
        "--metrics-addr".into(),
        metrics,
        "--storage-retry-timeout".into(),
        "2s".into(),
    ];
    args.extend(azurite_without_key(&az));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = hot_command(&broker.bootstrap, TOPIC, "az://lake/kv", &args);
    with_identity(&mut cmd, &kv);
    let mut proc = Proc(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?);

    // The first key works: everything loaded so far is committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = http_get(port, "/metrics")
            .map(|(_, m)| prometheus_sum(&m, "kvlake_hot_rows_written_total"))
            .unwrap_or(0.0);
        if rows as usize >= ledger.records() {
            break;
        }
        ensure!(Instant::now() < deadline, "first batch not committed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Rotate: the running process re-reads the reference on its schedule and publishes
    // the new value to the lake's credential provider (which reads it per request; unit
    // test `lake_credentials_follow_a_rotated_key` in ingest), with no restart.
    let reads = kv.secret_reads("lake-key");
    kv.set_secret(
        "lake-key",
        "cm90YXRlZC1rZXktdGhhdC1henVyaXRlLWRvZXMtbm90LWtub3ctYXQtYWxsLTAxMjM0NTY3ODk=",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.secret_reads("lake-key") < reads + 2 {
        ensure!(Instant::now() < deadline, "the secret was not re-read");
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        matches!(proc.0.try_wait(), Ok(None)),
        "kvlake stopped on a rotation"
    );
    signal(&proc.0, "TERM");
    let (code, stderr) = proc.finish()?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        log_lines(&stderr, "secret changed at its source: using the new value").count(),
        1,
        "{stderr}"
    );
    assert_eq!(kv.token_requests().len(), 1, "the vault token is cached");
    Ok(())
}

#[test]
fn entra_auth_asks_the_identity_for_the_event_hubs_scope_before_connecting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kv = AzureStandIn::start(dir.path())?;
    let broker = Broker::start(TOPIC, 1)?;
    let lake = tempfile::tempdir()?;
    let mut cmd = hot_command(
        &broker.bootstrap,
        TOPIC,
        lake.path().to_str().unwrap_or_default(),
        &[
            "--until-caught-up",
            "--auth",
            "entra",
            "--security-protocol",
            "sasl_plaintext",
            "--kafka-oauth-scope",
            "https://ns1.servicebus.windows.net/.default",
            "--ca-file",
            kv.ca_file.to_str().unwrap_or_default(),
            "--connect-timeout",
            "3s",
        ],
    );
    with_identity(&mut cmd, &kv);
    let (code, _, stderr) = run_to_end(cmd, Duration::from_secs(60))?;
    // librdkafka's mock cluster speaks no SASL, so the connection itself fails; what
    // this proves is the token request for the namespace's scope, made at start-up.
    assert_ne!(code, 0);
    assert_eq!(
        kv.token_requests(),
        vec!["https://ns1.servicebus.windows.net".to_string()]
    );
    for t in kv.issued_tokens() {
        assert!(!stderr.contains(&t), "the token leaked into the logs");
    }
    Ok(())
}

#[test]
fn no_secret_value_reaches_stdout_stderr_logs_or_metrics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let az = Azurite::with_container(dir.path(), "lake")?;
    let kv = AzureStandIn::start(dir.path())?;
    kv.set_secret("lake-key", AZURITE_KEY);
    let cs_key = "Cs5ecretK3yV4lue0000000000000000000000000000=";
    let cs = format!(
        "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={cs_key};EntityPath={TOPIC}"
    );
    let client_secret = "Cl1entS3cretV4lue~never.printed";
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{client_secret}\n"))?;
    let secrets = [cs_key, client_secret, AZURITE_KEY];
    let check = |what: &str, text: &str, tokens: &[String]| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows a secret value:\n{text}");
        }
        for t in tokens {
            assert!(!text.contains(t.as_str()), "{what} shows a token:\n{text}");
        }
    };
    let common = |cmd: &mut Command| {
        with_identity(cmd, &kv);
        cmd.env("RUST_BACKTRACE", "1").args([
            "--client-secret",
            &format!("file:{}", secret_file.display()),
            "--ca-file",
            kv.ca_file.to_str().unwrap_or_default(),
            "--log",
            "debug,h2=info,hyper=info,rustls=info,reqwest=info",
        ]);
    };

    // 1. config show: every secret redacted, references named.
    let mut cmd = Command::new(kvlake_bin());
    cmd.args(["config", "show", "--group", "g", "--lake", "az://lake/kv"])
        .args(["--storage-account-key", &kv.secret_url("lake-key")])
        .env_remove("KVLAKE_CONFIG");
    common(&mut cmd);
    cmd.env("KVLAKE_EVENTHUBS_CONNECTION_STRING", &cs);
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(30))?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("eventhubs_connection_string = \"[REDACTED]\""),
        "{out}"
    );
    assert!(out.contains(&kv.secret_url("lake-key")), "{out}");
    assert!(out.contains("\"sasl.password\" = \"[REDACTED]\""), "{out}");
    check("config show", &format!("{out}{err}"), &[]);

    // 2. A failing run: the connection string's SASL_SSL against a closed port.
    let dead = format!("127.0.0.1:{}", free_port()?);
    let lake = tempfile::tempdir()?;
    let mut cmd = hot_command(
        &dead,
        TOPIC,
        lake.path().to_str().unwrap_or_default(),
        &["--until-caught-up", "--connect-timeout", "2s"],
    );
    common(&mut cmd);
    cmd.env("KVLAKE_EVENTHUBS_CONNECTION_STRING", &cs);
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(60))?;
    assert_ne!(code, 0, "{err}");
    check("a failing run", &format!("{out}{err}"), &kv.issued_tokens());

    // 3. A normal run on Azurite with the key from Key Vault, metrics scraped.
    let (broker, ledger) = loaded_broker(TOPIC, 2, 8, 0.0, 40)?;
    let port = free_port()?;
    let mut args = vec![
        "--storage-account-key".to_string(),
        kv.secret_url("lake-key"),
        "--metrics-addr".into(),
        format!("127.0.0.1:{port}"),
    ];
    args.extend(azurite_without_key(&az));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = hot_command(&broker.bootstrap, TOPIC, "az://lake/kv", &args);
    common(&mut cmd);
    let mut proc = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?);
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let m = http_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        if prometheus_sum(&m, "kvlake_hot_rows_written_total") as usize >= ledger.records() {
            break m;
        }
        ensure!(
            Instant::now() < deadline,
            "the normal run committed nothing"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    signal(&proc.0, "TERM");
    let mut out = String::new();
    if let Some(mut o) = proc.0.stdout.take() {
        use std::io::Read;
        o.read_to_string(&mut out)?;
    }
    let (code, err) = proc.finish()?;
    assert_eq!(code, Some(0), "{err}");
    let tokens = kv.issued_tokens();
    assert!(!tokens.is_empty());
    check("a normal run", &format!("{out}{err}"), &tokens);
    check("the metrics", &metrics, &tokens);
    Ok(())
}
