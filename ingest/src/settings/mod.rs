//! Settings of `kvlake hot`, layered: built-in defaults < TOML file < `KVLAKE_*`
//! environment < flags; then validated into the hot path's config, or refused with a
//! message that names the setting and the fix.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use kvlake_hotpath::{Assignment, HotConfig, RunMode, StartPosition};
use serde::Deserialize;

use crate::eventhubs;
use crate::secret::Secret;

mod prepared;
pub use prepared::{Prepared, identity_options, lake_auth, prepare, secret_settings};

/// Every setting, as the layers left it; not yet validated. Serializes for
/// `kvlake config show` only: secrets print as `[REDACTED]` or as their reference.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HotSettings {
    pub brokers: Option<String>,
    pub topic: Option<String>,
    pub group: Option<String>,
    pub lake: Option<String>,
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    #[serde(default)]
    pub kafka_options: BTreeMap<String, String>,
    pub security_protocol: Option<String>,
    #[serde(serialize_with = "crate::identity::secrets::serialize_described")]
    pub eventhubs_connection_string: Option<Secret>,
    #[serde(default)]
    pub until_caught_up: bool,
    pub max_runtime: Option<String>,
    pub grace: Option<String>,
    pub compact_after: Option<String>,
    pub retention: Option<String>,
    pub starting_offsets: Option<String>,
    pub starting_timestamp: Option<String>,
    pub ending_timestamp: Option<String>,
    pub output_prefix: Option<String>,
    pub batch_max_records: Option<u64>,
    pub batch_max_wait: Option<String>,
    pub file_target_size: Option<String>,
    pub memory_budget: Option<String>,
    pub max_message_size: Option<String>,
    pub partitions: Option<Vec<i32>>,
    #[serde(default)]
    pub scale_out: bool,
    pub connect_timeout: Option<String>,
    pub storage_retry_timeout: Option<String>,
    pub metrics_addr: Option<String>,
    pub auth: Option<String>,
    pub credential: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    #[serde(serialize_with = "crate::identity::secrets::serialize_described")]
    pub client_secret: Option<Secret>,
    pub client_certificate: Option<String>,
    #[serde(serialize_with = "crate::identity::secrets::serialize_described")]
    pub client_certificate_password: Option<Secret>,
    pub kafka_oauth_scope: Option<String>,
    pub storage_auth: Option<String>,
    #[serde(serialize_with = "crate::identity::secrets::serialize_described")]
    pub storage_account_key: Option<Secret>,
    #[serde(serialize_with = "crate::identity::secrets::serialize_described")]
    pub storage_sas: Option<Secret>,
    pub secret_refresh: Option<String>,
    pub ca_file: Option<String>,
    pub speed: Option<String>,
    pub thresholds: Option<String>,
    pub alert_lateness: Option<String>,
    #[serde(default)]
    pub alert_webhook: Vec<String>,
    #[serde(serialize_with = "crate::identity::secrets::serialize_described")]
    pub alert_webhook_secret: Option<Secret>,
    pub alert_logs_endpoint: Option<String>,
    pub alert_logs_rule: Option<String>,
    pub alert_logs_stream: Option<String>,
}

/// Names that `KVLAKE_<NAME>` environment variables may set.
const ENV_KEYS: &[&str] = &[
    "brokers",
    "topic",
    "group",
    "lake",
    "security_protocol",
    "eventhubs_connection_string",
    "until_caught_up",
    "max_runtime",
    "grace",
    "compact_after",
    "retention",
    "starting_offsets",
    "starting_timestamp",
    "ending_timestamp",
    "output_prefix",
    "batch_max_records",
    "batch_max_wait",
    "file_target_size",
    "memory_budget",
    "max_message_size",
    "scale_out",
    "connect_timeout",
    "storage_retry_timeout",
    "metrics_addr",
    "auth",
    "credential",
    "tenant_id",
    "client_id",
    "client_secret",
    "client_certificate",
    "client_certificate_password",
    "kafka_oauth_scope",
    "storage_auth",
    "storage_account_key",
    "storage_sas",
    "secret_refresh",
    "ca_file",
    "speed",
    "thresholds",
    "alert_lateness",
    "alert_webhook_secret",
    "alert_logs_endpoint",
    "alert_logs_rule",
    "alert_logs_stream",
];

/// Merges the layers: the TOML file at `config` (when given), the `KVLAKE_*` environment,
/// then `flags` (the command line's settings, serialized; unset flags serialize as nothing).
pub fn load(config: Option<&Path>, flags: &impl serde::Serialize) -> Result<HotSettings> {
    let mut fig = Figment::new();
    if let Some(path) = config {
        if !path.exists() {
            bail!(
                "config file {} does not exist (--config / KVLAKE_CONFIG)",
                path.display()
            );
        }
        fig = fig.merge(Toml::file(path));
    }
    fig = fig
        .merge(Env::prefixed("KVLAKE_").only(ENV_KEYS))
        .merge(Serialized::globals(flags));
    fig.extract::<HotSettings>()
        .map_err(|e| anyhow!("invalid setting: {e}"))
}

/// Where the health and metrics endpoints listen, if anywhere.
pub type MetricsAddr = Option<std::net::SocketAddr>;

/// The lake part of the settings.
#[derive(Debug)]
pub struct LakeSpec {
    pub url: String,
    pub options: Vec<(String, String)>,
    pub output_prefix: Option<String>,
    pub retry_timeout: Duration,
}

fn duration(name: &str, v: &Option<String>, default: Duration) -> Result<Duration> {
    match v {
        None => Ok(default),
        Some(s) => {
            let d = humantime::parse_duration(s.trim()).with_context(|| {
                format!("--{name}: `{s}` is not a duration (write e.g. 30s, 5m, 4h)")
            })?;
            if d > Duration::from_secs(366 * 86_400) {
                bail!("--{name}: `{s}` is longer than a year; write a shorter duration");
            }
            Ok(d)
        }
    }
}

fn size(name: &str, v: &Option<String>, default: u64) -> Result<u64> {
    match v {
        None => Ok(default),
        Some(s) => parse_size(s).ok_or_else(|| {
            anyhow!("--{name}: `{s}` is not a size (write e.g. 512MiB, 1GiB, 1048576)")
        }),
    }
}

/// `1048576`, `512KiB`, `128MiB`, `2GiB`, `1MB` (decimal units too).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn timestamp_ms(name: &str, v: &Option<String>) -> Result<Option<i64>> {
    v.as_deref()
        .map(|s| {
            kvlake_schemas::time::parse_timestamp_micros(s)
                .map(|us| us / 1000)
                .ok_or_else(|| {
                    anyhow!(
                        "--{name}: `{s}` is not an RFC 3339 time (write e.g. 2026-11-01T00:00:00Z)"
                    )
                })
        })
        .transpose()
}

fn starting_offsets(v: &Option<String>, topic: &str) -> Result<StartPosition> {
    let Some(s) = v.as_deref().map(str::trim) else {
        return Ok(StartPosition::Earliest);
    };
    match s {
        "earliest" => Ok(StartPosition::Earliest),
        "latest" => Ok(StartPosition::Latest),
        json => {
            let bad = || {
                anyhow!(
                    "--starting-offsets: write earliest, latest, or JSON like {{\"0\":42,\"1\":-2}} or {{\"{topic}\":{{\"0\":42}}}}"
                )
            };
            let value: serde_json::Value = serde_json::from_str(json).map_err(|_| bad())?;
            let map = value
                .get(topic)
                .unwrap_or(&value)
                .as_object()
                .ok_or_else(bad)?;
            let mut out = HashMap::new();
            for (k, v) in map {
                out.insert(
                    k.parse::<i32>().map_err(|_| bad())?,
                    v.as_i64().ok_or_else(bad)?,
                );
            }
            Ok(StartPosition::Offsets(out))
        }
    }
}

/// Turns settings into the hot path's config, or says what to fix.
pub fn validate(s: HotSettings) -> Result<(HotConfig, LakeSpec, MetricsAddr)> {
    let cs = s.eventhubs_connection_string.clone();
    let parsed_cs = cs
        .as_ref()
        .map(eventhubs::parse_connection_string)
        .transpose()
        .map_err(|e| anyhow!("--eventhubs-connection-string: {e}"))?;
    let brokers = match (&s.brokers, &parsed_cs) {
        (Some(b), _) if !b.trim().is_empty() => b.trim().to_string(),
        (_, Some(p)) => format!("{}:9093", p.host),
        _ => bail!(
            "missing --brokers (or KVLAKE_BROKERS, or `brokers` in the config file): the Kafka endpoint, e.g. <namespace>.servicebus.windows.net:9093"
        ),
    };
    let topic = match (&s.topic, &parsed_cs) {
        (Some(t), _) if !t.trim().is_empty() => t.trim().to_string(),
        (
            _,
            Some(ConnectionStringWithHub {
                entity_path: Some(e),
                ..
            }),
        ) => e.clone(),
        _ => bail!("missing --topic (or KVLAKE_TOPIC): the event hub to read"),
    };
    let group = s.group.clone().filter(|g| !g.trim().is_empty()).ok_or_else(|| {
        anyhow!("missing --group (or KVLAKE_GROUP): the consumer group (create one per reader in the event hub; $Default works but is shared)")
    })?;
    let lake = s.lake.clone().filter(|l| !l.trim().is_empty()).ok_or_else(|| {
        anyhow!("missing --lake (or KVLAKE_LAKE): where to write, e.g. ./lake or abfss://<container>@<account>.dfs.core.windows.net/kv")
    })?;

    let mut cfg = HotConfig::new(&brokers, &topic, &group);
    let protocol = s.security_protocol.as_deref().map(str::to_ascii_lowercase);
    let kafka_auth = kafka_auth(&s, &brokers)?;
    if kafka_auth == KafkaAuth::Entra {
        if cs.is_some() {
            bail!(
                "--auth entra and --eventhubs-connection-string exclude each other: leave out the connection string (or use --auth connection-string)"
            );
        }
        let p = protocol.as_deref().unwrap_or("sasl_ssl");
        if !matches!(p, "sasl_ssl" | "sasl_plaintext") {
            bail!(
                "--auth entra sends Entra ID tokens over SASL OAUTHBEARER: --security-protocol must be sasl_ssl (or leave it out)"
            );
        }
        kafka_token_scope(&s, &brokers)?;
        cfg.kafka.insert("security.protocol".into(), p.to_string());
        cfg.kafka
            .insert("sasl.mechanism".into(), "OAUTHBEARER".into());
    } else if kafka_auth == KafkaAuth::ConnectionString && cs.is_none() {
        bail!(
            "--auth connection-string needs --eventhubs-connection-string (or KVLAKE_EVENTHUBS_CONNECTION_STRING)"
        );
    }
    match (&cs, protocol.as_deref()) {
        _ if kafka_auth == KafkaAuth::Entra => {}
        (Some(cs), None | Some("sasl_ssl")) => {
            cfg.kafka.extend(eventhubs::connection_string_settings(cs))
        }
        (Some(_), Some(p)) => bail!(
            "--security-protocol {p} cannot carry an Event Hubs connection string: use sasl_ssl (or leave it out)"
        ),
        (None, Some(p @ ("plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"))) => {
            cfg.kafka.insert("security.protocol".into(), p.to_string());
        }
        (None, Some(p)) => bail!(
            "--security-protocol `{p}` is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"
        ),
        (None, None) if eventhubs::is_event_hubs(&brokers) => bail!(
            "{brokers} is an Event Hubs namespace: give --eventhubs-connection-string (or KVLAKE_EVENTHUBS_CONNECTION_STRING)"
        ),
        (None, None) => {}
    }
    if eventhubs::is_event_hubs(&brokers) {
        for (k, v) in eventhubs::recommended_settings() {
            cfg.kafka.entry(k).or_insert(v);
        }
    }
    for (k, v) in &s.kafka_options {
        if matches!(
            k.as_str(),
            "enable.auto.commit" | "enable.auto.offset.store" | "auto.offset.reset"
        ) {
            bail!(
                "--kafka-option {k} cannot be changed: kvlake stores offsets itself, after each lake commit"
            );
        }
        cfg.kafka.insert(k.clone(), v.clone());
    }

    cfg.mode = if s.until_caught_up || s.ending_timestamp.is_some() {
        RunMode::UntilCaughtUp
    } else {
        RunMode::Service
    };
    cfg.max_runtime = s
        .max_runtime
        .as_ref()
        .map(|_| duration("max-runtime", &s.max_runtime, Duration::ZERO))
        .transpose()?;
    cfg.grace = duration("grace", &s.grace, cfg.grace)?;
    cfg.start = starting_offsets(&s.starting_offsets, &topic)?;
    cfg.starting_timestamp_ms = timestamp_ms("starting-timestamp", &s.starting_timestamp)?;
    cfg.ending_timestamp_ms = timestamp_ms("ending-timestamp", &s.ending_timestamp)?;
    if let (Some(a), Some(b)) = (cfg.starting_timestamp_ms, cfg.ending_timestamp_ms)
        && a >= b
    {
        bail!("--starting-timestamp must be before --ending-timestamp");
    }
    // --starting-offsets only applies to partitions with an empty log, so it is safe on
    // the live lake (a cut-over from Spark's checkpoint); a timestamp window is a replay.
    if (cfg.starting_timestamp_ms.is_some() || cfg.ending_timestamp_ms.is_some())
        && s.output_prefix.is_none()
    {
        bail!(
            "a replay (--starting-timestamp/--ending-timestamp) needs --output-prefix, so it never moves the live checkpoint"
        );
    }
    if let Some(n) = s.batch_max_records {
        if n == 0 {
            bail!("--batch-max-records must be at least 1");
        }
        cfg.batch.max_records = n;
    }
    cfg.batch.max_wait = duration("batch-max-wait", &s.batch_max_wait, cfg.batch.max_wait)?;
    cfg.batch.file_target_bytes = size(
        "file-target-size",
        &s.file_target_size,
        cfg.batch.file_target_bytes,
    )?;
    cfg.memory_budget_bytes = size("memory-budget", &s.memory_budget, cfg.memory_budget_bytes)?;
    if cfg.memory_budget_bytes < 64 << 20 {
        bail!("--memory-budget must be at least 64MiB");
    }
    cfg.batch.max_message_bytes = size(
        "max-message-size",
        &s.max_message_size,
        cfg.batch.max_message_bytes as u64,
    )? as usize;
    cfg.partitions = s.partitions.clone().map(|mut p| {
        p.sort_unstable();
        p.dedup();
        p
    });
    if s.scale_out && (s.until_caught_up || s.ending_timestamp.is_some()) {
        bail!(
            "--scale-out shares partitions for a long-running service; --until-caught-up and replays read every partition themselves (leave out --scale-out)"
        );
    }
    // A replay must never move the live group's offsets (lag tools, scale-out starts).
    cfg.commit_kafka_offsets = s.output_prefix.is_none();
    cfg.assignment = if s.scale_out {
        Assignment::Subscribe
    } else {
        Assignment::Assign
    };
    if s.scale_out && s.partitions.is_some() {
        bail!(
            "--partitions and --scale-out exclude each other: the group coordinator picks partitions in scale-out mode"
        );
    }
    cfg.connect_timeout = duration("connect-timeout", &s.connect_timeout, cfg.connect_timeout)?;
    cfg.writer_id = format!("{}-pid{}", hostname(), std::process::id());
    let storage_retry = duration(
        "storage-retry-timeout",
        &s.storage_retry_timeout,
        Duration::from_secs(300),
    )?;
    if s.scale_out && !s.kafka_options.contains_key("max.poll.interval.ms") {
        // A member that does not poll for max.poll.interval.ms is evicted; the router can
        // wait on a batch while storage retries, so leave room for a whole retry cycle.
        let needed = (storage_retry.as_millis() as u64)
            .saturating_mul(2)
            .saturating_add(60_000)
            .clamp(300_000, 86_400_000);
        cfg.kafka
            .insert("max.poll.interval.ms".into(), needed.to_string());
    }
    let spec = LakeSpec {
        url: lake,
        options: s.storage_options.into_iter().collect(),
        output_prefix: s.output_prefix,
        retry_timeout: storage_retry,
    };
    let metrics_addr = s
        .metrics_addr
        .as_deref()
        .map(|a| a.trim().parse::<std::net::SocketAddr>().map_err(|_| anyhow!("--metrics-addr: `{a}` is not HOST:PORT with an IP address (write e.g. 0.0.0.0:9464)")))
        .transpose()?;
    Ok((cfg, spec, metrics_addr))
}

use eventhubs::ConnectionString as ConnectionStringWithHub;

/// How the Kafka client authenticates (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAuth {
    /// SASL PLAIN with an Event Hubs connection string.
    ConnectionString,
    /// SASL OAUTHBEARER with Entra ID tokens from the service identity.
    Entra,
    /// Whatever --security-protocol and --kafka-option say (local brokers).
    None,
}

/// `--auth`, or its default: the connection string when one is given, Entra ID for an
/// Event Hubs namespace without one, nothing for other brokers.
pub fn kafka_auth(s: &HotSettings, brokers: &str) -> Result<KafkaAuth> {
    match s.auth.as_deref().map(|a| a.trim().to_ascii_lowercase()) {
        Some(a) if a == "connection-string" => Ok(KafkaAuth::ConnectionString),
        Some(a) if a == "entra" => Ok(KafkaAuth::Entra),
        Some(a) => bail!("--auth `{a}` is not one of connection-string, entra"),
        None if s.eventhubs_connection_string.is_some() => Ok(KafkaAuth::ConnectionString),
        None if eventhubs::is_event_hubs(brokers) => Ok(KafkaAuth::Entra),
        None => Ok(KafkaAuth::None),
    }
}

/// The token scope for OAUTHBEARER: `https://<namespace>.servicebus.windows.net/.default`,
/// or `--kafka-oauth-scope` for brokers that are not Event Hubs.
pub fn kafka_token_scope(s: &HotSettings, brokers: &str) -> Result<String> {
    if let Some(scope) = s
        .kafka_oauth_scope
        .as_deref()
        .filter(|x| !x.trim().is_empty())
    {
        return Ok(scope.trim().to_string());
    }
    let host = brokers
        .split(',')
        .map(|b| b.trim().rsplit_once(':').map_or(b.trim(), |(h, _)| h))
        .find(|h| eventhubs::is_event_hubs(h))
        .ok_or_else(|| {
            anyhow!(
                "--auth entra: {brokers} is not an Event Hubs namespace, so the token scope is unknown; give --kafka-oauth-scope"
            )
        })?;
    Ok(format!("https://{host}/.default"))
}

/// How the lake authenticates (`--storage-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageAuth {
    /// Bearer tokens from the service identity (ADLS Gen2 / Blob with Entra ID).
    Entra,
    /// `--storage-account-key` (a secret reference, re-read on rotation).
    Key,
    /// `--storage-sas` (a secret reference, re-read on rotation).
    Sas,
    /// Whatever `--storage-option` / `AZURE_STORAGE_*` give object_store (and local folders).
    Options,
}

fn is_azure_url(url: &str) -> bool {
    let scheme = url.split("://").next().unwrap_or("");
    matches!(scheme, "az" | "azure" | "abfs" | "abfss" | "adl")
        || (scheme == "https" && (url.contains(".blob.core.") || url.contains(".dfs.core.")))
}

/// Storage option keys that carry credentials of object_store's own.
pub fn is_storage_credential_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "sas",
        "secret",
        "token",
        "use_azure_cli",
        "use_emulator",
        "msi",
        "federated",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// `--storage-auth`, or its default: the key or SAS when given, credentials in the
/// storage options when there are any, else the service identity for an Azure lake.
pub fn storage_auth(s: &HotSettings) -> Result<StorageAuth> {
    let auth = match s
        .storage_auth
        .as_deref()
        .map(|a| a.trim().to_ascii_lowercase())
    {
        Some(a) if a == "entra" => StorageAuth::Entra,
        Some(a) if a == "key" => StorageAuth::Key,
        Some(a) if a == "sas" => StorageAuth::Sas,
        Some(a) if a == "options" => StorageAuth::Options,
        Some(a) => bail!("--storage-auth `{a}` is not one of entra, key, sas, options"),
        None if s.storage_account_key.is_some() => StorageAuth::Key,
        None if s.storage_sas.is_some() => StorageAuth::Sas,
        None => {
            let url = s.lake.as_deref().unwrap_or("");
            let own = s
                .storage_options
                .keys()
                .any(|k| is_storage_credential_option(k))
                || [
                    "AZURE_STORAGE_ACCOUNT_KEY",
                    "AZURE_STORAGE_SAS_KEY",
                    "AZURE_STORAGE_ACCESS_KEY",
                    "AZURE_STORAGE_USE_EMULATOR",
                ]
                .iter()
                .any(|v| std::env::var_os(v).is_some());
            if is_azure_url(url) && !own {
                StorageAuth::Entra
            } else {
                StorageAuth::Options
            }
        }
    };
    match auth {
        StorageAuth::Key if s.storage_account_key.is_none() => {
            bail!("--storage-auth key needs --storage-account-key (or KVLAKE_STORAGE_ACCOUNT_KEY)")
        }
        StorageAuth::Sas if s.storage_sas.is_none() => {
            bail!("--storage-auth sas needs --storage-sas (or KVLAKE_STORAGE_SAS)")
        }
        StorageAuth::Entra | StorageAuth::Key | StorageAuth::Sas
            if !is_azure_url(s.lake.as_deref().unwrap_or("")) =>
        {
            bail!(
                "--storage-auth entra/key/sas applies to an Azure lake (abfss://, az://); this lake is not one"
            )
        }
        a => Ok(a),
    }
}

/// How often secret references are re-read (`--secret-refresh`, default 1h).
pub fn secret_refresh(s: &HotSettings) -> Result<Duration> {
    let d = duration(
        "secret-refresh",
        &s.secret_refresh,
        Duration::from_secs(3600),
    )?;
    if d < Duration::from_secs(1) {
        bail!("--secret-refresh must be at least 1s");
    }
    Ok(d)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HotSettings {
        HotSettings {
            brokers: Some("localhost:9092".into()),
            topic: Some("t".into()),
            group: Some("g".into()),
            lake: Some("./lake".into()),
            ..HotSettings::default()
        }
    }

    #[test]
    fn validates_and_names_what_to_fix() {
        let (cfg, lake, _) = validate(base()).unwrap();
        assert_eq!(cfg.kafka["bootstrap.servers"], "localhost:9092");
        assert_eq!(lake.url, "./lake");
        let e = validate(HotSettings {
            topic: None,
            ..base()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--topic"), "{e}");
        let e = validate(HotSettings {
            max_runtime: Some("4 parsecs".into()),
            ..base()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("max-runtime"), "{e}");
        let e = validate(HotSettings {
            starting_timestamp: Some("2026-11-01T00:00:00Z".into()),
            ..base()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--output-prefix"), "{e}");
        // An Event Hubs namespace without a connection string uses Entra ID.
        let (cfg, _, _) = validate(HotSettings {
            brokers: Some("ns.servicebus.windows.net:9093".into()),
            ..base()
        })
        .unwrap();
        assert_eq!(cfg.kafka["sasl.mechanism"], "OAUTHBEARER");
        assert_eq!(cfg.kafka["security.protocol"], "sasl_ssl");
        let s = HotSettings {
            brokers: Some("ns.servicebus.windows.net:9093".into()),
            ..base()
        };
        assert_eq!(
            kafka_token_scope(&s, "ns.servicebus.windows.net:9093").unwrap(),
            "https://ns.servicebus.windows.net/.default"
        );
        let e = validate(HotSettings {
            auth: Some("entra".into()),
            ..base()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--kafka-oauth-scope"), "{e}");
        let e = validate(HotSettings {
            auth: Some("connection-string".into()),
            ..base()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--eventhubs-connection-string"), "{e}");
    }

    #[test]
    fn connection_string_fills_brokers_topic_and_event_hubs_settings() {
        let s = HotSettings {
            brokers: None,
            topic: None,
            eventhubs_connection_string: Some(Secret::new(
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=x;EntityPath=hub",
            )),
            ..base()
        };
        let (cfg, _, _) = validate(s).unwrap();
        assert_eq!(
            cfg.kafka["bootstrap.servers"],
            "ns.servicebus.windows.net:9093"
        );
        assert_eq!(cfg.topic, "hub");
        assert_eq!(cfg.kafka["sasl.mechanism"], "PLAIN");
        assert_eq!(cfg.kafka["session.timeout.ms"], "30000");
        assert!(
            !format!("{cfg:?}").contains("SharedAccessKey=x"),
            "Debug must redact the password"
        );
    }

    #[test]
    fn sizes_and_offsets() {
        assert_eq!(parse_size("128MiB"), Some(128 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(
            starting_offsets(&Some(r#"{"t":{"0":5,"1":-2}}"#.into()), "t").unwrap(),
            StartPosition::Offsets(HashMap::from([(0, 5), (1, -2)]))
        );
        assert!(starting_offsets(&Some("{bad".into()), "t").is_err());
    }
}
