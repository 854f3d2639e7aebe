//! What the rules see of a decoded record: the few columns they read, pulled out of the
//! decoder's Arrow batch on the encode thread, before the batch is written.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};

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
    pub operation: String,
    /// `result_class` is `success`.
    pub success: bool,
    /// `properties.httpStatusCode`.
    pub http_status: Option<i32>,
    /// The caller as the cold path names it: object id, else app id, else UPN, lower case.
    pub identity: Option<String>,
    /// Object id of the caller, lower case.
    pub object_id: Option<String>,
    /// App id of the caller, lower case.
    pub app_id: Option<String>,
    /// Vault name (lower case, derived by the decoder).
    pub vault: Option<String>,
    /// `callerIpAddress`.
    pub ip: Option<String>,
    /// Name of the secret/key/certificate touched.
    pub object_name: Option<String>,
}

fn text(batch: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let col = batch.column_by_name(name)?;
    let a = col.as_string_opt::<i32>()?;
    (!a.is_null(i)).then(|| a.value(i).to_string())
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
        .and_then(|c| c.as_primitive_opt::<Int32Type>().cloned());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let lower = |name: &str| text(batch, name, i).map(|s| s.to_lowercase());
        let object_id = lower("identity_object_id");
        let app_id = lower("identity_app_id");
        let upn = lower("identity_upn");
        let identity = object_id.clone().or_else(|| app_id.clone()).or(upn);
        out.push(Event {
            partition: part.value(i),
            offset: off.value(i),
            record_index: idx.value(i),
            time: time.value(i),
            operation: text(batch, "operation_name", i).unwrap_or_default(),
            success: text(batch, "result_class", i).as_deref() == Some("success"),
            http_status: status
                .as_ref()
                .and_then(|s| (!s.is_null(i)).then(|| s.value(i))),
            identity,
            object_id,
            app_id,
            vault: text(batch, "vault_name", i),
            ip: text(batch, "caller_ip_address", i),
            object_name: text(batch, "object_name", i),
        });
    }
    out
}
