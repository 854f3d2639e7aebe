//! What the rules see of a decoded record: the few columns they read, pulled out of the
//! decoder's Arrow batch on the encode thread, before the batch is written.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};

/// A name the rules key on (vault, identity, IP, operation, secret). Shared, not copied:
/// one record's names appear in several counters and windows, and most names repeat
/// from record to record.
pub type Name = Arc<str>;

/// One raw record, as the speed layer reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Kafka partition (source coordinate).
    pub partition: i32,
    /// Kafka offset of the message (source coordinate).
    pub offset: i64,
    /// Index of the record inside its message (source coordinate).
    pub record_index: i32,
    /// `time`, UTC micros.
    pub time: i64,
    /// `operationName`.
    pub operation: Name,
    /// `result_class` is `success`.
    pub success: bool,
    /// `properties.httpStatusCode`.
    pub http_status: Option<i32>,
    /// The caller as the cold path names it: object id, else app id, else UPN, lower case.
    pub identity: Option<Name>,
    /// Object id of the caller, lower case.
    pub object_id: Option<Name>,
    /// App id of the caller, lower case.
    pub app_id: Option<Name>,
    /// Vault name (lower case, derived by the decoder).
    pub vault: Option<Name>,
    /// `callerIpAddress`.
    pub ip: Option<Name>,
    /// Name of the secret/key/certificate touched.
    pub object_name: Option<Name>,
}

/// One text column, with each distinct value made a [`Name`] once per batch.
struct Column<'a> {
    values: Option<&'a StringArray>,
    lower: bool,
    seen: std::collections::HashMap<&'a str, Name, foldhash::fast::RandomState>,
    /// The previous row's value: runs of one vault, caller or operation are the common
    /// case, and comparing with the last one costs less than a hash.
    last: Option<(&'a str, Name)>,
}

impl<'a> Column<'a> {
    fn new(batch: &'a RecordBatch, name: &str, lower: bool) -> Column<'a> {
        Column {
            values: batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>()),
            lower,
            seen: Default::default(),
            last: None,
        }
    }

    fn get(&mut self, i: usize) -> Option<Name> {
        let a = self.values?;
        if a.is_null(i) {
            return None;
        }
        let v = a.value(i);
        if let Some((text, name)) = &self.last
            && *text == v
        {
            return Some(name.clone());
        }
        let lower = self.lower;
        let name = self
            .seen
            .entry(v)
            .or_insert_with(|| {
                if lower && v.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
                    Name::from(v.to_lowercase())
                } else {
                    Name::from(v)
                }
            })
            .clone();
        self.last = Some((v, name.clone()));
        Some(name)
    }
}

/// The events of a decoded raw batch (the decoder's output, before Parquet).
pub fn events_of(batch: &RecordBatch) -> Vec<Event> {
    let n = batch.num_rows();
    let (Some(part), Some(off), Some(idx), Some(time)) = (
        batch.column_by_name("_partition"),
        batch.column_by_name("_offset"),
        batch.column_by_name("_record_index"),
        batch.column_by_name("time"),
    ) else {
        return Vec::new();
    };
    let (Some(part), Some(off), Some(idx), Some(time)) = (
        part.as_primitive_opt::<Int32Type>(),
        off.as_primitive_opt::<Int64Type>(),
        idx.as_primitive_opt::<Int32Type>(),
        time.as_primitive_opt::<TimestampMicrosecondType>(),
    ) else {
        return Vec::new();
    };
    let status = batch
        .column_by_name("http_status_code")
        .and_then(|c| c.as_primitive_opt::<Int32Type>());
    let result = batch
        .column_by_name("result_class")
        .and_then(|c| c.as_string_opt::<i32>());
    let mut object_ids = Column::new(batch, "identity_object_id", true);
    let mut app_ids = Column::new(batch, "identity_app_id", true);
    let mut upns = Column::new(batch, "identity_upn", true);
    let mut operations = Column::new(batch, "operation_name", false);
    let mut vaults = Column::new(batch, "vault_name", false);
    let mut ips = Column::new(batch, "caller_ip_address", false);
    let mut objects = Column::new(batch, "object_name", false);
    let no_operation = Name::from("");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let object_id = object_ids.get(i);
        let app_id = app_ids.get(i);
        let identity = object_id
            .clone()
            .or_else(|| app_id.clone())
            .or_else(|| upns.get(i));
        out.push(Event {
            partition: part.value(i),
            offset: off.value(i),
            record_index: idx.value(i),
            time: time.value(i),
            operation: operations.get(i).unwrap_or_else(|| no_operation.clone()),
            success: result.is_some_and(|r| !r.is_null(i) && r.value(i) == "success"),
            http_status: status.and_then(|s| (!s.is_null(i)).then(|| s.value(i))),
            identity,
            object_id,
            app_id,
            vault: vaults.get(i),
            ip: ips.get(i),
            object_name: objects.get(i),
        });
    }
    out
}
