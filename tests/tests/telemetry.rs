//! The service's endpoints during a real run: `/metrics` counters agree with the rows in
//! the lake, lag reads 0 once caught up, `/healthz` answers, `/readyz` turns unready while
//! storage is down and ready again after.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use kvlake_tests::*;

const TOPIC: &str = "kv-audit";

fn wait_until(limit: Duration, mut what: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if what().unwrap_or(false) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_agree_with_the_lake_and_readyz_follows_storage() -> Result<()> {
    let az_dir = tempfile::tempdir()?;
    let mut az = Azurite::with_container(az_dir.path(), "lake")?;
    let (broker, mut ledger) = loaded_broker(TOPIC, 4, 81, 0.05, 400)?;
    let port = free_port()?;
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = ["--batch-max-wait", "200ms", "--metrics-addr", &metrics_addr]
        .map(String::from)
        .to_vec();
    args.extend(az.options());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut kv = spawn_hot(&broker.bootstrap, TOPIC, "az://lake/kv", &args)?;
    let expected = ledger.records() as f64;
    let scrape = || -> Result<String> { Ok(http_get(port, "/metrics")?.1) };
    wait_until(Duration::from_secs(60), || {
        let m = scrape()?;
        Ok(prometheus_sum(&m, "kvlake_hot_rows_written_total")
            + prometheus_sum(&m, "kvlake_hot_dead_letters_total")
            >= expected)
    })?;
    let m = scrape()?;
    let rows = prometheus_sum(&m, "kvlake_hot_rows_written_total");
    let dead = prometheus_sum(&m, "kvlake_hot_dead_letters_total");
    assert_eq!(
        rows + dead,
        expected,
        "counters agree with every record produced"
    );
    assert_eq!(
        prometheus_sum(&m, "kvlake_hot_records_consumed_total"),
        expected
    );
    assert!(
        dead > 0.0 && m.contains("kvlake_hot_dead_letters_total{reason=\""),
        "dead letters by reason:\n{m}"
    );
    assert_eq!(prometheus_sum(&m, "kvlake_hot_partitions_assigned"), 4.0);
    assert!(prometheus_sum(&m, "kvlake_hot_batch_duration_seconds_count") >= 4.0);
    assert!(prometheus_sum(&m, "kvlake_hot_last_commit_timestamp_seconds") > 1.7e9);
    // The lake holds exactly what the counters say.
    let local = tempfile::tempdir()?;
    tokio::runtime::Runtime::new()?.block_on(download_azurite(&az, "lake", local.path()))?;
    let found = lake_coordinates(&local.path().join("kv"))?;
    assert_eq!(found.values().sum::<usize>() as f64, rows + dead);
    let files = prometheus_sum(&m, "kvlake_hot_files_written_total");
    assert_eq!(
        files as usize,
        parquet_files(&local.path().join("kv/raw"))?.len()
            + parquet_files(&local.path().join("kv/deadletter"))?.len()
    );

    // Caught up: every partition's lag gauge (from librdkafka's statistics) reads 0.
    wait_until(Duration::from_secs(30), || {
        let m = scrape()?;
        let lines = m
            .lines()
            .filter(|l| l.starts_with("kvlake_hot_partition_lag_messages{"))
            .count();
        Ok(lines == 4 && prometheus_sum(&m, "kvlake_hot_partition_lag_messages") == 0.0)
    })?;
    assert_eq!(http_get(port, "/healthz")?.0, 200);
    assert_eq!(http_get(port, "/readyz")?.0, 200);
    // Storage down: the next batch's writes fail and are retried; /readyz says so.
    az.stop();
    produce(
        &broker.bootstrap,
        TOPIC,
        4,
        small_messages(82, 0.0),
        40,
        &mut ledger,
    )?;
    wait_until(Duration::from_secs(30), || {
        Ok(http_get(port, "/readyz")?.0 == 503)
    })?;
    assert_eq!(http_get(port, "/healthz")?.0, 200, "alive while unready");
    az.restart()?;
    wait_until(Duration::from_secs(60), || {
        Ok(http_get(port, "/readyz")?.0 == 200)
    })?;
    assert!(prometheus_sum(&scrape()?, "kvlake_hot_storage_retries_total") > 0.0);
    signal(&kv.0, "TERM");
    let (code, stderr) = kv.finish()?;
    assert_eq!(
        code,
        Some(0),
        "{}",
        stderr.lines().rev().take(10).collect::<Vec<_>>().join("\n")
    );
    Ok(())
}
