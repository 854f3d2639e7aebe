//! `kvlake check` against the local stack: OK for every endpoint when all is well;
//! BLOCKED for a closed port, DENIED for a wrong key and a missing Key Vault role.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use kvlake_tests::standin::AzureStandIn;
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn check_cmd(kv: &AzureStandIn, az: &Azurite, brokers: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(kvlake_bin());
    c.args([
        "check",
        "--brokers",
        brokers,
        "--topic",
        TOPIC,
        "--group",
        "kvlake-test",
    ])
    .args(["--lake", "az://lake/kv", "--timeout", "3s"])
    .args(["--ca-file", kv.ca_file.to_str().unwrap_or_default()])
    .args([
        "--storage-option",
        "azure_storage_account_name=devstoreaccount1",
    ])
    .arg("--storage-option")
    .arg(format!(
        "azure_storage_endpoint=http://127.0.0.1:{}/devstoreaccount1",
        az.port
    ))
    .args(["--storage-option", "azure_allow_http=true"])
    .args(extra)
    .env_remove("KVLAKE_CONFIG")
    .env_remove("AZURE_FEDERATED_TOKEN_FILE");
    for (k, v) in kv.identity_env() {
        c.env(k, v);
    }
    c
}

fn rows(stdout: &str) -> Result<Vec<(String, String, String)>> {
    let v: serde_json::Value = serde_json::from_str(stdout)?;
    Ok(v["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (f("check"), f("target"), f("status"))
        })
        .collect())
}

#[test]
fn check_reports_ok_for_every_endpoint_of_the_local_stack() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let az = Azurite::with_container(dir.path(), "lake")?;
    let kv = AzureStandIn::start(dir.path())?;
    kv.set_secret("lake-key", AZURITE_KEY);
    let broker = Broker::start(TOPIC, 3)?;
    let key = kv.secret_url("lake-key");
    let cmd = check_cmd(
        &kv,
        &az,
        &broker.bootstrap,
        &["--json", "--storage-account-key", &key],
    );
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(90))?;
    assert_eq!(code, 0, "{out}\n{err}");
    let rows = rows(&out)?;
    let checks: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    for want in [
        "identity network",
        "key vault network",
        "secret",
        "event hubs network",
        "event hubs read",
        "storage network",
        "lake write/read/delete",
    ] {
        assert!(checks.contains(&want), "no {want} check in {out}");
    }
    assert!(rows.iter().all(|r| r.2 == "OK"), "{out}");
    assert!(out.contains("3 partitions"), "{out}");
    Ok(())
}

#[test]
fn check_reports_blocked_for_a_closed_port_and_denied_for_a_wrong_key_and_a_missing_role()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let az = Azurite::with_container(dir.path(), "lake")?;
    let kv = AzureStandIn::start(dir.path())?;
    kv.set_secret("lake-sas", "sv=2022-11-02&sig=x");
    kv.deny("lake-sas");
    let closed = format!("127.0.0.1:{}", free_port()?);
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let sas = kv.secret_url("lake-sas");
    let args = ["--storage-account-key", wrong_key, "--storage-sas", &sas];
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let (code, out, err) = run_to_end(
        check_cmd(&kv, &az, &closed, &json_args),
        Duration::from_secs(90),
    )?;
    assert_ne!(code, 0, "{out}\n{err}");
    let rows = rows(&out)?;
    let status = |check: &str| {
        rows.iter()
            .find(|r| r.0 == check)
            .map(|r| r.2.clone())
            .unwrap_or_default()
    };
    assert_eq!(status("event hubs network"), "BLOCKED", "{out}");
    assert_eq!(status("lake write/read/delete"), "DENIED", "{out}");
    assert_eq!(status("secret"), "DENIED", "{out}");
    assert!(
        out.contains("Key Vault Secrets User"),
        "names the missing role: {out}"
    );
    assert!(!out.contains(wrong_key) && !err.contains(wrong_key));

    // The table says the same to a person.
    let (code, out, _) = run_to_end(check_cmd(&kv, &az, &closed, &args), Duration::from_secs(90))?;
    assert_ne!(code, 0);
    assert!(
        out.contains("BLOCKED") && out.contains("DENIED") && out.contains("fix:"),
        "{out}"
    );
    Ok(())
}
