//! Deterministic crashes at each step of the checkpoint protocol (failpoints between
//! plan, staged rows, commit, merged files and Delta commit), then a restart: every record
//! exactly once, and no file on disk that the tables do not list but a crashed merge's.

use std::collections::BTreeSet;
use std::time::Duration;

use kvlake_hotpath::{HotConfig, Lake, RunMode};
use kvlake_tests::{
    Ledger, assert_exactly_once, find_files, lake_coordinates, parquet_files, produce,
    produce_past_retention, small_messages,
};
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "kv-audit";

/// Failpoints are process-wide: tests that set them take turns (nextest runs each test
/// in its own process anyway; this keeps `cargo test` right too).
static FAILPOINTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(bootstrap: &str) -> HotConfig {
    let mut cfg = HotConfig::new(bootstrap, TOPIC, "crash-points");
    cfg.mode = RunMode::UntilCaughtUp;
    cfg.batch.max_records = 150;
    cfg.batch.max_wait = Duration::from_millis(200);
    cfg.connect_timeout = Duration::from_secs(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_protocol_step_then_restart_is_exactly_once() {
    let _turn = FAILPOINTS.lock().await;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(lake_dir.path().to_str().unwrap(), &[], None).unwrap();
    let mut ledger = Ledger::default();
    for (round, point, action) in [
        (0, "after-plan", "panic"),
        (1, "after-files", "panic"),
        (2, "before-commit", "return"),
        // The checkpoint log has the commit, the Delta tables not yet: the restart
        // publishes it before anything else (`PartitionLog::resume_published`).
        (3, "after-commit", "panic"),
        (4, "after-delta", "panic"),
        // The merged Parquet files are written, their Delta commit is not.
        (5, "after-merge", "panic"),
    ] {
        let b = bootstrap.clone();
        let mut l = ledger.clone();
        ledger = tokio::task::spawn_blocking(move || {
            produce(&b, TOPIC, 2, small_messages(50 + round, 0.05), 60, &mut l).unwrap();
            l
        })
        .await
        .unwrap();
        fail::cfg(point, action).unwrap();
        let crashed =
            kvlake_hotpath::run(config(&bootstrap), lake.clone(), CancellationToken::new()).await;
        fail::remove(point);
        assert!(
            crashed.is_err(),
            "{point}: the run must fail at the crash point"
        );
        let plans = find_files(lake_dir.path(), ".plan.json").count();
        let commits = find_files(lake_dir.path(), ".commit.json").count();
        if ["after-commit", "after-delta", "after-merge"].contains(&point) {
            assert_eq!(
                plans, commits,
                "{point}: the commit was written before the crash"
            );
        } else {
            assert!(
                plans > commits,
                "{point}: a plan is left without its commit ({plans} plans, {commits} commits)"
            );
        }
        let summary =
            kvlake_hotpath::run(config(&bootstrap), lake.clone(), CancellationToken::new())
                .await
                .unwrap();
        assert!(summary.partitions.iter().all(|p| p.lost_to.is_none()));
        assert_exactly_once(
            &ledger.expected(),
            &lake_coordinates(lake_dir.path()).unwrap(),
        )
        .unwrap();
        // Every Parquet file on disk is one the tables' Delta logs list: re-runs left no
        // orphans (but for a crash after the merged files and before their Delta
        // commit: those wait for VACUUM, and no log names them).
        let mut listed = BTreeSet::new();
        for table in ["raw", "deadletter"] {
            let root = lake_dir.path().join(table);
            if root.join("_delta_log").is_dir() {
                for f in kvlake_tests::delta::live_files(&root).unwrap() {
                    let rel = f.strip_prefix(lake_dir.path()).unwrap();
                    listed.insert(rel.to_string_lossy().into_owned());
                }
            }
        }
        let mut on_disk = parquet_files(&lake_dir.path().join("raw")).unwrap();
        on_disk.extend(parquet_files(&lake_dir.path().join("deadletter")).unwrap());
        let on_disk: BTreeSet<String> = on_disk
            .iter()
            .map(|p| {
                p.strip_prefix(lake_dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        if point == "after-merge" {
            assert!(listed.is_subset(&on_disk), "{point}");
        } else {
            assert_eq!(on_disk, listed, "{point}");
        }
        // Every batch is in its table, so none of them is still staged.
        let staged = find_files(&lake_dir.path().join("_kvlake/staging"), ".arrow").count();
        assert_eq!(
            staged, 0,
            "{point}: staged files of published batches deleted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_batch_whose_messages_expired_is_committed_empty_and_the_partition_goes_on() {
    let _turn = FAILPOINTS.lock().await;
    let topic = "kv-expire";
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(lake_dir.path().to_str().unwrap(), &[], None).unwrap();
    let cfg = |b: &str| {
        let mut c = config(b);
        c.topic = topic.to_string();
        c.batch.max_records = 1_000_000;
        c
    };
    let (b, mut ledger) = (bootstrap.clone(), Ledger::default());
    ledger = tokio::task::spawn_blocking(move || {
        produce(&b, topic, 1, small_messages(70, 0.0), 60, &mut ledger).unwrap();
        ledger
    })
    .await
    .unwrap();
    // Crash after the plan: the batch [0, 60) is planned, never written.
    fail::cfg("after-plan", "panic").unwrap();
    assert!(
        kvlake_hotpath::run(cfg(&bootstrap), lake.clone(), CancellationToken::new())
            .await
            .is_err()
    );
    fail::remove("after-plan");
    // Meanwhile retention deletes those messages (the mock broker keeps 5 MiB).
    let b = bootstrap.clone();
    ledger = tokio::task::spawn_blocking(move || {
        produce_past_retention(&b, topic, 1, small_messages(71, 0.0), 1500, &mut ledger).unwrap();
        ledger
    })
    .await
    .unwrap();
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let (low, _) =
        rdkafka::consumer::Consumer::fetch_watermarks(&consumer, topic, 0, Duration::from_secs(10))
            .unwrap();
    assert!(
        low > 60,
        "retention moved the low watermark past the planned batch ({low})"
    );
    let summary = kvlake_hotpath::run(cfg(&bootstrap), lake.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert!(
        summary.partitions.iter().all(|p| p.lost_to.is_none()),
        "the partition is not given up"
    );
    // What the broker still had is in the lake, exactly once; nothing of the expired range is.
    let remaining = Ledger {
        messages: ledger
            .messages
            .into_iter()
            .filter(|((_, o), _)| *o >= low)
            .collect(),
    };
    assert_exactly_once(
        &remaining.expected(),
        &lake_coordinates(lake_dir.path()).unwrap(),
    )
    .unwrap();
}
