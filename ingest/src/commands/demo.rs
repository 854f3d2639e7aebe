//! `kvlake demo`: the whole pipeline on one machine with no cloud account — an embedded
//! Kafka-protocol broker, synthetic Key Vault traffic, the hot path until caught up into
//! a local lake, a report of what landed there, then the cold path and what it found.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, AsArray};
use kvlake_coldpath::job::agg_table;
use kvlake_generator::{Attack, Generator, GeneratorConfig, MessageKind};
use kvlake_hotpath::{HotConfig, Lake, RunMode};
use kvlake_lake::tables::{dead_letter_table, raw_table};
use kvlake_lake::{DeltaTable, TableDef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::commands::mock_broker::EmbeddedBroker;

const TOPIC: &str = "kv-audit";
const MARKER: &str = "_kvlake/demo.json";
/// librdkafka's mock cluster keeps only the last 5 MiB of a partition.
const PARTITION_LIMIT: u64 = 5 << 20;

/// Where the demo's log lines go: beside its lake folder (which it empties).
pub fn log_path(args: &DemoArgs) -> std::path::PathBuf {
    let lake = args.lake.strip_prefix("file://").unwrap_or(&args.lake);
    std::path::PathBuf::from(format!("{}.log", lake.trim_end_matches('/')))
}

pub async fn run(args: &DemoArgs) -> Result<()> {
    ensure!(args.partitions >= 1, "--partitions must be at least 1");
    let dir = prepare_lake_dir(&args.lake)?;
    println!("kvlake demo: log lines go to {}", log_path(args).display());
    let broker = EmbeddedBroker::start(&[TOPIC.to_string()], args.partitions)?;
    println!(
        "1. embedded Kafka-protocol broker (librdkafka mock cluster) at {}, topic {TOPIC} with {} partitions",
        broker.bootstrap, args.partitions
    );

    let (messages, records, bad, bytes_per_partition) = produce(&broker.bootstrap, args)?;
    let total: u64 = bytes_per_partition.values().sum();
    println!(
        "2. produced {records} synthetic AuditEvent records in {messages} messages ({:.1} MB, {bad} deliberately malformed)",
        total as f64 / 1e6
    );
    verify_broker_kept_everything(&broker.bootstrap, &bytes_per_partition, args.partitions)?;

    let lake = Lake::open(&args.lake, &[], None)?;
    lake.put(
        MARKER,
        bytes::Bytes::from_static(b"{\"written_by\":\"kvlake demo\"}"),
    )
    .await?;
    let mut cfg = HotConfig::new(&broker.bootstrap, TOPIC, "kvlake-demo");
    cfg.mode = RunMode::UntilCaughtUp;
    cfg.batch.max_wait = Duration::from_secs(5);
    // The speed layer, with the thresholds the cold path of step 6 uses.
    cfg.speed = Some(kvlake_hotpath::speed::SpeedConfig::new(
        super::hot::speed_thresholds(&kvlake_coldpath::Thresholds::default()),
    ));
    let started = Instant::now();
    let started_at = now_micros();
    let summary = kvlake_hotpath::run(cfg, lake.clone(), CancellationToken::new())
        .await
        .context("hot path failed")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "3. hot path --until-caught-up: {} rows + {} dead letters committed in {} batches, {secs:.1}s",
        summary.raw_rows(),
        summary.dead_letter_rows(),
        summary.partitions.iter().map(|p| p.batches).sum::<u64>()
    );
    ensure!(
        summary.raw_rows() + summary.dead_letter_rows() == records as u64,
        "records produced ({records}) != rows + dead letters ({})",
        summary.raw_rows() + summary.dead_letter_rows()
    );
    println!(
        "   every record accounted for: {records} produced = {} raw + {} dead-lettered",
        summary.raw_rows(),
        summary.dead_letter_rows()
    );

    alerts(&lake, &dir, started_at).await?;
    report(&lake, &dir).await?;
    cold(&lake, &dir).await?;
    let opts = kvlake_coldpath::report::ReportOptions {
        lake_name: dir.display().to_string(),
        ..kvlake_coldpath::report::ReportOptions::default()
    };
    let report = kvlake_coldpath::report::build(&lake, &opts)
        .await
        .context("report failed")?;
    let page = dir.join("report.html");
    let size = report.html.len();
    let html = report.html;
    let target = page.clone();
    tokio::task::spawn_blocking(move || std::fs::write(target, html))
        .await?
        .with_context(|| format!("cannot write {}", page.display()))?;
    println!(
        "8. report (kvlake report): {} ({:.0} KB, {} findings, built in {:.1}s): open it in a browser; it loads nothing",
        page.display(),
        size as f64 / 1024.0,
        report.data.findings.len(),
        report.duration.as_secs_f64()
    );
    println!(
        "\nThe lake's tables are Delta tables in {}: read them with DuckDB, Polars, Spark, Fabric or delta-rs, e.g.",
        dir.display()
    );
    println!(
        "   duckdb -c \"install delta; load delta; select vault_name, operation_name, count(*) from delta_scan('{}/raw') group by all order by 3 desc limit 10\"",
        dir.display()
    );
    println!(
        "   python3 -c \"import polars as pl; print(pl.read_delta('{}/agg/anomalies').select('date','kind','description'))\"",
        dir.display()
    );
    drop(broker);
    Ok(())
}

/// The demo owns its folder: it empties a folder a previous demo wrote, and refuses any other non-empty one.
fn prepare_lake_dir(lake: &str) -> Result<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(lake.strip_prefix("file://").unwrap_or(lake));
    if lake.contains("://") && !lake.starts_with("file://") {
        bail!("the demo writes to a local folder; --lake {lake} is not one");
    }
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} is not empty and was not written by `kvlake demo`: choose another --lake",
                dir.display()
            );
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(std::fs::canonicalize(&dir)?)
}

/// Produces generator traffic round-robin over the partitions; returns messages,
/// records, bad messages and bytes per partition.
fn produce(bootstrap: &str, args: &DemoArgs) -> Result<(u64, usize, u64, HashMap<i32, u64>)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("cannot create the demo producer")?;
    // About nine days of event time (30k records at 0.04/s), so the cold path has the
    // week of history its baselines need before the attacks of day nine.
    let day = 86_400_000_000i64;
    let hour = day / 24;
    let mut g = Generator::new(GeneratorConfig {
        seed: args.seed,
        bad_message_rate: 0.005,
        events_per_second: 0.04,
        attacks: vec![
            Attack::SensitiveOperation {
                at_micros: 2 * day + 10 * hour,
                operation: "SecretPurge".into(),
            },
            Attack::MassSecretRetrieval {
                at_micros: 8 * day + hour,
                count: 200,
            },
            Attack::ListThenRead {
                at_micros: 8 * day + 3 * hour,
                gets: 30,
            },
            Attack::DeniedBurst {
                at_micros: 8 * day + 5 * hour,
                count: 30,
            },
            Attack::NewIdentityOnVault {
                at_micros: 8 * day + 7 * hour,
            },
            Attack::NewIpForIdentity {
                at_micros: 8 * day + 9 * hour,
            },
        ],
        ..GeneratorConfig::default()
    });
    let (mut messages, mut records, mut bad) = (0u64, 0usize, 0u64);
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    while records < args.records {
        let m = g.next_message();
        records += match m.kind {
            MessageKind::Good { records } => records,
            MessageKind::Bad { .. } => {
                bad += 1;
                1
            }
        };
        let p = (messages % args.partitions as u64) as i32;
        *sizes.entry(p).or_default() += m.bytes.len() as u64;
        let rec = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition(p)
            .payload(&m.bytes)
            .timestamp(m.event_time_micros / 1000);
        if let Err((e, _)) = producer.send(rec) {
            bail!("producing to the embedded broker: {e}");
        }
        producer.poll(Duration::ZERO);
        messages += 1;
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the demo producer")?;
    if let Some((p, b)) = sizes.iter().find(|(_, b)| **b > PARTITION_LIMIT * 9 / 10) {
        bail!(
            "partition {p} got {b} bytes, too close to the mock broker's 5 MiB per partition: use more --partitions or fewer --records"
        );
    }
    Ok((messages, records, bad, sizes))
}

/// The mock broker silently drops a partition's oldest data past 5 MiB: check nothing went.
fn verify_broker_kept_everything(
    bootstrap: &str,
    sizes: &HashMap<i32, u64>,
    partitions: i32,
) -> Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kvlake-demo-check")
        .create()?;
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        ensure!(
            low == 0,
            "the broker dropped messages of partition {p} (low watermark {low}); produce less"
        );
        ensure!(
            high > 0 || sizes.get(&p).copied().unwrap_or(0) == 0,
            "partition {p} is empty"
        );
    }
    Ok(())
}

/// Prints the files, row counts, dead letters by reason and the busiest vaults.
async fn report(lake: &Lake, dir: &std::path::Path) -> Result<()> {
    let mut files: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut vaults: HashMap<(String, String), u64> = HashMap::new();
    for (table, def) in [("raw", raw_table()), ("deadletter", dead_letter_table())] {
        for path in live_files(lake, dir, def).await? {
            let file = std::fs::File::open(&path)?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
            let rows = builder.metadata().file_metadata().num_rows() as u64;
            let e = files.entry(table).or_default();
            *e = (e.0 + 1, e.1 + rows, e.2 + std::fs::metadata(&path)?.len());
            let wanted: &[&str] = if table == "raw" {
                &["vault_name", "result_class"]
            } else {
                &["reason"]
            };
            let schema = builder.parquet_schema();
            let idx: Vec<usize> = (0..schema.num_columns())
                .filter(|&i| wanted.contains(&schema.column(i).name()))
                .collect();
            let mask = ProjectionMask::leaves(schema, idx);
            for batch in builder.with_projection(mask).build()? {
                let batch = batch?;
                if table == "raw" {
                    let column = |name: &str| {
                        batch
                            .column_by_name(name)
                            .map(|c| c.as_string::<i32>().clone())
                    };
                    let (Some(v), Some(r)) = (column("vault_name"), column("result_class")) else {
                        bail!("raw file without vault_name/result_class")
                    };
                    for i in 0..batch.num_rows() {
                        let vault = if v.is_valid(i) {
                            v.value(i).to_string()
                        } else {
                            "?".into()
                        };
                        *vaults.entry((vault, r.value(i).to_string())).or_default() += 1;
                    }
                } else {
                    let r = batch.column(0).as_string::<i32>();
                    for i in 0..batch.num_rows() {
                        *reasons.entry(r.value(i).to_string()).or_default() += 1;
                    }
                }
            }
        }
    }
    println!("4. the lake:");
    for (table, (n, rows, bytes)) in &files {
        println!(
            "   {table:<11} {n:>4} Parquet files (zstd), {rows:>7} rows, {:>8.2} MB, partitioned date=/hour=",
            *bytes as f64 / 1e6
        );
    }
    println!(
        "   dead letters by reason: {}",
        reasons
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("5. busiest vaults (read back from the raw files):");
    let mut per_vault: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for ((v, class), n) in &vaults {
        let e = per_vault.entry(v.clone()).or_default();
        e.0 += n;
        if class != "success" {
            e.1 += n;
        }
    }
    let mut top: Vec<_> = per_vault.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1.0));
    println!(
        "   {:<24} {:>10} {:>12}",
        "vault", "operations", "not success"
    );
    for (v, (ops, failed)) in top.into_iter().take(5) {
        println!("   {v:<24} {ops:>10} {failed:>12}");
    }
    Ok(())
}

/// Step 6: the cold path over the lake the hot path has just filled, and what it found.
async fn cold(lake: &Lake, dir: &std::path::Path) -> Result<()> {
    let (store, root) = lake.store();
    let job = kvlake_coldpath::ColdJob::new(
        store.clone(),
        root.clone(),
        kvlake_coldpath::Thresholds::default(),
    )?;
    let report = job.run(None).await.context("cold path failed")?;
    println!(
        "6. cold path: {} days from {} committed raw rows, in {:.1}s:",
        report.days_computed.len(),
        report.raw_rows,
        report.duration.as_secs_f64()
    );
    for (table, rows) in &report.rows {
        println!("   agg/{table:<21} {rows:>7} rows");
    }
    let busiest = read_agg(lake, dir, "vault_daily", &["vault_name", "operations"]).await?;
    let mut per_day: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &busiest {
        *per_day.entry((row[1].clone(), row[0].clone())).or_default() +=
            row[2].parse::<u64>().unwrap_or(0);
    }
    if let Some(((vault, _), _)) = per_day.iter().max_by_key(|(_, n)| **n) {
        let days: Vec<String> = per_day
            .iter()
            .filter(|((v, _), _)| v == vault)
            .map(|((_, d), n)| format!("{}:{n}", &d[5..]))
            .collect();
        println!(
            "   calls per day on {vault} (vault_daily): {}",
            days.join(" ")
        );
    }
    let anomalies = read_agg(lake, dir, "anomalies", &["kind", "description"]).await?;
    println!("7. anomalies ({} rows), a few of them:", anomalies.len());
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    for row in &anomalies {
        let n = shown.entry(row[1].clone()).or_default();
        *n += 1;
        if *n <= 2 {
            println!("   {} {:<22} {}", row[0], row[1], row[2]);
        }
    }
    Ok(())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// What the speed layer raised while the hot path read: `<lake>/alerts/`, by kind, with
/// when each was raised (seconds into the read, and after its record's event time).
async fn alerts(lake: &Lake, dir: &std::path::Path, started_at: i64) -> Result<()> {
    let mut rows: Vec<(String, String, i64, Option<i64>)> = Vec::new();
    for path in live_files(lake, dir, kvlake_lake::tables::alerts_table()).await? {
        let file = std::fs::File::open(&path)?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let batch = batch?;
            let text = |c: &str| {
                batch
                    .column_by_name(c)
                    .map(|a| a.as_string::<i32>().clone())
            };
            let time = |c: &str| {
                batch.column_by_name(c).map(|a| {
                    a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                        .clone()
                })
            };
            let (Some(kind), Some(subject), Some(detected), Some(event)) = (
                text("kind"),
                text("subject"),
                time("detected_at"),
                time("event_time"),
            ) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                rows.push((
                    kind.value(i).to_string(),
                    subject.value(i).to_string(),
                    detected.value(i),
                    (!event.is_null(i)).then(|| event.value(i)),
                ));
            }
        }
    }
    rows.sort_by_key(|r| r.2);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *by_kind.entry(r.0.as_str()).or_default() += 1;
    }
    println!(
        "   speed layer: {} alerts raised in transit, before any cold run ({}); the first of each kind:",
        rows.len(),
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut shown = std::collections::BTreeSet::new();
    for (kind, subject, detected, event) in &rows {
        if !shown.insert(kind.clone()) {
            continue;
        }
        let after_event = event.map_or(String::new(), |e| {
            format!(
                ", its record's event time {}",
                kvlake_schemas::time::format_timestamp_micros(e)
            )
        });
        println!(
            "   {kind:<22} {subject}: raised {:.1}s into the read{after_event}",
            (detected - started_at) as f64 / 1e6
        );
    }
    println!(
        "   (live, an alert follows its record by under a second: `target/debug/alert-latency`; this backlog of past days is read out of event-time order across partitions, so its list differs from step 7's: ARCHITECTURE.md, \"Speed layer\")"
    );
    Ok(())
}

/// Rows of a cold-path table as text: the partition date, then `columns`.
async fn read_agg(
    lake: &Lake,
    dir: &std::path::Path,
    table: &str,
    columns: &[&str],
) -> Result<Vec<Vec<String>>> {
    let def = kvlake_coldpath::definitions::table(table)
        .with_context(|| format!("no cold-path table {table}"))?;
    let mut rows = Vec::new();
    for path in live_files(lake, dir, agg_table(def)).await? {
        let date = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().trim_start_matches("date=").to_string())
            .unwrap_or_default();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path)?)?.build()?;
        for batch in reader {
            let batch = batch?;
            let cols = columns
                .iter()
                .map(|c| {
                    batch
                        .column_by_name(c)
                        .cloned()
                        .with_context(|| format!("agg/{table} has no column {c}"))
                })
                .collect::<Result<Vec<_>>>()?;
            for i in 0..batch.num_rows() {
                let mut row = vec![date.clone()];
                for c in &cols {
                    row.push(arrow::util::display::array_value_to_string(c, i)?);
                }
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// The files a table's Delta log says are live, as local paths: the folder also holds
/// files that compaction or a cold re-run replaced, and the log's own checkpoints.
async fn live_files(
    lake: &Lake,
    dir: &std::path::Path,
    def: TableDef,
) -> Result<Vec<std::path::PathBuf>> {
    let table = DeltaTable::new(lake, def);
    if !table.exists().await? {
        return Ok(Vec::new());
    }
    let root = dir.join(&table.def().path);
    let snap = table.load().await?;
    Ok(snap.files.keys().map(|p| root.join(p)).collect())
}
