//! The raw table: one row per Key Vault `AuditEvent` record, typed, with its source
//! coordinates. Column order here is the column order of every raw Parquet file.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{SCHEMA_VERSION, SCHEMA_VERSION_KEY};

/// UTC microsecond timestamps: what Spark, DuckDB and Polars all read untouched.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Hive-style partition columns: present in decoded batches, encoded in the path
/// (`date=YYYY-MM-DD/hour=HH`) and left out of the files, as Spark and Delta do.
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

/// Which scalar kind a column holds; drives the decoder's coercions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    Text,
    /// 64-bit integer.
    Int64,
    /// 32-bit integer.
    Int32,
    /// Boolean.
    Bool,
    /// UTC timestamp in microseconds.
    Timestamp,
    /// Days since epoch.
    Date,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Int64 => DataType::Int64,
            Kind::Int32 => DataType::Int32,
            Kind::Bool => DataType::Boolean,
            Kind::Timestamp => timestamp_type(),
            Kind::Date => DataType::Date32,
        }
    }
}

/// One column of the raw table: name, kind, nullability, where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// snake_case column name.
    pub name: &'static str,
    /// Scalar kind.
    pub kind: Kind,
    /// Whether the column may be null.
    pub nullable: bool,
    /// Where the value comes from, in words (kept as Arrow field metadata `description`).
    pub doc: &'static str,
}

const fn col(name: &'static str, kind: Kind, nullable: bool, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable,
        doc,
    }
}

use Kind::*;

/// Every column of the raw table, in file order (partition columns last).
pub const COLUMNS: &[Column] = &[
    col(
        "_source",
        Text,
        false,
        "topic (event hub) the record was read from, or the input file for `kvlake convert`",
    ),
    col("_partition", Int32, false, "Kafka partition; 0 for files"),
    col(
        "_offset",
        Int64,
        false,
        "Kafka offset of the message; line number (from 1) for files",
    ),
    col(
        "_record_index",
        Int32,
        false,
        "index of the record inside its message (0-based)",
    ),
    col(
        "_enqueued_time",
        Timestamp,
        true,
        "Event Hubs enqueued time (Kafka message timestamp); null for files",
    ),
    col(
        "time",
        Timestamp,
        false,
        "`time`: when the operation happened, UTC",
    ),
    col(
        "resource_id",
        Text,
        true,
        "`resourceId`: ARM id of the vault, as sent (upper case)",
    ),
    col(
        "operation_name",
        Text,
        false,
        "`operationName`, e.g. SecretGet",
    ),
    col(
        "operation_version",
        Text,
        true,
        "`operationVersion`: REST API version the client asked for",
    ),
    col("category", Text, true, "`category`, normally AuditEvent"),
    col(
        "result_type",
        Text,
        true,
        "`resultType`: often Success even when the HTTP status is 401/403/404",
    ),
    col(
        "result_signature",
        Text,
        true,
        "`resultSignature`: HTTP status text (OK, Forbidden, Not Found, ...)",
    ),
    col("result_description", Text, true, "`resultDescription`"),
    col(
        "duration_ms",
        Int64,
        true,
        "`durationMs`: service-side duration in milliseconds (strings coerced)",
    ),
    col("caller_ip_address", Text, true, "`callerIpAddress`"),
    col("correlation_id", Text, true, "`correlationId`"),
    col(
        "identity_object_id",
        Text,
        true,
        "identity.claim `oid` / .../identity/claims/objectidentifier",
    ),
    col(
        "identity_upn",
        Text,
        true,
        "identity.claim `upn` / .../ws/2005/05/identity/claims/upn",
    ),
    col(
        "identity_unique_name",
        Text,
        true,
        "identity.claim `unique_name` / .../ws/2005/05/identity/claims/name",
    ),
    col(
        "identity_app_id",
        Text,
        true,
        "identity.claim `appid` (application id of the caller)",
    ),
    col(
        "identity_tenant_id",
        Text,
        true,
        "identity.claim `tid` / .../identity/claims/tenantid",
    ),
    col(
        "identity_scope",
        Text,
        true,
        "identity.claim `scp` / .../identity/claims/scope",
    ),
    col(
        "identity_app_id_acr",
        Text,
        true,
        "identity.claim `appidacr`: 0 public client, 1 secret, 2 certificate",
    ),
    col(
        "identity_ip_address",
        Text,
        true,
        "identity.claim `ipaddr`: the address the token was issued to",
    ),
    col(
        "identity_type",
        Text,
        true,
        "identity.claim `idtyp`: user or app",
    ),
    col(
        "identity_managed_identity_id",
        Text,
        true,
        "identity.claim `xms_mirid`: ARM id of a managed identity",
    ),
    col(
        "identity_network_perimeter_ids",
        Text,
        true,
        "identity.claim `xms_az_nwperimid`, JSON array text",
    ),
    col(
        "properties_id",
        Text,
        true,
        "properties.id: URI of the object the request touched",
    ),
    col("request_uri", Text, true, "properties.requestUri"),
    col(
        "http_status_code",
        Int32,
        true,
        "properties.httpStatusCode (strings coerced)",
    ),
    col(
        "client_info",
        Text,
        true,
        "properties.clientInfo: the client's user agent",
    ),
    col(
        "is_access_policy_match",
        Bool,
        true,
        "properties.isAccessPolicyMatch (strings coerced)",
    ),
    col(
        "is_rbac_authorized",
        Bool,
        true,
        "properties.isRbacAuthorized (strings coerced)",
    ),
    col("tls_version", Text, true, "properties.tlsVersion"),
    col(
        "applied_assignment_id",
        Text,
        true,
        "properties.appliedAssignmentId: the RBAC role assignment that allowed the call",
    ),
    col(
        "address_authorization_type",
        Text,
        true,
        "properties.addressAuthorizationType: how the network rule matched",
    ),
    col(
        "trusted_service",
        Text,
        true,
        "properties.trustedService: the trusted Azure service that called",
    ),
    col(
        "secret_properties",
        Text,
        true,
        "properties.secretProperties, JSON text",
    ),
    col(
        "key_properties",
        Text,
        true,
        "properties.keyProperties, JSON text",
    ),
    col(
        "certificate_properties",
        Text,
        true,
        "properties.certificateProperties, JSON text",
    ),
    col(
        "nested_properties",
        Text,
        true,
        "properties.properties, JSON text",
    ),
    col(
        "result_class",
        Text,
        false,
        "derived from httpStatusCode: success (<400), client_error (4xx but 429), throttled (429), server_error (5xx), unknown (no status)",
    ),
    col(
        "subscription_id",
        Text,
        true,
        "derived from resourceId, lower case",
    ),
    col(
        "resource_group",
        Text,
        true,
        "derived from resourceId, lower case",
    ),
    col(
        "vault_name",
        Text,
        true,
        "derived from resourceId (else the request host), lower case",
    ),
    col(
        "object_kind",
        Text,
        true,
        "derived from properties.id or requestUri: secret, key or certificate",
    ),
    col(
        "object_name",
        Text,
        true,
        "derived: name of the secret/key/certificate the request touched",
    ),
    col(
        "object_version",
        Text,
        true,
        "derived: version of the object, when the URI names one",
    ),
    col(
        "extra",
        Text,
        true,
        "fields kvlake does not know, kept verbatim: JSON object keyed by dotted path (e.g. `properties.newField`); null when none",
    ),
    col(
        "date",
        Date,
        false,
        "partition: UTC date of `time` (in the path, not in the files)",
    ),
    col(
        "hour",
        Int32,
        false,
        "partition: UTC hour of `time` (in the path, not in the files)",
    ),
];

fn build_schema(columns: &[Column]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(c.name, c.kind.data_type(), c.nullable).with_metadata(HashMap::from([(
                "description".to_string(),
                c.doc.to_string(),
            )]))
        })
        .collect();
    let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

static RAW: LazyLock<SchemaRef> = LazyLock::new(|| build_schema(COLUMNS));
static RAW_FILE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let cols: Vec<Column> = COLUMNS
        .iter()
        .filter(|c| !PARTITION_COLUMNS.contains(&c.name))
        .copied()
        .collect();
    build_schema(&cols)
});

/// Schema of decoded raw batches: every column, partition columns last.
pub fn raw_schema() -> SchemaRef {
    RAW.clone()
}

/// Schema of raw Parquet files: [`raw_schema`] without the partition columns.
pub fn raw_file_schema() -> SchemaRef {
    RAW_FILE.clone()
}

/// Position of a column in [`raw_schema`]; panics only on a name not in [`COLUMNS`],
/// which is a programming error caught by the tests.
pub fn column_index(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no raw column {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_spark_safe() {
        let mut seen = std::collections::HashSet::new();
        for c in COLUMNS {
            assert!(seen.insert(c.name), "duplicate column {}", c.name);
            assert!(
                c.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{}",
                c.name
            );
        }
        let file = raw_file_schema();
        assert_eq!(file.fields().len() + PARTITION_COLUMNS.len(), COLUMNS.len());
        assert!(
            file.fields()
                .iter()
                .all(|f| !PARTITION_COLUMNS.contains(&f.name().as_str()))
        );
        assert_eq!(
            raw_schema()
                .metadata()
                .get(SCHEMA_VERSION_KEY)
                .map(String::as_str),
            Some("1")
        );
    }
}
