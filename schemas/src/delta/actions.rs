//! The actions of a Delta commit (one JSON object a line) that kvlake writes and reads:
//! `add`, `remove`, `metaData`, `protocol`, `txn` and `commitInfo`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DeltaFormatError;

/// A data file that joins the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Path relative to the table root (URL-encoded per the protocol: kvlake's names need none).
    pub path: String,
    /// Partition column → value as text (`null` for a null value).
    pub partition_values: BTreeMap<String, Option<String>>,
    /// File size in bytes.
    pub size: i64,
    /// Milliseconds since the epoch when the file was written.
    pub modification_time: i64,
    /// False for a rearrangement of existing rows (compaction), true for new data.
    pub data_change: bool,
    /// Statistics JSON (numRecords, minValues, maxValues, nullCount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// A data file that leaves the table (it stays on storage until VACUUM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    /// Path relative to the table root.
    pub path: String,
    /// Milliseconds since the epoch when it was removed.
    #[serde(default)]
    pub deletion_timestamp: Option<i64>,
    /// False for compaction, true when rows leave the table (retention).
    pub data_change: bool,
    /// Whether `partitionValues` and `size` are present.
    #[serde(default)]
    pub extended_file_metadata: Option<bool>,
    /// Partition values of the removed file.
    #[serde(default)]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    /// Its size.
    #[serde(default)]
    pub size: Option<i64>,
}

impl Remove {
    /// The removal of a file the table holds.
    pub fn of(add: &Add, now_ms: i64, data_change: bool) -> Remove {
        Remove {
            path: add.path.clone(),
            deletion_timestamp: Some(now_ms),
            data_change,
            extended_file_metadata: Some(true),
            partition_values: Some(add.partition_values.clone()),
            size: Some(add.size),
        }
    }
}

/// The table's identity, schema, partitioning and properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Unique id of the table.
    pub id: String,
    /// Table name, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Always `{"provider":"parquet","options":{}}`.
    pub format: Format,
    /// The schema as Delta's JSON.
    pub schema_string: String,
    /// Partition columns, in path order.
    pub partition_columns: Vec<String>,
    /// Table properties (`delta.checkpointInterval`, ...).
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    /// Milliseconds since the epoch when the table was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

/// Data file format of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    /// `parquet`.
    pub provider: String,
    /// Format options (none).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            provider: "parquet".into(),
            options: BTreeMap::new(),
        }
    }
}

/// The protocol versions a reader and a writer need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// Reader version.
    pub min_reader_version: i32,
    /// Writer version.
    pub min_writer_version: i32,
}

impl Protocol {
    /// Reader 1 / writer 2: what every engine kvlake's users run reads.
    pub const KVLAKE: Protocol = Protocol {
        min_reader_version: 1,
        min_writer_version: 2,
    };

    /// Whether kvlake may write a table with this protocol (features it does not
    /// implement, such as deletion vectors, need a higher version).
    pub fn writable(&self) -> bool {
        self.min_reader_version <= 1 && self.min_writer_version <= 2
    }
}

/// An application's progress, committed atomically with its data: kvlake's
/// exactly-once key (one app id per source log, version = its commit sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    /// Application id.
    pub app_id: String,
    /// Version the application reached.
    pub version: i64,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<i64>,
}

/// One line of a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// `add`.
    #[serde(rename = "add")]
    Add(Add),
    /// `remove`.
    #[serde(rename = "remove")]
    Remove(Remove),
    /// `metaData`.
    #[serde(rename = "metaData")]
    Metadata(Metadata),
    /// `protocol`.
    #[serde(rename = "protocol")]
    Protocol(Protocol),
    /// `txn`.
    #[serde(rename = "txn")]
    Txn(Txn),
    /// `commitInfo`: free-form provenance, kept as JSON.
    #[serde(rename = "commitInfo")]
    CommitInfo(serde_json::Value),
}

/// Provenance kvlake writes first in each commit.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Operation name as Spark's history shows it (`STREAMING UPDATE`, `OPTIMIZE`, ...).
    pub operation: &'static str,
    /// Operation parameters (text values, as Delta's history expects).
    pub parameters: BTreeMap<String, String>,
    /// Whether the commit only adds data.
    pub blind_append: bool,
}

impl CommitInfo {
    /// As an action.
    pub fn action(&self) -> Action {
        Action::CommitInfo(serde_json::json!({
            "timestamp": self.timestamp,
            "operation": self.operation,
            "operationParameters": self.parameters,
            "isBlindAppend": self.blind_append,
            "engineInfo": concat!("kvlake/", env!("CARGO_PKG_VERSION")),
        }))
    }
}

/// The bytes of a commit: one action a line.
pub fn encode_commit(actions: &[Action]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * actions.len());
    for a in actions {
        // Serialising these plain structs cannot fail.
        if serde_json::to_writer(&mut out, a).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// The actions of a commit. Actions kvlake does not use (`cdc`, `domainMetadata`, ...)
/// are skipped; a line that is not JSON is an error.
pub fn decode_commit(version: i64, bytes: &[u8]) -> Result<Vec<Action>, DeltaFormatError> {
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // One pass into the action (the common case); only a line that is not one of
        // ours is looked at again, to skip actions of features kvlake does not use.
        let action = match serde_json::from_slice::<Action>(line) {
            Ok(action) => action,
            Err(e) => {
                let value: BTreeMap<String, serde::de::IgnoredAny> =
                    serde_json::from_slice(line).map_err(|e| DeltaFormatError::Commit {
                        version,
                        detail: e.to_string(),
                    })?;
                let known = value.keys().next().is_some_and(|k| {
                    matches!(
                        k.as_str(),
                        "add" | "remove" | "metaData" | "protocol" | "txn" | "commitInfo"
                    )
                });
                if !known {
                    continue;
                }
                return Err(DeltaFormatError::Commit {
                    version,
                    detail: e.to_string(),
                });
            }
        };
        out.push(action);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_round_trip_and_unknown_actions_are_skipped() {
        let add = Add {
            path: "date=2026-01-02/hour=3/a.parquet".into(),
            partition_values: BTreeMap::from([
                ("date".into(), Some("2026-01-02".into())),
                ("hour".into(), Some("3".into())),
            ]),
            size: 10,
            modification_time: 5,
            data_change: true,
            stats: Some(r#"{"numRecords":1}"#.into()),
        };
        let actions = vec![
            Action::Protocol(Protocol::KVLAKE),
            Action::Add(add.clone()),
            Action::Txn(Txn {
                app_id: "a".into(),
                version: 4,
                last_updated: None,
            }),
        ];
        let mut bytes = encode_commit(&actions);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#"{"add":{"path":"date=2026-01-02/hour=3/a.parquet","partitionValues":{"date":"2026-01-02","hour":"3"}"#), "{text}");
        assert!(text.contains(r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#));
        bytes.extend_from_slice(b"{\"domainMetadata\":{\"domain\":\"x\"}}\n");
        assert_eq!(decode_commit(1, &bytes).unwrap(), actions);
        assert!(decode_commit(1, b"{not json").is_err());
    }
}
