//! The Kafka side: client construction, partition discovery, watermarks and timestamp
//! lookups. librdkafka's blocking calls run on blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::error::HotError;

/// Partition changes the group coordinator hands this instance (subscribe mode).
#[derive(Debug, Clone)]
pub enum RebalanceEvent {
    /// Partitions now ours.
    Assigned(Vec<i32>),
    /// Partitions taken away.
    Revoked(Vec<i32>),
}

/// An OAUTHBEARER token for the Kafka connection (Event Hubs with Entra ID).
#[derive(Clone)]
pub struct OAuthBearerToken {
    /// The access token (a JWT).
    pub token: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
    /// The principal name librdkafka reports (informational).
    pub principal: String,
}

impl std::fmt::Debug for OAuthBearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthBearerToken")
            .field("token", &"[REDACTED]")
            .field("expires_ms", &self.expires_ms)
            .field("principal", &self.principal)
            .finish()
    }
}

/// Supplies OAUTHBEARER tokens. librdkafka asks from its poll path when a token is due
/// (at start, then at 80% of its lifetime), so this must answer fast: the binary keeps a
/// refreshed token ready and hands it over here without network calls.
pub trait OAuthTokenProvider: Send + Sync + std::fmt::Debug {
    /// The current token, or why there is none (never containing a token).
    fn token(&self) -> Result<OAuthBearerToken, String>;
}

/// Why the Kafka endpoint will not serve this client: an answer no retry changes, so
/// start-up stops at once instead of waiting out `--connect-timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// SASL refused the credentials; librdkafka's reason, with the broker's message.
    Credentials(String),
    /// Every broker closed the connection after TLS, before authentication completed
    /// (Event Hubs' Basic tier has no Kafka endpoint; or a wrong security protocol).
    Closed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Credentials(r) => write!(f, "refused the credentials: {r}"),
            Refusal::Closed(r) => write!(
                f,
                "closed every connection before authentication completed: {r}"
            ),
        }
    }
}

/// What librdkafka's callbacks saw of the connection handshake.
#[derive(Debug, Default)]
struct Handshake {
    /// Connections a broker closed during ApiVersion or SASL, before authentication.
    closed_early: usize,
    refusal: Option<Refusal>,
}

/// librdkafka callbacks: logs to tracing, OAuth tokens from the binary's provider, and
/// rebalances to the pipeline.
#[derive(Debug, Default)]
pub struct SourceContext {
    oauth: Option<std::sync::Arc<dyn OAuthTokenProvider>>,
    handshake: Mutex<Handshake>,
    /// `bootstrap.servers`, for errors.
    brokers: String,
    events: Mutex<Vec<RebalanceEvent>>,
    /// Cancelled synchronously when a partition is revoked, before librdkafka hands it on,
    /// so the instance that lost it cannot commit it.
    revoked: Mutex<HashMap<i32, CancellationToken>>,
}

impl SourceContext {
    /// Takes the rebalance events seen since the last call.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Why the endpoint refuses this client, once librdkafka has reported it.
    pub fn refusal(&self) -> Option<Refusal> {
        self.handshake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refusal
            .clone()
    }

    /// Registers the token a partition task watches for revocation.
    pub fn watch(&self, partition: i32, token: CancellationToken) {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, token);
    }
}

impl ClientContext for SourceContext {
    // Without sasl.mechanism=OAUTHBEARER librdkafka never asks, so this can stay on.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let provider = self.oauth.as_ref().ok_or(
            "sasl.mechanism is OAUTHBEARER but kvlake has no token provider (use --auth entra)",
        )?;
        let t = provider.token()?;
        Ok(rdkafka::client::OAuthToken {
            token: t.token,
            principal_name: t.principal,
            lifetime_ms: t.expires_ms,
        })
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // A connection closed after TLS but before authentication, twice running, is an
        // answer (no Kafka endpoint here), not a network problem. librdkafka says it only
        // in its log: no error event carries the state the connection was in.
        if fac == "FAIL"
            && (log_message.contains("in state APIVERSION_QUERY")
                || log_message.contains("in state AUTH"))
            && !log_message.contains("SASL authentication error")
        {
            let mut h = self.handshake.lock().unwrap_or_else(|p| p.into_inner());
            h.closed_early += 1;
            if h.closed_early >= 2 {
                let reason = log_message
                    .rsplit_once("]: ")
                    .map_or(log_message, |(_, r)| r)
                    .replace(['\r', '\n'], " ");
                h.refusal.get_or_insert(Refusal::Closed(reason));
            }
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{log_message}")
            }
        }
    }

    /// librdkafka's statistics carry each partition's high watermark: the lag gauges
    /// come from them, without a request of their own.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let highs: std::collections::BTreeMap<i32, i64> = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(p, part)| **p >= 0 && part.hi_offset >= 0)
            .map(|(p, part)| (*p, part.hi_offset))
            .collect();
        crate::metrics::lag(&highs);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let reason = reason.replace(['\r', '\n'], " ");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            self.handshake
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refusal
                .get_or_insert(Refusal::Credentials(reason.clone()));
        }
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions_of(tpl);
            let tokens = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            for p in &parts {
                if let Some(t) = tokens.get(p) {
                    t.cancel();
                }
            }
            tracing::info!(partitions = ?parts, "partitions revoked");
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RebalanceEvent::Revoked(parts));
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = partitions_of(tpl);
            tracing::info!(partitions = ?parts, "partitions assigned");
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RebalanceEvent::Assigned(parts));
        }
    }
}

/// The consumer kvlake runs.
pub type KafkaConsumer = StreamConsumer<SourceContext>;

/// Builds the consumer: the caller's properties, then the settings exactly-once needs,
/// which no override may change (offsets are stored by kvlake, after the lake commit).
pub fn create_consumer(
    props: &BTreeMap<String, String>,
    queue_kbytes: u64,
    oauth: Option<Arc<dyn OAuthTokenProvider>>,
) -> Result<Arc<KafkaConsumer>, HotError> {
    let mut cfg = ClientConfig::new();
    cfg.set("auto.offset.reset", "earliest")
        .set(
            "queued.max.messages.kbytes",
            queue_kbytes.clamp(1024, 65_536).to_string(),
        )
        .set("enable.partition.eof", "false")
        // A partition whose prefetch queue is full waits this long before its next fetch
        // (librdkafka's default: a whole second). kvlake drains the queue in milliseconds,
        // so on a backlog the default left the instance idle a third of the time.
        .set("fetch.queue.backoff.ms", "20")
        // Statistics feed the per-partition lag gauges.
        .set("statistics.interval.ms", "5000");
    for (k, v) in props {
        cfg.set(k, v);
    }
    // Where to start is the lake's decision, never librdkafka's: an out-of-range position
    // (retention) restarts at the oldest message.
    cfg.set("auto.offset.reset", "earliest");
    cfg.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    cfg.create_with_context(SourceContext {
        oauth,
        brokers: props.get("bootstrap.servers").cloned().unwrap_or_default(),
        ..SourceContext::default()
    })
    .map(Arc::new)
    .map_err(|e| {
        HotError::kafka(
            "cannot create the Kafka consumer (check --kafka-option values)",
            e,
        )
    })
}

/// librdkafka asks for the first OAUTHBEARER token through the consumer's queue, which
/// only a poll serves; metadata requests wait for that token. One short poll, before
/// anything else, hands it over (no partition is assigned yet, so no message is taken).
pub async fn serve_first_oauth_token(consumer: &KafkaConsumer) {
    let _ = tokio::time::timeout(Duration::from_millis(300), consumer.recv()).await;
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HotError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HotError::Task(e.to_string()))
}

/// The topic's partitions, waiting up to `timeout` for the brokers, or less when the
/// endpoint refuses this client ([`Refusal`]): meanwhile the consumer's queue is served,
/// which is where librdkafka reports authentication failures (no partition is assigned
/// yet, so no message is taken).
pub async fn partitions(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, HotError> {
    // Short slices, so that a refusal ends the wait (and the blocking thread) at once.
    let deadline = tokio::time::Instant::now() + timeout;
    let md = loop {
        let slice = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(1));
        let (c, t) = (consumer.clone(), topic.to_string());
        let fetch = blocking(move || c.fetch_metadata(Some(&t), slice));
        tokio::pin!(fetch);
        let md = loop {
            tokio::select! {
                md = &mut fetch => break md?,
                _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()) => {
                    if let Some(refusal) = consumer.context().refusal() {
                        return Err(refused(consumer, refusal));
                    }
                }
            }
        };
        if md.is_ok() || tokio::time::Instant::now() >= deadline {
            break md;
        }
        // Serve the queue once more: the refusal may be the reason the fetch failed.
        let _ = tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await;
        if let Some(refusal) = consumer.context().refusal() {
            return Err(refused(consumer, refusal));
        }
    };
    let md = md.map_err(|e| {
        HotError::kafka(
            format!(
                "cannot read metadata of topic {topic} within {}",
                humanize(timeout)
            ),
            e,
        )
    })?;
    let Some(tm) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(HotError::Topic {
            topic: topic.into(),
            detail: "not in the broker's metadata".into(),
        });
    };
    if let Some(err) = tm.error() {
        return Err(HotError::Topic {
            topic: topic.into(),
            detail: format!("{err:?} (does the event hub exist, and may this identity read it?)"),
        });
    }
    let mut parts: Vec<i32> = tm.partitions().iter().map(|p| p.id()).collect();
    if parts.is_empty() {
        return Err(HotError::Topic {
            topic: topic.into(),
            detail: "has no partitions".into(),
        });
    }
    parts.sort_unstable();
    Ok(parts)
}

/// The error of a refused client. Closing a consumer that never authenticated waits out
/// librdkafka's socket timeout (60 s) on the caller's thread, so the consumer is closed on
/// a thread of its own once every other handle is gone; the process need not wait for it.
fn refused(consumer: &Arc<KafkaConsumer>, refusal: Refusal) -> HotError {
    let c = consumer.clone();
    let _ = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            while Arc::strong_count(&c) > 1 {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(c);
        });
    HotError::KafkaRefused {
        brokers: consumer.context().brokers.clone(),
        refusal,
    }
}

/// Low and high watermarks of each partition: two ListOffsets requests (earliest, latest)
/// for all of them, sent at once, rather than two round trips per partition one after
/// another; a partition the batched answer leaves out is asked on its own.
pub async fn watermarks(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, (i64, i64)>, HotError> {
    let lookup = |at: Offset| {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            let _ = tpl.add_partition_offset(topic, p, at);
        }
        let c = consumer.clone();
        blocking(move || c.offsets_for_times(tpl, timeout))
    };
    let (lows, highs) = tokio::try_join!(lookup(Offset::Beginning), lookup(Offset::End))?;
    let offsets = |list: rdkafka::error::KafkaResult<TopicPartitionList>| -> HashMap<i32, i64> {
        list.map(|l| {
            l.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if e.error().is_ok() => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let (lows, highs) = (offsets(lows), offsets(highs));
    let mut out = HashMap::with_capacity(partitions.len());
    let mut missing = Vec::new();
    for &p in partitions {
        match (lows.get(&p), highs.get(&p)) {
            (Some(&l), Some(&h)) => {
                out.insert(p, (l, h));
            }
            _ => missing.push(p),
        }
    }
    if !missing.is_empty() {
        tracing::debug!(partitions = ?missing, "watermarks not in the batched answer; asking per partition");
        let asked = futures::future::try_join_all(missing.into_iter().map(|p| {
            let (c, t) = (consumer.clone(), topic.to_string());
            async move {
                let topic = t.clone();
                blocking(move || c.fetch_watermarks(&topic, p, timeout))
                    .await?
                    .map(|w| (p, w))
                    .map_err(|e| HotError::kafka(format!("cannot read watermarks of {t}[{p}]"), e))
            }
        }))
        .await?;
        out.extend(asked);
    }
    Ok(out)
}

/// First offset at or after `ts_ms` per partition, where the broker can say
/// (librdkafka's mock cluster cannot; callers then start from the low watermark).
pub async fn offsets_for_timestamp(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    partitions: &[i32],
    ts_ms: i64,
    timeout: Duration,
) -> HashMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(ts_ms));
    }
    let c = consumer.clone();
    match blocking(move || c.offsets_for_times(tpl, timeout)).await {
        Ok(Ok(list)) => list
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if e.error().is_ok() => Some((e.partition(), o)),
                _ => None,
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "broker cannot look offsets up by timestamp; scanning from the start instead");
            HashMap::new()
        }
        Err(_) => HashMap::new(),
    }
}

/// Tells Kafka where the lake's log ends, so standard lag tools work. Best effort:
/// the lake is the truth.
pub fn commit_offset(consumer: &KafkaConsumer, topic: &str, partition: i32, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .is_ok()
        && let Err(e) = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async)
    {
        tracing::debug!(partition, offset, error = %e, "kafka offset commit failed (the lake log is the truth)");
    }
}

fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs_f32())
}
