//! The binary's start-up contract: layered settings, and bad configuration refused with
//! a message that names the setting and the fix, before anything connects.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use kvlake_tests::*;

fn hot(args: &[&str], envs: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let mut cmd = Command::new(kvlake_bin());
    cmd.arg("hot").args(args).env_remove("KVLAKE_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_to_end(cmd, Duration::from_secs(30))
}

#[test]
fn bad_configuration_stops_start_up_with_a_message_naming_the_setting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let toml = dir.path().join("kvlake.toml");
    std::fs::write(
        &toml,
        "brokers = \"localhost:1\"\ntopic = \"t\"\ngroup = \"g\"\nlake = \"./x\"\nbatch_max_wiat = \"5m\"\n",
    )?;
    let (code, _, err) = hot(&["--config", toml.to_str().unwrap_or_default()], &[])?;
    assert_ne!(code, 0);
    assert!(
        err.contains("batch_max_wiat"),
        "names the unknown key: {err}"
    );

    let (code, _, err) = hot(
        &["--brokers", "localhost:1", "--group", "g", "--lake", "./x"],
        &[],
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--topic") && err.contains("KVLAKE_TOPIC"),
        "{err}"
    );

    let (code, _, err) = hot(
        &[
            "--topic",
            "t",
            "--group",
            "g",
            "--lake",
            "./x",
            "--max-runtime",
            "soon",
        ],
        &[("KVLAKE_BROKERS", "localhost:1")],
    )?;
    assert_ne!(code, 0);
    assert!(err.contains("--max-runtime") && err.contains("4h"), "{err}");

    let secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=SUPERSECRETVALUE";
    let (code, out, err) = hot(
        &["--group", "g", "--lake", "./x"],
        &[("KVLAKE_EVENTHUBS_CONNECTION_STRING", secret)],
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--topic"),
        "no EntityPath and no --topic: {err}"
    );
    assert!(
        !err.contains("SUPERSECRETVALUE") && !out.contains("SUPERSECRETVALUE"),
        "the secret never appears"
    );
    Ok(())
}

#[test]
fn flags_override_environment_override_the_config_file() -> Result<()> {
    let broker = Broker::start("from-flag", 1)?;
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let toml = dir.path().join("kvlake.toml");
    std::fs::write(
        &toml,
        format!(
            "brokers = \"{}\"\ntopic = \"from-file\"\ngroup = \"g\"\nlake = \"{}\"\nuntil_caught_up = true\n",
            broker.bootstrap,
            lake.display()
        ),
    )?;
    // File says topic from-file, environment says from-env, the flag says from-flag: the flag wins.
    let (code, _, err) = hot(
        &[
            "--config",
            toml.to_str().unwrap_or_default(),
            "--topic",
            "from-flag",
            "--log-format",
            "json",
        ],
        &[("KVLAKE_TOPIC", "from-env")],
    )?;
    assert_eq!(code, 0, "{err}");
    let start = log_lines(&err, "kvlake hot starting")
        .next()
        .expect("start line");
    assert_eq!(start["topic"], "from-flag");
    // Without the flag the environment wins over the file (and the topic does not exist).
    let (code, _, err) = hot(
        &[
            "--config",
            toml.to_str().unwrap_or_default(),
            "--connect-timeout",
            "3s",
        ],
        &[("KVLAKE_TOPIC", "from-env")],
    )?;
    assert_ne!(code, 0);
    assert!(err.contains("from-env"), "{err}");
    Ok(())
}
