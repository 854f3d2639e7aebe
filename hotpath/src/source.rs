//! The Kafka side: client construction, partition discovery, watermarks and timestamp
//! lookups. librdkafka's blocking calls run on blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
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

/// librdkafka callbacks: logs to tracing, OAuth tokens from the binary's provider, and
/// rebalances to the pipeline.
#[derive(Debug, Default)]
pub struct SourceContext {
    oauth: Option<std::sync::Arc<dyn OAuthTokenProvider>>,
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

/// The topic's partitions, waiting up to `timeout` for the brokers.
pub async fn partitions(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, HotError> {
    let (c, t) = (consumer.clone(), topic.to_string());
    let md = blocking(move || c.fetch_metadata(Some(&t), timeout))
        .await?
        .map_err(|e| {
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

/// Low and high watermarks of each partition.
pub async fn watermarks(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, (i64, i64)>, HotError> {
    let (c, t, parts) = (consumer.clone(), topic.to_string(), partitions.to_vec());
    blocking(move || {
        parts
            .iter()
            .map(|&p| {
                c.fetch_watermarks(&t, p, timeout)
                    .map(|w| (p, w))
                    .map_err(|e| HotError::kafka(format!("cannot read watermarks of {t}[{p}]"), e))
            })
            .collect()
    })
    .await?
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
