//! What a report shows, as plain data: the numbers every chart is drawn from, embedded
//! in the page as JSON next to each chart so a reader (or a test) can check them.

use serde::Serialize;

/// The days the report covers and what was asked.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// First and last UTC day, `YYYY-MM-DD` (inclusive).
    pub first: String,
    pub last: String,
    /// Days asked (`--days`).
    pub days: u32,
    /// Days in the period the lake has data for.
    pub lake_days: Vec<String>,
}

/// One day of one vault: calls and its usual range.
#[derive(Debug, Clone, Serialize)]
pub struct VaultDay {
    pub date: String,
    /// Calls that day (sum of `vault_daily.operations`; 0 on a lake day without calls).
    pub calls: i64,
    /// `baselines.mean_28` / `stddev_28` / `days_28` (scope vault, metric operations).
    pub mean_28: Option<f64>,
    pub stddev_28: Option<f64>,
    pub days_28: Option<i64>,
    /// The band drawn: usual range, once the vault has the warm-up's days of history.
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Kinds of the anomalies on this vault that day.
    pub anomalies: Vec<String>,
}

/// Calls per day of one vault.
#[derive(Debug, Clone, Serialize)]
pub struct VaultSeries {
    pub vault: String,
    pub total: i64,
    pub days: Vec<VaultDay>,
}

/// One of the raw events behind a finding.
#[derive(Debug, Clone, Serialize)]
pub struct RawEvent {
    /// UTC, microseconds and RFC 3339.
    pub time: i64,
    pub time_text: String,
    pub operation: Option<String>,
    pub vault: Option<String>,
    pub identity: Option<String>,
    pub upn: Option<String>,
    pub ip: Option<String>,
    pub status: Option<i64>,
    pub object: Option<String>,
    /// Source coordinates (topic/file, partition, offset, record index).
    pub source: Option<String>,
    pub partition: Option<i64>,
    pub offset: Option<i64>,
    pub record_index: Option<i64>,
}

/// The raw events behind a finding: how many match, and the first few.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RawEvents {
    /// Matching raw rows in the window.
    pub total: u64,
    /// The first of them by time (at most `--raw-rows`).
    pub rows: Vec<RawEvent>,
    /// What was matched, in words.
    pub filter: String,
    /// Set when the raw rows could not be looked at (no raw table, window too long).
    pub note: Option<String>,
}

/// An anomaly (cold path) or an alert (speed layer).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `anomaly` or `alert`.
    pub source: &'static str,
    pub alert_id: Option<String>,
    pub date: String,
    pub kind: String,
    pub subject_type: Option<String>,
    pub subject: Option<String>,
    pub vault: Option<String>,
    pub identity: Option<String>,
    pub ip: Option<String>,
    /// UTC microseconds.
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub observed: Option<f64>,
    pub baseline: Option<f64>,
    pub score: Option<f64>,
    pub description: String,
    pub raw: RawEvents,
}

/// Anomalies of one kind: in the lake, and in the period shown.
#[derive(Debug, Clone, Serialize)]
pub struct KindCount {
    pub kind: String,
    pub in_lake: u64,
    pub in_period: u64,
    pub alerts_in_period: u64,
}

/// An identity among the top readers of secrets.
#[derive(Debug, Clone, Serialize)]
pub struct Reader {
    pub identity: String,
    pub upn: Option<String>,
    /// Successful SecretGet/KeyGet/VaultGet in the period (`identity_daily.secret_reads`).
    pub reads: i64,
    pub active_days: i64,
    pub busiest_date: String,
    pub busiest_reads: i64,
    /// Its usual day: `baselines.mean_28` (scope identity, metric secret_reads) of
    /// `usual_date`, the first day in the period with a week of history (else its latest).
    pub usual_per_day: Option<f64>,
    pub usual_date: Option<String>,
    /// `usual_per_day` × the lake days of the period: what a usual period would hold.
    pub usual_for_period: Option<f64>,
}

/// First-seen pairs of one day.
#[derive(Debug, Clone, Serialize)]
pub struct NewDay {
    pub date: String,
    /// Days of data the lake holds before this day (`baselines.lake_age`).
    pub lake_age: i64,
    /// Identities that used a vault for the first time (scope vault_identity).
    pub new_identity_on_vault: i64,
    /// Identities that called from an IP for the first time (scope identity_ip).
    pub new_ip_for_identity: i64,
}

/// One first-seen pair after the warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct NewSubject {
    pub date: String,
    /// `identity_on_vault` or `ip_for_identity`.
    pub what: &'static str,
    pub identity: String,
    pub vault: Option<String>,
    pub ip: Option<String>,
    /// Calls that day.
    pub calls: i64,
}

/// Denied calls (401/403) of a vault.
#[derive(Debug, Clone, Serialize)]
pub struct DeniedVault {
    pub vault: String,
    pub denied: i64,
    pub calls: i64,
}

/// Denied calls of one identity on one vault.
#[derive(Debug, Clone, Serialize)]
pub struct DeniedIdentity {
    pub identity: String,
    pub upn: Option<String>,
    pub vault: String,
    pub denied: i64,
    pub calls: i64,
}

/// The thresholds the drawing uses (the cold path's, so the band is where alarms start).
#[derive(Debug, Clone, Serialize)]
pub struct DrawSettings {
    pub score_threshold: f64,
    pub volume_min_ratio: f64,
    pub warmup_days: u32,
    pub window_minutes: u32,
    pub mass_retrieval_threshold: u64,
    pub denied_burst_min: u64,
    pub new_subject_min_operations: u64,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub lake: String,
    pub generated_at: String,
    pub vault_filter: Option<String>,
    pub period: Period,
    pub settings: DrawSettings,
    pub calls: i64,
    pub identities: i64,
    pub vault_calls: Vec<VaultSeries>,
    pub kinds: Vec<KindCount>,
    /// Whether the lake has the speed layer's `alerts` table.
    pub alerts_table: bool,
    pub findings: Vec<Finding>,
    pub top_readers: Vec<Reader>,
    pub new_days: Vec<NewDay>,
    pub new_subjects: Vec<NewSubject>,
    /// First-seen pairs after the warm-up, before the list was cut.
    pub new_subjects_total: usize,
    pub denied_vaults: Vec<DeniedVault>,
    pub denied_identities: Vec<DeniedIdentity>,
}
