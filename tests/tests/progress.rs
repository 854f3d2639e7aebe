//! Progress display: a scheduled run or `convert` whose output is not a terminal writes
//! no progress (stdout holds the report, stderr only log lines); the same run on a
//! terminal (a pseudo-terminal from `script`) draws a bar and finishes it at the total.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";

/// Neither carriage returns nor escape sequences: what a redrawn bar is made of.
fn assert_no_drawing(what: &str, text: &str) {
    assert!(
        !text.contains('\r') && !text.contains('\x1b'),
        "{what} has terminal drawing in it:\n{text:?}"
    );
}

#[test]
fn runs_without_a_terminal_print_no_progress() -> Result<()> {
    let (broker, _ledger) = loaded_broker(TOPIC, 2, 93, 0.0, 60)?;
    let lake = tempfile::tempdir()?;
    let lake_url = lake.path().to_str().context("utf-8 path")?;
    let cmd = hot_command(&broker.bootstrap, TOPIC, lake_url, &["--until-caught-up"]);
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(60))?;
    assert_eq!(code, 0, "{err}");
    assert_no_drawing("stdout", &out);
    assert_no_drawing("stderr", &err);
    assert_eq!(out.lines().count(), 1, "only the report on stdout: {out}");
    assert!(out.starts_with("committed "), "{out}");
    for line in err.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "stderr holds only JSON log lines, not: {line:?}"
        );
    }

    // convert, the same way.
    let input = tempfile::tempdir()?;
    let file = input.path().join("PT1H.json");
    let generated = Command::new(kvlake_bin())
        .args(["generate", "--records", "300", "--format", "lines"])
        .output()?;
    std::fs::write(&file, generated.stdout)?;
    let mut convert = Command::new(kvlake_bin());
    convert.args(["convert", "--log-format", "json", "--lake", lake_url]);
    convert.arg(&file);
    let (code, out, err) = run_to_end(convert, Duration::from_secs(60))?;
    assert_eq!(code, 0, "{err}");
    assert_no_drawing("convert stdout", &out);
    assert_no_drawing("convert stderr", &err);
    assert!(out.starts_with("converted 1 files"), "{out}");
    Ok(())
}

/// Quotes for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn a_terminal_run_draws_a_bar_up_to_the_messages_it_had_to_read() -> Result<()> {
    let (broker, ledger) = loaded_broker(TOPIC, 2, 94, 0.0, 60)?;
    let lake = tempfile::tempdir()?;
    let lake_url = lake.path().to_str().context("utf-8 path")?;
    let hot = hot_command(&broker.bootstrap, TOPIC, lake_url, &["--until-caught-up"]);
    let line = std::iter::once(hot.get_program())
        .chain(hot.get_args())
        .map(|a| sh_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    // `script` runs the command on a pseudo-terminal: stdout and stderr are terminals.
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-f", "-c", &line, "/dev/null"]);
    let (code, out, err) = run_to_end(cmd, Duration::from_secs(60))?;
    assert_eq!(code, 0, "{out}\n{err}");
    let total = ledger.messages.len();
    assert!(
        out.contains(&format!("{total}/{total} messages")) && out.contains("done"),
        "a finished bar at {total} messages:\n{out}"
    );
    Ok(())
}
