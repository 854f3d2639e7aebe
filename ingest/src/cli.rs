//! The command line: subcommands and their flags. Settings of `hot` also come from
//! `KVLAKE_*` environment variables and a TOML file; see [`crate::settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::secret::Secret;

/// kvlake: Azure Key Vault audit logs from Event Hubs into a Parquet lake, exactly once.
#[derive(Debug, Parser)]
#[command(name = "kvlake", version, about, long_about = None, propagate_version = true, args_override_self = true)]
pub struct Cli {
    /// Log format: text on a terminal, JSON otherwise (auto).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "KVLAKE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `kvlake_hotpath=debug`.
    #[arg(long, global = true, default_value = "info", env = "KVLAKE_LOG")]
    pub log: String,
    /// Export batch traces and metrics over OTLP (HTTP/protobuf) to this collector, e.g.
    /// http://localhost:4318 (signals go to /v1/traces and /v1/metrics). Off when unset.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hot path: consume the event hub into the lake (service, scheduled job or replay).
    Hot(Box<HotArgs>),
    /// Decode archived diagnostic-log files (JSON lines or envelopes, optionally .gz) into the lake.
    Convert(ConvertArgs),
    /// Build the historical tables (daily aggregates, baselines, anomalies) from committed raw data.
    Cold(ColdArgs),
    /// Load a time range of Key Vault audit history from a Log Analytics workspace (Logs Query API).
    Backfill(Box<BackfillArgs>),
    /// Write one self-contained HTML report (inline SVG charts) of the lake's history.
    Report(ReportArgs),
    /// Merge the small files of closed hours, apply retention, checkpoint and VACUUM every table.
    Compact(CompactArgs),
    /// Turn a lake written before Delta tables into Delta tables in place (no data rewritten).
    Migrate(MigrateArgs),
    /// Write synthetic Key Vault AuditEvent traffic to stdout.
    Generate(GenerateArgs),
    /// Run the whole pipeline on an embedded broker and a local lake; no cloud account needed.
    Demo(DemoArgs),
    /// Print the effective settings of `hot`, secrets redacted and references named.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check every endpoint the settings use: DNS, TCP, TLS, token, and the least real operation.
    Check(Box<CheckArgs>),
    /// Start librdkafka's mock Kafka cluster and print its address (for tests and benchmarks).
    #[command(hide = true)]
    MockBroker(MockBrokerArgs),
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got `{s}`"))
}

fn to_map<S: serde::Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    v.iter().cloned().collect::<BTreeMap<_, _>>().serialize(s)
}

/// Flags of `kvlake hot`. Every flag is optional here: the layered settings decide.
#[derive(Debug, Args, Serialize, Default)]
pub struct HotArgs {
    /// TOML file with settings (flags and KVLAKE_* variables override it).
    #[arg(long, env = "KVLAKE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, HOST:PORT[,...] (Event Hubs: <namespace>.servicebus.windows.net:9093) [env: KVLAKE_BROKERS]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Topic: the event hub's name [env: KVLAKE_TOPIC]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Consumer group (Event Hubs: a consumer group of the hub) [env: KVLAKE_GROUP]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Lake URL: a path, file://, abfss://<container>@<account>.dfs.core.windows.net/<path>, az://<container>/<path> [env: KVLAKE_LAKE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lake: Option<String>,
    /// Object-store setting, repeatable (e.g. azure_storage_account_key=..., use_emulator=true)
    #[arg(long = "storage-option", value_parser = parse_key_value)]
    #[serde(
        rename = "storage_options",
        serialize_with = "to_map",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub storage_option: Vec<(String, String)>,
    /// librdkafka setting, repeatable, applied last (e.g. fetch.wait.max.ms=100)
    #[arg(long = "kafka-option", value_parser = parse_key_value)]
    #[serde(
        rename = "kafka_options",
        serialize_with = "to_map",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub kafka_option: Vec<(String, String)>,
    /// plaintext (local brokers), ssl, sasl_plaintext, sasl_ssl (default with a connection string)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<String>,
    /// Event Hubs connection string: a value, env:NAME, file:PATH or a Key Vault secret URL (https://<vault>.vault.azure.net/secrets/<name>) [env: KVLAKE_EVENTHUBS_CONNECTION_STRING]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eventhubs_connection_string: Option<Secret>,
    /// Read up to the high-water marks seen at start, commit, exit (scheduled-job mode)
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub until_caught_up: bool,
    /// Stop at the next batch boundary after this long, e.g. 4h
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<String>,
    /// After SIGTERM/SIGINT or max runtime, how long open batches get to commit, e.g. 60s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    /// As a service: merge the small files of hours closed this long ago, every 15 min
    /// (`off` to leave it to `kvlake compact`; default 2h)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact_after: Option<String>,
    /// As a service: remove partitions older than this from the tables, e.g. 400d (off by default)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Where partitions with an empty checkpoint start: earliest, latest, or JSON {"0":42,"1":-2}
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_offsets: Option<String>,
    /// Replay from this enqueued time (RFC 3339), e.g. 2026-11-01T00:00:00Z
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_timestamp: Option<String>,
    /// Replay up to (not including) this enqueued time (RFC 3339)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending_timestamp: Option<String>,
    /// Write under <lake>/<prefix>/ with its own checkpoint (replays and backfills)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_prefix: Option<String>,
    /// Close a batch at this many records
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_max_records: Option<u64>,
    /// Close a batch this long after its first message, e.g. 5m
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_max_wait: Option<String>,
    /// Close a batch when its Parquet output reaches this size, e.g. 128MiB
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_target_size: Option<String>,
    /// Peak memory to stay under, e.g. 512MiB
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<String>,
    /// Messages above this size are dead-lettered, e.g. 1MiB
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<String>,
    /// Only these partitions, e.g. 0,1,2 (assign mode)
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<i32>>,
    /// Join the consumer group and share partitions with other instances (default: read all partitions, no rebalances)
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub scale_out: bool,
    /// How long to wait for the brokers at start, e.g. 30s
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. 0.0.0.0:9464 [env: KVLAKE_METRICS_ADDR]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    /// How long a failing storage operation is retried before the batch gives up, e.g. 5m
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_retry_timeout: Option<String>,
    /// Streaming detections in the hot path: on (default) or off (replays with --output-prefix never run them) [env: KVLAKE_SPEED]
    #[arg(long, value_parser = ["on", "off"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<String>,
    /// TOML file of thresholds shared with the cold path (the keys of coldpath/sql/defaults.toml; KVLAKE_COLD_<KEY> overrides) [env: KVLAKE_THRESHOLDS]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<String>,
    /// How long after a UTC day ends its late records still count in transit (later ones are left to the cold path), e.g. 1h [env: KVLAKE_ALERT_LATENESS]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_lateness: Option<String>,
    /// Deliver each alert to this webhook (POST of a JSON array), repeatable
    #[arg(long)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert_webhook: Vec<String>,
    /// Sign webhook bodies with HMAC-SHA256 under this secret: a value, env:NAME, file:PATH or a Key Vault secret URL [env: KVLAKE_ALERT_WEBHOOK_SECRET]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook_secret: Option<Secret>,
    /// Azure Monitor Logs Ingestion: the data collection endpoint's logs ingestion URL, https://<dce>.<region>.ingest.monitor.azure.com [env: KVLAKE_ALERT_LOGS_ENDPOINT]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_logs_endpoint: Option<String>,
    /// The data collection rule's immutable id, dcr-<32 hex digits> [env: KVLAKE_ALERT_LOGS_RULE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_logs_rule: Option<String>,
    /// The DCR's input stream (default Custom-KvlakeAlerts) [env: KVLAKE_ALERT_LOGS_STREAM]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_logs_stream: Option<String>,
    /// How to authenticate to Event Hubs: connection-string (SASL PLAIN) or entra (OAUTHBEARER with the service identity). Default: connection-string when one is given, entra for a *.servicebus.windows.net broker [env: KVLAKE_AUTH]
    #[arg(long, value_parser = ["connection-string", "entra"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Pin the identity: auto (workload identity, then managed identity, then Azure CLI), workload-identity, managed-identity, azure-cli, client-secret, client-certificate [env: KVLAKE_CREDENTIAL]
    #[arg(long, value_parser = ["auto", "workload-identity", "managed-identity", "azure-cli", "client-secret", "client-certificate"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Entra tenant of the service principal (default: AZURE_TENANT_ID) [env: KVLAKE_TENANT_ID]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Client id of a user-assigned managed identity or of the service principal (default: AZURE_CLIENT_ID) [env: KVLAKE_CLIENT_ID]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Service principal secret: a value, env:NAME or file:PATH [env: KVLAKE_CLIENT_SECRET]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// Service principal certificate: a PFX (PKCS#12) file with an RSA key [env: KVLAKE_CLIENT_CERTIFICATE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Password of the PFX file: a value, env:NAME or file:PATH [env: KVLAKE_CLIENT_CERTIFICATE_PASSWORD]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_password: Option<Secret>,
    /// Token scope for --auth entra when the brokers are not Event Hubs (default: https://<namespace>.servicebus.windows.net/.default) [env: KVLAKE_KAFKA_OAUTH_SCOPE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_oauth_scope: Option<String>,
    /// How to authenticate to the lake: entra (service identity), key, sas, options (object_store's own from --storage-option). Default: key/sas when given, options when --storage-option carries credentials, else entra [env: KVLAKE_STORAGE_AUTH]
    #[arg(long, value_parser = ["entra", "key", "sas", "options"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_auth: Option<String>,
    /// Storage account key: a value, env:NAME, file:PATH or a Key Vault secret URL [env: KVLAKE_STORAGE_ACCOUNT_KEY]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_account_key: Option<Secret>,
    /// Storage SAS token (sv=...&sig=...): a value, env:NAME, file:PATH or a Key Vault secret URL [env: KVLAKE_STORAGE_SAS]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_sas: Option<Secret>,
    /// How often secret references (env:, file:, Key Vault) are re-read, e.g. 1h [env: KVLAKE_SECRET_REFRESH]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_refresh: Option<String>,
    /// PEM file of extra trusted root certificates for HTTPS to identity endpoints, Key Vault and storage (private CA, TLS inspection) [env: KVLAKE_CA_FILE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// `kvlake config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings (defaults < TOML < KVLAKE_* < flags), secrets as [REDACTED].
    Show(Box<HotArgs>),
}

/// Flags of `kvlake check`: the settings of `hot`, and the output format.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// One JSON document instead of a table
    #[arg(long)]
    pub json: bool,
    /// Per-step time limit, e.g. 10s
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    #[command(flatten)]
    pub hot: HotArgs,
}

/// Flags of `kvlake convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Files or folders (recursive): JSON lines (PT1H.json) or {"records":[...]} documents, optionally .gz
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Lake URL
    #[arg(long, env = "KVLAKE_LAKE")]
    pub lake: String,
    /// Object-store setting, repeatable
    #[arg(long = "storage-option", value_parser = parse_key_value)]
    pub storage_option: Vec<(String, String)>,
    /// Write under <lake>/<prefix>/
    #[arg(long)]
    pub output_prefix: Option<String>,
    /// Decode every record as this shape instead of detecting it per record:
    /// diagnostic-settings, azurediagnostics, azkvauditlogs or managedhsm
    #[arg(long, value_parser = |s: &str| s.parse::<kvlake_schemas::Shape>().map_err(|e| e.to_string()))]
    pub format: Option<kvlake_schemas::Shape>,
}

/// Where a lake command (`cold`, `compact`, `migrate`) finds the lake: the same
/// settings, identity and secret references as `kvlake hot`.
#[derive(Debug, Args, Clone, Default)]
pub struct LakeArgs {
    /// Lake URL (the hot path's, or a replay's <lake>/<prefix>); else `lake` from --config
    #[arg(long, env = "KVLAKE_LAKE")]
    pub lake: Option<String>,
    /// Object-store setting, repeatable
    #[arg(long = "storage-option", value_parser = parse_key_value)]
    pub storage_option: Vec<(String, String)>,
    /// Storage authentication: entra, key, sas or options (as for `kvlake hot`)
    #[arg(long)]
    pub storage_auth: Option<String>,
    /// kvlake's TOML settings file, shared with `kvlake hot`: the lake, storage
    /// authentication, identity and secret references are read from it
    #[arg(long, env = "KVLAKE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Flags of `kvlake cold`.
#[derive(Debug, Args)]
pub struct ColdArgs {
    /// The lake.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// TOML file of anomaly thresholds (the keys of coldpath/sql/defaults.toml);
    /// KVLAKE_COLD_<KEY> variables override it
    #[arg(long, env = "KVLAKE_COLD_THRESHOLDS")]
    pub thresholds: Option<PathBuf>,
    /// Recompute the days --from..--to as well as what is new, replacing them
    #[arg(long, requires_all = ["from", "to"])]
    pub rebuild: bool,
    /// First day to rebuild, YYYY-MM-DD
    #[arg(long, requires = "rebuild")]
    pub from: Option<String>,
    /// Last day to rebuild, YYYY-MM-DD (inclusive)
    #[arg(long, requires = "rebuild")]
    pub to: Option<String>,
    /// Query threads (default: the machine's cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the effective thresholds as TOML and exit
    #[arg(long)]
    pub show_settings: bool,
}

/// Flags of `kvlake backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The Log Analytics workspace: its Workspace ID (the GUID on its Overview page)
    #[arg(long, env = "KVLAKE_BACKFILL_WORKSPACE")]
    pub workspace: String,
    /// Start of the range, on a whole UTC hour: YYYY-MM-DD or RFC 3339 (inclusive)
    #[arg(long)]
    pub from: String,
    /// End of the range: YYYY-MM-DD or RFC 3339 (exclusive), not in the future
    #[arg(long)]
    pub to: String,
    /// Table to read: all (AZKVAuditLogs and AzureDiagnostics, skipping one the
    /// workspace does not have), AZKVAuditLogs or AzureDiagnostics
    #[arg(long, default_value = "all")]
    pub table: String,
    /// Logs Query API endpoint; sovereign clouds: https://api.loganalytics.azure.cn,
    /// https://api.loganalytics.us (a private link keeps the public name)
    #[arg(long, default_value = crate::loganalytics::DEFAULT_ENDPOINT, env = "KVLAKE_BACKFILL_ENDPOINT")]
    pub endpoint: String,
    /// Token scope (default: the endpoint's cloud, e.g. https://api.loganalytics.io/.default)
    #[arg(long)]
    pub token_scope: Option<String>,
    /// Most rows one query may return (at most 500000, the API's limit); a slice with
    /// more is split
    #[arg(long, default_value_t = 100_000)]
    pub max_rows: usize,
    /// Hours read at the same time (the API runs 5 queries per user at once)
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// How long the service may take for one query (Prefer: wait; at most 10m); a slice
    /// that takes longer is split
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub query_timeout: std::time::Duration,
    /// Retries of a throttled (429, after its Retry-After) or failed (5xx, network) query
    #[arg(long, default_value_t = 8)]
    pub max_retries: u32,
    /// The lake.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Credential: auto, workload-identity, managed-identity, azure-cli, client-secret,
    /// client-certificate (as for `kvlake hot`)
    #[arg(long, value_parser = ["auto", "workload-identity", "managed-identity", "azure-cli", "client-secret", "client-certificate"])]
    pub credential: Option<String>,
    /// Client id of a user-assigned identity or service principal
    #[arg(long)]
    pub client_id: Option<String>,
    /// Tenant of a service principal
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Extra trusted roots (PEM) for HTTPS: a private CA or a TLS-inspecting proxy
    #[arg(long)]
    pub ca_file: Option<String>,
}

/// Flags of `kvlake report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The lake.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// The HTML file to write
    #[arg(long)]
    pub out: PathBuf,
    /// UTC days to cover, ending with the newest day the cold path has computed
    #[arg(long, default_value_t = 28)]
    pub days: u32,
    /// Only this vault (and the identities that used it)
    #[arg(long)]
    pub vault: Option<String>,
    /// Raw events listed under each finding
    #[arg(long, default_value_t = 10)]
    pub raw_rows: usize,
    /// The cold path's thresholds file (for the bands and captions), as for `kvlake cold`
    #[arg(long, env = "KVLAKE_COLD_THRESHOLDS")]
    pub thresholds: Option<PathBuf>,
}

/// Flags of `kvlake compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The lake.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Compact an hour once it ended this long ago (late events land as new small files
    /// in closed hours; the next run merges them too)
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    pub older_than: std::time::Duration,
    /// Merged files grow to about this size, e.g. 128MiB
    #[arg(long, default_value = "128MiB")]
    pub target_size: String,
    /// Remove partitions whose time range ended longer ago than this (data retention,
    /// e.g. 400d); off by default
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retention: Option<std::time::Duration>,
    /// Delete files removed from the tables longer ago than this (at least 1h; default 7d)
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub vacuum_retention: std::time::Duration,
    /// Only merge small files; no retention, checkpoint, log cleanup or VACUUM
    #[arg(long)]
    pub compact_only: bool,
    /// Checkpoint-log entries kept per partition (older ones are in the Delta tables)
    #[arg(long, default_value_t = 100, hide = true)]
    pub keep_log_entries: u64,
}

/// Flags of `kvlake migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The lake.
    #[command(flatten)]
    pub lake: LakeArgs,
}

/// Output format of `kvlake generate`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GenerateFormat {
    /// One `{"records":[...]}` envelope per line, as Event Hubs messages carry them.
    Envelope,
    /// One record per line, as the storage archive (PT1H.json) holds them.
    Lines,
}

/// `kvlake generate --shape`: names as `kvlake_schemas::Shape::name` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateShape {
    /// The record a diagnostic setting sends to Event Hubs or a storage account.
    #[value(name = "diagnostic-settings")]
    DiagnosticSettings,
    /// A row of the Log Analytics AzureDiagnostics table (flattened, type-suffixed columns).
    #[value(name = "azurediagnostics")]
    AzureDiagnostics,
    /// A row of the Log Analytics AZKVAuditLogs table.
    #[value(name = "azkvauditlogs")]
    AzkvAuditLogs,
    /// A Managed HSM AuditEvent record.
    #[value(name = "managedhsm")]
    ManagedHsm,
}

impl From<GenerateShape> for kvlake_generator::Shape {
    fn from(s: GenerateShape) -> Self {
        match s {
            GenerateShape::DiagnosticSettings => kvlake_generator::Shape::DiagnosticSettings,
            GenerateShape::AzureDiagnostics => kvlake_generator::Shape::AzureDiagnostics,
            GenerateShape::AzkvAuditLogs => kvlake_generator::Shape::AzkvAuditLogs,
            GenerateShape::ManagedHsm => kvlake_generator::Shape::ManagedHsm,
        }
    }
}

/// Flags of `kvlake generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Records to write
    #[arg(long, default_value_t = 1000)]
    pub records: usize,
    /// Seed: the same seed writes the same bytes
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format
    #[arg(long, value_enum, default_value_t = GenerateFormat::Envelope)]
    pub format: GenerateFormat,
    /// Shape of the records: the same events as a diagnostic-settings record, a Log
    /// Analytics AzureDiagnostics or AZKVAuditLogs row, or a Managed HSM record
    #[arg(long, value_enum, default_value_t = GenerateShape::DiagnosticSettings)]
    pub shape: GenerateShape,
    /// Fraction of messages replaced by malformed ones (envelope format), e.g. 0.01
    #[arg(long, default_value_t = 0.0)]
    pub bad_rate: f64,
    /// Average event rate in event time; records / rate is the time span covered
    #[arg(long, default_value_t = 50.0)]
    pub events_per_second: f64,
    /// Event time of the first record, RFC 3339 (default: the generator's fixed start)
    #[arg(long)]
    pub start: Option<String>,
    /// Vaults in the simulated estate
    #[arg(long, default_value_t = 12)]
    pub vaults: usize,
    /// Identities in the simulated estate
    #[arg(long, default_value_t = 200)]
    pub identities: usize,
    /// Inject an attack, KIND@OFFSET (offset in event time from the start, e.g. 9d4h),
    /// repeatable. Kinds: mass-secret-retrieval, list-then-read, sensitive-operation,
    /// new-identity-on-vault, volume-spike, denied-burst, new-ip-for-identity
    #[arg(long = "attack", value_name = "KIND@OFFSET")]
    pub attacks: Vec<String>,
    /// Write what was injected (vault, identity, IP, times) as JSON lines to this file
    #[arg(long)]
    pub injected: Option<PathBuf>,
}

/// Flags of `kvlake demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Lake URL (a folder it creates)
    #[arg(long, default_value = "./kvlake-demo")]
    pub lake: String,
    /// Records of synthetic traffic
    #[arg(long, default_value_t = 30_000)]
    pub records: usize,
    /// Partitions of the embedded event hub
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Seed of the synthetic traffic
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Flags of `kvlake mock-broker`.
#[derive(Debug, Args)]
pub struct MockBrokerArgs {
    /// Topic to create, repeatable
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Partitions of each topic
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
}
