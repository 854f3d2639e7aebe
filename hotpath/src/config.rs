//! Settings of a hot-path run, already validated by the caller (the `kvlake` binary).
//! Plain data: nothing here reads the environment or a file.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// When a micro-batch closes (whichever comes first), and how big its files grow.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    /// Records (rows) per batch.
    pub max_records: u64,
    /// Time from a batch's first message to its close.
    pub max_wait: Duration,
    /// Encoded Parquet bytes per batch per topic partition: the file-size target.
    pub file_target_bytes: u64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Messages above this size are dead-lettered.
    pub max_message_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_records: 5_000_000,
            max_wait: Duration::from_secs(300),
            file_target_bytes: 128 * 1024 * 1024,
            row_group_rows: 128 * 1024,
            max_message_bytes: 1024 * 1024,
        }
    }
}

/// How long the run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until stopped (SIGTERM/SIGINT) or `max_runtime`.
    Service,
    /// Up to the high-water marks seen at start (or the end timestamp), then exit.
    UntilCaughtUp,
}

/// Where a partition with an empty checkpoint log starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained message.
    Earliest,
    /// Only messages that arrive after start.
    Latest,
    /// Per partition offsets; `-2` earliest, `-1` latest (Spark's convention). Others: earliest.
    Offsets(HashMap<i32, i64>),
}

/// How partitions are shared between instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// This instance reads every partition (or the listed ones), no group membership:
    /// restart needs no rebalance, so it resumes in seconds.
    Assign,
    /// Join the consumer group and read what the coordinator hands out (scale-out).
    Subscribe,
}

/// Everything one hot-path run needs besides the lake.
#[derive(Clone)]
pub struct HotConfig {
    /// Topic (event hub).
    pub topic: String,
    /// librdkafka properties: `bootstrap.servers`, `group.id`, security, overrides.
    pub kafka: BTreeMap<String, String>,
    /// Batch limits.
    pub batch: BatchLimits,
    /// Peak memory the run aims to stay under; open batches share half of it.
    pub memory_budget_bytes: u64,
    /// How long the run lasts.
    pub mode: RunMode,
    /// Stop at the next batch boundary after this long.
    pub max_runtime: Option<Duration>,
    /// After a stop request, how long the open batches get to commit before they are abandoned.
    pub grace: Duration,
    /// Start of partitions with an empty log.
    pub start: StartPosition,
    /// Replay: skip messages enqueued before this (ms since epoch).
    pub starting_timestamp_ms: Option<i64>,
    /// Replay: stop each partition at its first message enqueued at or after this (ms).
    pub ending_timestamp_ms: Option<i64>,
    /// Only these partitions (assign mode); all when `None`.
    pub partitions: Option<Vec<i32>>,
    /// Assign or subscribe.
    pub assignment: Assignment,
    /// How long to wait for the brokers at start.
    pub connect_timeout: Duration,
    /// Who writes, for the log (host and process id).
    pub writer_id: String,
    /// Commit Kafka offsets after each lake commit, for lag tools. Off for replays, so a
    /// replay never moves the live consumer group.
    pub commit_kafka_offsets: bool,
    /// OAUTHBEARER tokens for `sasl.mechanism=OAUTHBEARER` (Entra ID); `None` otherwise.
    pub oauth: Option<std::sync::Arc<dyn crate::source::OAuthTokenProvider>>,
    /// The speed layer (streaming detections); `None` turns it off.
    pub speed: Option<crate::speed::SpeedConfig>,
}

impl HotConfig {
    /// A config with defaults around the required settings.
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        let kafka = BTreeMap::from([
            ("bootstrap.servers".to_string(), brokers.to_string()),
            ("group.id".to_string(), group.to_string()),
        ]);
        HotConfig {
            topic: topic.to_string(),
            kafka,
            batch: BatchLimits::default(),
            memory_budget_bytes: 512 * 1024 * 1024,
            mode: RunMode::Service,
            max_runtime: None,
            grace: Duration::from_secs(60),
            start: StartPosition::Earliest,
            starting_timestamp_ms: None,
            ending_timestamp_ms: None,
            partitions: None,
            assignment: Assignment::Assign,
            connect_timeout: Duration::from_secs(30),
            writer_id: format!("pid-{}", std::process::id()),
            commit_kafka_offsets: true,
            oauth: None,
            speed: None,
        }
    }
}

/// Kafka property names whose values are credentials.
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k.ends_with(".pem")
        || k == "ssl.key"
}

impl std::fmt::Debug for HotConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kafka: BTreeMap<&str, &str> = self
            .kafka
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_property(k) {
                        "[REDACTED]"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("HotConfig")
            .field("topic", &self.topic)
            .field("kafka", &kafka)
            .field("batch", &self.batch)
            .field("memory_budget_bytes", &self.memory_budget_bytes)
            .field("mode", &self.mode)
            .field("max_runtime", &self.max_runtime)
            .field("grace", &self.grace)
            .field("start", &self.start)
            .field("starting_timestamp_ms", &self.starting_timestamp_ms)
            .field("ending_timestamp_ms", &self.ending_timestamp_ms)
            .field("partitions", &self.partitions)
            .field("assignment", &self.assignment)
            .field("connect_timeout", &self.connect_timeout)
            .field("writer_id", &self.writer_id)
            .field("commit_kafka_offsets", &self.commit_kafka_offsets)
            .field("oauth", &self.oauth.is_some())
            .field("speed", &self.speed.is_some())
            .finish()
    }
}
