//! The test kit: real components for end-to-end tests — a Kafka-protocol broker in its
//! own process, Azurite, the `kvlake` binary — and an exactly-once checker that looks at
//! every record by its source coordinates.

pub mod agg;
pub mod delta;
pub mod eventhubs;
pub mod loganalytics;
pub mod logsingestion;
pub mod sinks;
pub mod standin;
pub mod tansu;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};
use kvlake_generator::{Generator, GeneratorConfig, MessageKind};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub mod otlp;

/// The `kvlake` binary of this build (`cargo build -p kvlake` runs before the tests).
pub fn kvlake_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KVLAKE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> or target/<profile>/<bin>, beside target/<profile>/kvlake
    let dir = exe.parent().expect("exe dir");
    let bin = [
        dir.join("kvlake"),
        dir.parent().map(|d| d.join("kvlake")).unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| dir.join("kvlake"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p kvlake` first (the test command does)",
        bin.display()
    );
    bin
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    /// Waits for the process to exit; returns its exit code and everything it wrote to stderr.
    pub fn finish(&mut self) -> Result<(Option<i32>, String)> {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        Ok((self.0.wait()?.code(), err))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// librdkafka's mock cluster, served by `kvlake mock-broker` in its own process.
#[derive(Debug)]
pub struct Broker {
    /// `host:port`.
    pub bootstrap: String,
    _proc: Proc,
}

impl Broker {
    /// CPU seconds the broker process has used so far (user + system, from
    /// `/proc/<pid>/stat`; `None` where there is no procfs): what it takes of the cores
    /// the process under test shares with it.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self._proc.0.id())).ok()?;
        // Fields after the command name (which may hold spaces, so split after its `)`):
        // utime and stime are the 14th and 15th fields of the line, in clock ticks
        // (USER_HZ: 100 on Linux whatever the kernel tick).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Starts a broker with one topic of `partitions` partitions.
    pub fn start(topic: &str, partitions: i32) -> Result<Broker> {
        let mut child = Command::new(kvlake_bin())
            .args([
                "mock-broker",
                "--topic",
                topic,
                "--partitions",
                &partitions.to_string(),
                "--log-format",
                "json",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting kvlake mock-broker")?;
        let stdout = child.stdout.take().context("mock broker stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let bootstrap = line
            .trim()
            .strip_prefix("BOOTSTRAP=")
            .context("mock broker printed no address")?
            .to_string();
        Ok(Broker {
            bootstrap,
            _proc: Proc(child),
        })
    }
}

/// What was produced: for each (partition, offset), the records the message holds, or
/// `None` for a message that must become one message-level or record-level dead letter.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// (partition, offset) -> (records, event time ms, bad reason)
    pub messages: BTreeMap<(i32, i64), (usize, i64, Option<&'static str>)>,
}

impl Ledger {
    /// Every coordinate (partition, offset, record index) a lake must hold exactly once;
    /// record index -1 stands for a whole-message dead letter.
    pub fn expected(&self) -> BTreeSet<(i32, i64, i32)> {
        let mut out = BTreeSet::new();
        for (&(p, o), &(n, _, bad)) in &self.messages {
            match bad {
                Some("invalid_json" | "not_utf8") => {
                    out.insert((p, o, -1));
                }
                _ => {
                    for i in 0..n as i32 {
                        out.insert((p, o, i));
                    }
                }
            }
        }
        out
    }

    /// Records in the ledger.
    pub fn records(&self) -> usize {
        self.expected().len()
    }
}

/// Produces `messages` generator messages round-robin over `partitions`; message
/// timestamps are the events' times. Checks that the broker kept every message.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cfg: GeneratorConfig,
    messages: usize,
    ledger: &mut Ledger,
) -> Result<()> {
    produce_inner(bootstrap, topic, partitions, cfg, messages, ledger, true)
}

/// Like [`produce`], but lets the mock broker drop the oldest data (a retention test).
pub fn produce_past_retention(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cfg: GeneratorConfig,
    messages: usize,
    ledger: &mut Ledger,
) -> Result<()> {
    produce_inner(bootstrap, topic, partitions, cfg, messages, ledger, false)
}

fn produce_inner(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cfg: GeneratorConfig,
    messages: usize,
    ledger: &mut Ledger,
    check_kept: bool,
) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut g = Generator::new(cfg);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for p in 0..partitions {
        next.insert(p, high_watermark(bootstrap, topic, p)?);
    }
    for i in 0..messages {
        let m = g.next_message();
        let p = (i % partitions as usize) as i32;
        let ts = m.event_time_micros / 1000;
        let rec = BaseRecord::<(), [u8]>::to(topic)
            .partition(p)
            .payload(&m.bytes)
            .timestamp(ts);
        if let Err((e, _)) = producer.send(rec) {
            bail!("produce: {e}");
        }
        producer.poll(Duration::ZERO);
        let o = next.get_mut(&p).context("partition")?;
        let (n, bad) = match m.kind {
            MessageKind::Good { records } => (records, None),
            MessageKind::Bad { reason } => (1, Some(reason)),
        };
        ledger.messages.insert((p, *o), (n, ts, bad));
        *o += 1;
    }
    producer.flush(Duration::from_secs(30))?;
    for (p, o) in next {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ensure!(
            low == 0 || !check_kept,
            "the mock broker dropped data of partition {p}: produce less per partition"
        );
        ensure!(
            high == o,
            "partition {p}: high watermark {high}, expected {o} (a produce was lost)"
        );
    }
    Ok(())
}

fn high_watermark(bootstrap: &str, topic: &str, p: i32) -> Result<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    Ok(c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1)
}

/// Every (partition, offset, record index) found in the lake's Parquet files, with
/// multiplicity: raw rows and dead letters (-1 for a whole-message dead letter).
pub fn lake_coordinates(lake: &Path) -> Result<BTreeMap<(i32, i64, i32), usize>> {
    let mut out = BTreeMap::new();
    for ((_, p, o, i), n) in lake_coordinates_by_source(lake)? {
        *out.entry((p, o, i)).or_insert(0) += n;
    }
    Ok(out)
}

/// Like [`lake_coordinates`], keyed by `_source` too (files converted side by side).
/// Reads what the tables' Delta logs list (the test kit's own replay, `delta.rs`), which
/// is what Spark, DuckDB and Fabric read; a table not written yet counts as empty.
pub fn lake_coordinates_by_source(lake: &Path) -> Result<BTreeMap<(String, i32, i64, i32), usize>> {
    let mut out = BTreeMap::new();
    for table in ["raw", "deadletter"] {
        let root = lake.join(table);
        let files = if root.join("_delta_log").is_dir() {
            delta::live_files(&root)?
        } else {
            ensure!(
                parquet_files(&root)?.is_empty(),
                "{} holds Parquet files but no Delta log",
                root.display()
            );
            Vec::new()
        };
        for file in files {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?.build()?;
            for batch in reader {
                let batch = batch?;
                let s = batch
                    .column_by_name("_source")
                    .context("_source")?
                    .as_string::<i32>()
                    .clone();
                let p = batch
                    .column_by_name("_partition")
                    .context("_partition")?
                    .as_primitive::<Int32Type>()
                    .clone();
                let o = batch
                    .column_by_name("_offset")
                    .context("_offset")?
                    .as_primitive::<Int64Type>()
                    .clone();
                let r = batch
                    .column_by_name("_record_index")
                    .context("_record_index")?
                    .as_primitive::<Int32Type>()
                    .clone();
                for i in 0..batch.num_rows() {
                    let idx = if r.is_valid(i) { r.value(i) } else { -1 };
                    *out.entry((s.value(i).to_string(), p.value(i), o.value(i), idx))
                        .or_insert(0) += 1;
                }
            }
        }
    }
    Ok(out)
}

/// Parquet files under a folder, recursively (what a glob reader such as Spark sees).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Asserts the lake holds every expected coordinate exactly once and nothing else.
pub fn assert_exactly_once(
    expected: &BTreeSet<(i32, i64, i32)>,
    found: &BTreeMap<(i32, i64, i32), usize>,
) -> Result<()> {
    let doubled: Vec<_> = found.iter().filter(|(_, n)| **n > 1).take(5).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|c| !found.contains_key(c))
        .take(5)
        .collect();
    let extra: Vec<_> = found
        .keys()
        .filter(|c| !expected.contains(c))
        .take(5)
        .collect();
    ensure!(
        doubled.is_empty() && missing.is_empty() && extra.is_empty(),
        "exactly-once violated: {} expected, {} found; doubled {:?}, missing {:?} (of {}), unexpected {:?}",
        expected.len(),
        found.len(),
        doubled,
        missing,
        expected.iter().filter(|c| !found.contains_key(c)).count(),
        extra
    );
    Ok(())
}

/// A `kvlake hot` command line against a broker and a lake, with small, fast batches.
pub fn hot_command(bootstrap: &str, topic: &str, lake: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(kvlake_bin());
    c.args([
        "hot",
        "--brokers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        "kvlake-test",
        "--lake",
        lake,
        "--log-format",
        "json",
    ])
    .args(["--batch-max-wait", "300ms", "--connect-timeout", "10s"])
    .args(extra)
    .env_remove("KVLAKE_CONFIG")
    .stdin(Stdio::null());
    c
}

/// Runs a command to completion with a deadline; returns (exit code, stdout, stderr).
pub fn run_to_end(mut cmd: Command, limit: Duration) -> Result<(i32, String, String)> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out?;
            Ok((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into(),
                String::from_utf8_lossy(&out.stderr).into(),
            ))
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            bail!("command did not finish within {limit:?}")
        }
    }
}

/// Azurite's blob service on a free port, with its data in a temporary folder.
#[derive(Debug)]
pub struct Azurite {
    /// Blob port.
    pub port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

/// Where the test command installs Azurite.
pub fn azurite_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("AZURITE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?;
    let p = root.join(".test-stack/node_modules/.bin/azurite-blob");
    ensure!(
        p.exists(),
        "Azurite is not installed at {}: run ./scripts/test (it installs it with npm)",
        p.display()
    );
    Ok(p)
}

impl Azurite {
    /// Starts Azurite.
    pub fn start(dir: &Path) -> Result<Azurite> {
        let port = free_port()?;
        let mut a = Azurite {
            port,
            dir: dir.to_path_buf(),
            proc: None,
        };
        a.restart()?;
        Ok(a)
    }

    /// Stops it (storage outage), gracefully so it saves its metadata to disk.
    pub fn stop(&mut self) {
        if let Some(p) = &mut self.proc {
            signal(&p.0, "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(p.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.proc = None;
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        let child = Command::new(azurite_bin()?)
            .args([
                "--silent",
                "--skipApiVersionCheck",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
                "--location",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting azurite-blob")?;
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "azurite did not listen on {} within 30s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Storage options for kvlake (the well-known development account).
    pub fn options(&self) -> Vec<String> {
        vec![
            "--storage-option".into(),
            "azure_storage_account_name=devstoreaccount1".into(),
            "--storage-option".into(),
            "azure_storage_account_key=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==".into(),
            "--storage-option".into(),
            format!("azure_storage_endpoint=http://127.0.0.1:{}/devstoreaccount1", self.port),
            "--storage-option".into(),
            "azure_allow_http=true".into(),
        ]
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Lines of a JSON log stream whose `message` field equals `msg`.
pub fn log_lines<'a>(
    stderr: &'a str,
    msg: &'a str,
) -> impl Iterator<Item = serde_json::Value> + 'a {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(move |v| v.get("message").and_then(|m| m.as_str()) == Some(msg))
}

impl Azurite {
    /// Creates a blob container through the real REST API (Shared Key auth), as the
    /// Azure CLI would; object_store itself never creates containers.
    pub fn create_container(&self, name: &str) -> Result<()> {
        use base64::Engine;
        use std::io::{Read, Write};
        let account = "devstoreaccount1";
        let key = base64::engine::general_purpose::STANDARD
            .decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")?;
        let date = http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{name}\nrestype:container"
        );
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            to_sign.as_bytes(),
        );
        let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        let req = format!(
            "PUT /{account}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {account}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.write_all(req.as_bytes())?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp.split_whitespace().nth(1).unwrap_or("");
        ensure!(
            status == "201" || status == "409",
            "create container {name}: {}",
            resp.lines().next().unwrap_or("")
        );
        Ok(())
    }
}

/// RFC 1123 date for HTTP headers.
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = kvlake_schemas::time::civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Sends a signal (`TERM`, `INT`, `KILL`) to a child process, as an operator would.
pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), child.id().to_string()])
        .status();
}

/// Downloads every object under `prefix` of an Azurite container to a local folder,
/// with object_store as an independent client.
pub async fn download_azurite(az: &Azurite, container: &str, dest: &Path) -> Result<usize> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account("devstoreaccount1")
        .with_access_key("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
        .with_endpoint(format!("http://127.0.0.1:{}/devstoreaccount1", az.port))
        .with_allow_http(true)
        .with_container_name(container)
        .build()?;
    let items: Vec<_> = store.list(None).try_collect().await?;
    for m in &items {
        let bytes = store.get(&m.location).await?.bytes().await?;
        let path = dest.join(m.location.as_ref());
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(path, bytes)?;
    }
    Ok(items.len())
}

/// A small generator config whose messages fit the mock broker comfortably.
pub fn small_messages(seed: u64, bad_rate: f64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        records_per_message: (1, 10),
        bad_message_rate: bad_rate,
        ..GeneratorConfig::default()
    }
}

/// Waits until a file appears under `dir` whose name ends with `suffix`.
pub fn wait_for_file(dir: &Path, suffix: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if find_files(dir, suffix).next().is_some() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "no *{suffix} under {} within {limit:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
pub fn find_files(dir: &Path, suffix: &str) -> impl Iterator<Item = PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.into_iter()
}

/// A small deterministic random source for kill timings (seed printed by the test).
#[derive(Debug)]
pub struct Lcg(pub u64);

impl Lcg {
    /// Next value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (self.0 >> 33) % (hi - lo).max(1)
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of an unlabelled Prometheus sample, or the sum over its label sets.
pub fn prometheus_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `kvlake_hot_committed_offset` per partition, from an instance's `/metrics` text.
pub fn committed_offsets(metrics: &str) -> BTreeMap<i32, i64> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("kvlake_hot_committed_offset{")?;
            let (labels, value) = rest.split_once("} ")?;
            let p = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("partition=\""))?
                .trim_end_matches('"')
                .parse()
                .ok()?;
            Some((p, value.trim().parse::<f64>().ok()? as i64))
        })
        .collect()
}

/// `kvlake hot --scale-out` as a member of a consumer group with 6 s sessions (a killed
/// member is noticed in seconds), its metrics on `port`, its log in the file `log` (a
/// pipe nobody reads until the end could fill and stall it).
pub fn spawn_group_member(
    bootstrap: &str,
    topic: &str,
    lake: &str,
    port: u16,
    log: &Path,
) -> Result<Proc> {
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "--scale-out",
        "--batch-max-records",
        "200",
        "--metrics-addr",
        &addr,
        "--kafka-option",
        "session.timeout.ms=6000",
        "--kafka-option",
        "heartbeat.interval.ms=500",
    ];
    Ok(Proc(
        hot_command(bootstrap, topic, lake, &args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?,
    ))
}

/// Waits for a condition, polling every 100 ms; how long it took.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut ok: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    while !ok()? {
        ensure!(
            start.elapsed() <= limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(start.elapsed())
}

/// Waits until two group members (their metrics ports) split `partitions` between them
/// and each has committed a batch; how long it took.
pub fn wait_for_split(ports: [u16; 2], partitions: i32) -> Result<Duration> {
    wait_for(
        "both instances to hold partitions and commit a batch",
        Duration::from_secs(120),
        || {
            let (x, y) = (partitions_assigned(ports[0]), partitions_assigned(ports[1]));
            Ok(x > 0.0
                && y > 0.0
                && x + y == f64::from(partitions)
                && batches_committed(ports[0]) > 0.0
                && batches_committed(ports[1]) > 0.0)
        },
    )
}

/// One past the last offset the ledger holds, per partition.
pub fn ledger_ends(ledger: &Ledger, partitions: i32) -> BTreeMap<i32, i64> {
    (0..partitions)
        .map(|p| {
            let last = ledger.messages.range((p, 0)..(p + 1, 0)).next_back();
            (p, last.map_or(0, |((_, o), _)| o + 1))
        })
        .collect()
}

/// Partitions an instance holds (`kvlake_hot_partitions_assigned` on its `/metrics`
/// port), 0 when it does not answer.
pub fn partitions_assigned(port: u16) -> f64 {
    http_get(port, "/metrics").map_or(0.0, |(_, m)| {
        prometheus_sum(&m, "kvlake_hot_partitions_assigned")
    })
}

/// Batches an instance committed, 0 when it does not answer.
pub fn batches_committed(port: u16) -> f64 {
    http_get(port, "/metrics").map_or(0.0, |(_, m)| {
        prometheus_sum(&m, "kvlake_hot_batches_committed_total")
    })
}

/// `kvlake_hot_committed_offset` per partition of an instance, none when it does not
/// answer.
pub fn committed_by(port: u16) -> BTreeMap<i32, i64> {
    http_get(port, "/metrics").map_or_else(|_| BTreeMap::new(), |(_, m)| committed_offsets(&m))
}

/// `kvlake hot` started in the background, its stderr kept for [`Proc::finish`].
pub fn spawn_hot(bootstrap: &str, topic: &str, lake: &str, args: &[&str]) -> Result<Proc> {
    Ok(Proc(
        hot_command(bootstrap, topic, lake, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?,
    ))
}

/// A broker with one topic, loaded with `messages` generator messages (seeded): the
/// start of most end-to-end tests.
pub fn loaded_broker(
    topic: &str,
    partitions: i32,
    seed: u64,
    bad_rate: f64,
    messages: usize,
) -> Result<(Broker, Ledger)> {
    let broker = Broker::start(topic, partitions)?;
    let mut ledger = Ledger::default();
    produce(
        &broker.bootstrap,
        topic,
        partitions,
        small_messages(seed, bad_rate),
        messages,
        &mut ledger,
    )?;
    Ok((broker, ledger))
}

impl Azurite {
    /// Starts Azurite and creates a container.
    pub fn with_container(dir: &Path, container: &str) -> Result<Azurite> {
        let az = Azurite::start(dir)?;
        az.create_container(container)?;
        Ok(az)
    }
}
