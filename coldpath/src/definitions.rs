//! The tables the cold path writes: their SQL definitions (in `sql/`, shared with the Spark
//! runner), columns, descriptions and sort order. `date` is the Hive partition of each.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The view every definition reads raw data through.
pub const EVENTS_SQL: &str = include_str!("../sql/events.sql");

/// Where a table's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// From the committed raw rows of the day (`events`).
    Daily,
    /// From the daily tables' history (no raw data read).
    History,
}

/// Column types, kept few so both engines agree on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Date,
    Text,
    Int,
    Float,
    Timestamp,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Date => DataType::Date32,
            Kind::Text => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One column and what it means (ARCHITECTURE.md lists them all; a test checks).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

/// One table under `agg/<name>/date=YYYY-MM-DD/`.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub stage: Stage,
    pub sql: &'static str,
    /// Rows are written in this order, so a file's bytes depend only on its rows.
    pub sort: &'static [&'static str],
    /// Every column, `date` first.
    pub columns: &'static [Column],
}

const fn c(name: &'static str, kind: Kind, description: &'static str) -> Column {
    Column {
        name,
        kind,
        description,
    }
}

use Kind::{Date, Float, Int, Text, Timestamp};

const DATE: Column = c(
    "date",
    Date,
    "UTC day (the `date=` partition; not stored in the files)",
);

const ANOMALY_COLUMNS: &[Column] = &[
    DATE,
    c(
        "kind",
        Text,
        "what was found: sensitive_operation, mass_secret_retrieval, list_then_read, denied_burst, unusual_volume, new_identity_on_vault, new_ip_for_identity",
    ),
    c(
        "subject_type",
        Text,
        "what the finding is about: vault, identity or ip",
    ),
    c("subject", Text, "the vault name, identity or IP address"),
    c("vault_name", Text, "vault involved, when there is one"),
    c(
        "identity",
        Text,
        "identity involved (object id, else app id, else UPN), when there is one",
    ),
    c("ip", Text, "caller IP involved, when there is one"),
    c(
        "window_start",
        Timestamp,
        "start of the time window the finding covers",
    ),
    c(
        "window_end",
        Timestamp,
        "end of the time window the finding covers",
    ),
    c(
        "observed",
        Float,
        "the value that triggered the finding (calls, reads, secrets, denials)",
    ),
    c(
        "baseline",
        Float,
        "the subject's usual value (28-day mean), when the finding compares with one",
    ),
    c(
        "score",
        Float,
        "standard deviations above the baseline, when the finding compares with one",
    ),
    c("description", Text, "one sentence an analyst can read"),
];

/// Every table, in the order a run computes them.
pub const TABLES: &[Table] = &[
    Table {
        name: "vault_daily",
        stage: Stage::Daily,
        sql: include_str!("../sql/vault_daily.sql"),
        sort: &["vault_name", "operation_name", "result_class"],
        columns: &[
            DATE,
            c("vault_name", Text, "vault"),
            c(
                "operation_name",
                Text,
                "Key Vault operation, e.g. SecretGet",
            ),
            c(
                "result_class",
                Text,
                "success, client_error, throttled, server_error or unknown (from the HTTP status)",
            ),
            c("operations", Int, "calls"),
            c(
                "distinct_identities",
                Int,
                "different callers (object id, else app id, else UPN)",
            ),
            c("distinct_ips", Int, "different caller IP addresses"),
            c("client_errors", Int, "calls answered 4xx other than 429"),
            c("server_errors", Int, "calls answered 5xx"),
            c("throttled", Int, "calls answered 429"),
            c(
                "duration_p50_ms",
                Float,
                "median duration (ms), linear interpolation",
            ),
            c(
                "duration_p95_ms",
                Float,
                "95th percentile duration (ms), linear interpolation",
            ),
            c("duration_max_ms", Int, "longest duration (ms)"),
        ],
    },
    Table {
        name: "identity_daily",
        stage: Stage::Daily,
        sql: include_str!("../sql/identity_daily.sql"),
        sort: &["identity", "vault_name"],
        columns: &[
            DATE,
            c(
                "identity",
                Text,
                "caller: object id, else app id, else UPN (lower case); anonymous calls are left out",
            ),
            c("vault_name", Text, "vault"),
            c("object_id", Text, "object id of the caller"),
            c("app_id", Text, "app id the caller used"),
            c("upn", Text, "user principal name, for people"),
            c("identity_type", Text, "identity type claim"),
            c("operations", Int, "calls"),
            c("distinct_secrets", Int, "different secrets touched"),
            c("distinct_keys", Int, "different keys touched"),
            c(
                "distinct_certificates",
                Int,
                "different certificates touched",
            ),
            c("distinct_ips", Int, "different caller IP addresses"),
            c("failed_operations", Int, "calls answered 4xx or 5xx"),
            c("denied_operations", Int, "calls answered 401 or 403"),
            c(
                "secret_reads",
                Int,
                "successful SecretGet, KeyGet and VaultGet",
            ),
            c("first_seen", Timestamp, "first call of the day"),
            c("last_seen", Timestamp, "last call of the day"),
            c(
                "peak_list_read",
                Int,
                "most different secrets read within the window after one SecretList",
            ),
            c("peak_list_read_at", Timestamp, "time of that SecretList"),
            c("peak_denied", Int, "most 401/403 answers within one window"),
            c("peak_denied_at", Timestamp, "start of that window"),
        ],
    },
    Table {
        name: "identity_ip_daily",
        stage: Stage::Daily,
        sql: include_str!("../sql/identity_ip_daily.sql"),
        sort: &["identity", "ip"],
        columns: &[
            DATE,
            c("identity", Text, "caller"),
            c("ip", Text, "caller IP address"),
            c("operations", Int, "calls"),
            c(
                "first_seen",
                Timestamp,
                "first call of the day from this IP",
            ),
            c("last_seen", Timestamp, "last call of the day from this IP"),
        ],
    },
    Table {
        name: "sensitive_operations",
        stage: Stage::Daily,
        sql: include_str!("../sql/sensitive_operations.sql"),
        sort: &["subject", "vault_name", "description"],
        columns: ANOMALY_COLUMNS,
    },
    Table {
        name: "baselines",
        stage: Stage::History,
        sql: include_str!("../sql/baselines.sql"),
        sort: &["scope", "metric", "vault_name", "identity", "ip"],
        columns: &[
            DATE,
            c(
                "scope",
                Text,
                "vault, vault_identity, identity or identity_ip",
            ),
            c(
                "metric",
                Text,
                "operations, secret_reads, peak_list_read or peak_denied",
            ),
            c("vault_name", Text, "vault, for vault scopes"),
            c("identity", Text, "identity, for identity scopes"),
            c("ip", Text, "IP address, for identity_ip"),
            c("value", Int, "the metric on this day"),
            c(
                "days_7",
                Int,
                "days in the 7-day window (lake days since the subject's first day)",
            ),
            c(
                "mean_7",
                Float,
                "mean of the metric over those days (quiet days count as 0)",
            ),
            c(
                "stddev_7",
                Float,
                "sample standard deviation over those days",
            ),
            c("days_28", Int, "days in the 28-day window"),
            c("mean_28", Float, "mean over the 28-day window"),
            c(
                "stddev_28",
                Float,
                "sample standard deviation over the 28-day window",
            ),
            c(
                "first_seen",
                Date,
                "first day the subject appears in the lake",
            ),
            c(
                "lake_age",
                Int,
                "days of data the lake holds before this day",
            ),
        ],
    },
    Table {
        name: "anomalies",
        stage: Stage::History,
        sql: include_str!("../sql/anomalies.sql"),
        sort: &[
            "kind",
            "subject",
            "vault_name",
            "identity",
            "ip",
            "window_start",
            "description",
        ],
        columns: ANOMALY_COLUMNS,
    },
];

impl Table {
    /// Schema of query results: every column, `date` first.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.kind.data_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// Schema of the files: without `date`, which is in the path.
    pub fn file_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter(|c| c.name != "date")
                .map(|c| Field::new(c.name, c.kind.data_type(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// The table called `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}
