//! The AuditEvent decoder: message bytes in, raw rows and dead-letter rows out.
//! Records in = raw rows + dead-letter rows, always; it never panics on input.
//!
//! A message is the diagnostic-settings envelope `{"records": [...]}`, a bare record, or
//! several JSON values one after another (JSON lines, the storage-archive `PT1H.json`
//! format). Envelopes take a fast path: one pass splits the `records` array into raw
//! slices, a second decodes each record straight into column values, borrowing strings
//! from the input where they hold no escapes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::deadletter::{Reason, dead_letter_schema};
use crate::raw::{COLUMNS, Kind, raw_schema};
use crate::resource::{parse_object_uri, parse_resource_id};
use crate::time::{day_and_hour, parse_timestamp_micros};

/// Where a message came from: written to every row it produces.
#[derive(Debug, Clone, Copy)]
pub struct SourceCoords<'a> {
    /// Topic, or input file.
    pub source: &'a str,
    /// Kafka partition; 0 for files.
    pub partition: i32,
    /// Kafka offset; line number for files.
    pub offset: i64,
    /// Event Hubs enqueued time (Kafka timestamp), microseconds UTC.
    pub enqueued_time_micros: Option<i64>,
}

/// Decoder settings.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Messages above this size are dead-lettered as `too_large` (Event Hubs caps messages at 1 MB).
    pub max_message_bytes: usize,
    /// Written to `seen_time` of dead letters; the caller's clock, since this crate has none.
    pub seen_time_micros: i64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_message_bytes: 1024 * 1024,
            seen_time_micros: 0,
        }
    }
}

/// What one call to [`Decoder::finish`] returns.
#[derive(Debug)]
pub struct DecodeOutput {
    /// Rows of the raw table ([`crate::raw::raw_schema`]).
    pub raw: RecordBatch,
    /// Rows of the dead-letter table ([`crate::deadletter::dead_letter_schema`]).
    pub dead_letter: RecordBatch,
}

/// How one message was split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageOutcome {
    /// Raw rows it produced.
    pub raw_rows: usize,
    /// Dead-letter rows it produced.
    pub dead_letter_rows: usize,
}

/// Column positions in [`COLUMNS`]; the `column_positions_match_schema` test keeps them true.
#[allow(missing_docs)]
pub(crate) mod c {
    pub const SOURCE: usize = 0;
    pub const PARTITION: usize = 1;
    pub const OFFSET: usize = 2;
    pub const RECORD_INDEX: usize = 3;
    pub const ENQUEUED_TIME: usize = 4;
    pub const TIME: usize = 5;
    pub const RESOURCE_ID: usize = 6;
    pub const OPERATION_NAME: usize = 7;
    pub const OPERATION_VERSION: usize = 8;
    pub const CATEGORY: usize = 9;
    pub const RESULT_TYPE: usize = 10;
    pub const RESULT_SIGNATURE: usize = 11;
    pub const RESULT_DESCRIPTION: usize = 12;
    pub const DURATION_MS: usize = 13;
    pub const CALLER_IP_ADDRESS: usize = 14;
    pub const CORRELATION_ID: usize = 15;
    pub const IDENTITY_OBJECT_ID: usize = 16;
    pub const IDENTITY_UPN: usize = 17;
    pub const IDENTITY_UNIQUE_NAME: usize = 18;
    pub const IDENTITY_APP_ID: usize = 19;
    pub const IDENTITY_TENANT_ID: usize = 20;
    pub const IDENTITY_SCOPE: usize = 21;
    pub const IDENTITY_APP_ID_ACR: usize = 22;
    pub const IDENTITY_IP_ADDRESS: usize = 23;
    pub const IDENTITY_TYPE: usize = 24;
    pub const IDENTITY_MANAGED_IDENTITY_ID: usize = 25;
    pub const IDENTITY_NETWORK_PERIMETER_IDS: usize = 26;
    pub const PROPERTIES_ID: usize = 27;
    pub const REQUEST_URI: usize = 28;
    pub const HTTP_STATUS_CODE: usize = 29;
    pub const CLIENT_INFO: usize = 30;
    pub const IS_ACCESS_POLICY_MATCH: usize = 31;
    pub const IS_RBAC_AUTHORIZED: usize = 32;
    pub const TLS_VERSION: usize = 33;
    pub const APPLIED_ASSIGNMENT_ID: usize = 34;
    pub const ADDRESS_AUTHORIZATION_TYPE: usize = 35;
    pub const TRUSTED_SERVICE: usize = 36;
    pub const SECRET_PROPERTIES: usize = 37;
    pub const KEY_PROPERTIES: usize = 38;
    pub const CERTIFICATE_PROPERTIES: usize = 39;
    pub const NESTED_PROPERTIES: usize = 40;
    pub const RESULT_CLASS: usize = 41;
    pub const SUBSCRIPTION_ID: usize = 42;
    pub const RESOURCE_GROUP: usize = 43;
    pub const VAULT_NAME: usize = 44;
    pub const OBJECT_KIND: usize = 45;
    pub const OBJECT_NAME: usize = 46;
    pub const OBJECT_VERSION: usize = 47;
    pub const EXTRA: usize = 48;
    pub const DATE: usize = 49;
    pub const HOUR: usize = 50;
    pub const COUNT: usize = 51;
}

/// The source field name of a column, for error messages.
fn source_name(col: usize) -> &'static str {
    match col {
        c::TIME => "time",
        c::OPERATION_NAME => "operationName",
        c::DURATION_MS => "durationMs",
        c::HTTP_STATUS_CODE => "properties.httpStatusCode",
        c::IS_ACCESS_POLICY_MATCH => "properties.isAccessPolicyMatch",
        c::IS_RBAC_AUTHORIZED => "properties.isRbacAuthorized",
        _ => COLUMNS[col].name,
    }
}

/// A JSON value as it arrived, before coercion to its column's type.
#[derive(Debug, Clone, Default, PartialEq)]
enum Flex<'a> {
    #[default]
    Absent,
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Cow<'a, str>),
    /// An object or array, as JSON text.
    Compound(&'a str),
}

/// Reads a raw JSON value cheaply: strings without escapes are borrowed, numbers stay text.
fn flex(raw: &RawValue) -> Flex<'_> {
    let t = raw.get();
    match t.as_bytes().first() {
        Some(b'"') => {
            let inner = &t[1..t.len() - 1];
            if inner.contains('\\') {
                // Valid JSON by construction, so this only fails on lone surrogates.
                serde_json::from_str::<String>(t)
                    .map_or(Flex::Compound(t), |s| Flex::Str(Cow::Owned(s)))
            } else {
                Flex::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'n') => Flex::Null,
        Some(b't') => Flex::Bool(true),
        Some(b'f') => Flex::Bool(false),
        Some(b'{' | b'[') => Flex::Compound(t),
        _ => Flex::Num(t),
    }
}

/// One record's values, indexed by column.
struct Row<'a> {
    vals: Vec<Flex<'a>>,
    extra: String,
    /// Set when identity/properties/claim is neither an object nor null.
    bad_shape: Option<&'static str>,
}

impl<'a> Row<'a> {
    fn new() -> Self {
        Row {
            vals: vec![Flex::Absent; c::COUNT],
            extra: String::new(),
            bad_shape: None,
        }
    }

    fn push_extra(&mut self, prefix: &str, key: &str, raw: &RawValue) {
        self.extra
            .push(if self.extra.is_empty() { '{' } else { ',' });
        let path = format!("{prefix}{key}");
        // Key text comes from JSON, so it may need escaping again.
        self.extra
            .push_str(&serde_json::to_string(&path).unwrap_or_else(|_| "\"?\"".into()));
        self.extra.push(':');
        self.extra.push_str(raw.get());
    }
}

/// Reads object keys, borrowing them from the input when they have no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Which part of a record a map visitor is filling.
#[derive(Clone, Copy)]
enum Section {
    Top,
    Identity,
    Claims,
    Properties,
}

fn column_of(section: Section, key: &str) -> Option<usize> {
    Some(match section {
        Section::Top => match key {
            "time" => c::TIME,
            "resourceId" => c::RESOURCE_ID,
            "operationName" => c::OPERATION_NAME,
            "operationVersion" => c::OPERATION_VERSION,
            "category" => c::CATEGORY,
            "resultType" => c::RESULT_TYPE,
            "resultSignature" => c::RESULT_SIGNATURE,
            "resultDescription" => c::RESULT_DESCRIPTION,
            "durationMs" => c::DURATION_MS,
            "callerIpAddress" => c::CALLER_IP_ADDRESS,
            "correlationId" => c::CORRELATION_ID,
            _ => return None,
        },
        Section::Claims => match key {
            "oid" | "http://schemas.microsoft.com/identity/claims/objectidentifier" => {
                c::IDENTITY_OBJECT_ID
            }
            "upn" | "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn" => c::IDENTITY_UPN,
            "unique_name" | "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name" => {
                c::IDENTITY_UNIQUE_NAME
            }
            "appid" | "azp" | "http://schemas.microsoft.com/identity/claims/appid" => {
                c::IDENTITY_APP_ID
            }
            "tid" | "http://schemas.microsoft.com/identity/claims/tenantid" => {
                c::IDENTITY_TENANT_ID
            }
            "scp" | "http://schemas.microsoft.com/identity/claims/scope" => c::IDENTITY_SCOPE,
            "appidacr" | "azpacr" => c::IDENTITY_APP_ID_ACR,
            "ipaddr" | "http://schemas.microsoft.com/claims/ipaddress" => c::IDENTITY_IP_ADDRESS,
            "idtyp" => c::IDENTITY_TYPE,
            "xms_mirid" => c::IDENTITY_MANAGED_IDENTITY_ID,
            "xms_az_nwperimid" => c::IDENTITY_NETWORK_PERIMETER_IDS,
            _ => return None,
        },
        Section::Properties => match key {
            "id" => c::PROPERTIES_ID,
            "requestUri" => c::REQUEST_URI,
            "httpStatusCode" => c::HTTP_STATUS_CODE,
            "clientInfo" => c::CLIENT_INFO,
            "isAccessPolicyMatch" => c::IS_ACCESS_POLICY_MATCH,
            "isRbacAuthorized" => c::IS_RBAC_AUTHORIZED,
            "tlsVersion" => c::TLS_VERSION,
            "appliedAssignmentId" => c::APPLIED_ASSIGNMENT_ID,
            "addressAuthorizationType" => c::ADDRESS_AUTHORIZATION_TYPE,
            "trustedService" => c::TRUSTED_SERVICE,
            "secretProperties" => c::SECRET_PROPERTIES,
            "keyProperties" => c::KEY_PROPERTIES,
            "certificateProperties" => c::CERTIFICATE_PROPERTIES,
            "properties" => c::NESTED_PROPERTIES,
            _ => return None,
        },
        Section::Identity => return None,
    })
}

/// Fills a [`Row`] from one JSON object (a record, or its identity/claim/properties).
struct SectionSeed<'r, 'a> {
    row: &'r mut Row<'a>,
    section: Section,
}

impl<'de> DeserializeSeed<'de> for SectionSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SectionSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let (row, section) = (self.row, self.section);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match (section, key.as_ref()) {
                (Section::Top, "identity") => map.next_value_seed(SectionSeed {
                    row: &mut *row,
                    section: Section::Identity,
                })?,
                (Section::Top, "properties") => map.next_value_seed(SectionSeed {
                    row: &mut *row,
                    section: Section::Properties,
                })?,
                (Section::Identity, "claim") => map.next_value_seed(SectionSeed {
                    row: &mut *row,
                    section: Section::Claims,
                })?,
                (_, k) => {
                    let raw: &'de RawValue = map.next_value()?;
                    match column_of(section, k) {
                        Some(col) => row.vals[col] = flex(raw),
                        None => {
                            let prefix = match section {
                                Section::Top => "",
                                Section::Identity => "identity.",
                                Section::Claims => "identity.claim.",
                                Section::Properties => "properties.",
                            };
                            row.push_extra(prefix, k, raw);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if !v.is_empty() {
            self.shape_error();
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.shape_error();
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.shape_error();
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.shape_error();
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.shape_error();
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.shape_error();
        Ok(())
    }
}

impl SectionSeed<'_, '_> {
    fn shape_error(self) {
        self.row.bad_shape.get_or_insert(match self.section {
            Section::Top => "record",
            Section::Identity => "identity",
            Section::Claims => "identity.claim",
            Section::Properties => "properties",
        });
    }
}

/// What the top of a message holds: an envelope's records, or a record of its own.
enum Top<'a> {
    Envelope(Vec<&'a RawValue>),
    NotEnvelope,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Top<'de>, M::Error> {
                let mut out = Top::NotEnvelope;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if key == "records" {
                        if let RecordsList(Some(list)) = map.next_value()? {
                            out = Top::Envelope(list);
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The `records` member: `Some` when it is an array.
struct RecordsList<'a>(Option<Vec<&'a RawValue>>);

impl<'de> Deserialize<'de> for RecordsList<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RecordsList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some(r) = seq.next_element::<&'de RawValue>()? {
                    v.push(r);
                }
                Ok(RecordsList(Some(v)))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(RecordsList(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(RecordsList(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RecordsList(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RecordsList(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RecordsList(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RecordsList(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RecordsList(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a record was refused, before it becomes a dead-letter row.
struct Refusal {
    reason: Reason,
    message: String,
}

fn uncoercible(col: usize, what: &str) -> Refusal {
    Refusal {
        reason: Reason::UncoercibleValue,
        message: format!(
            "field `{}` holds a value that cannot be read as {what}",
            source_name(col)
        ),
    }
}

/// Coerced values ready to append; text borrowed from the message where possible.
enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

fn coerce<'a>(col: usize, kind: Kind, v: Flex<'a>) -> Result<Cell<'a>, Refusal> {
    Ok(match (kind, v) {
        (_, Flex::Absent | Flex::Null) => Cell::Null,
        (Kind::Text, Flex::Str(s)) => Cell::Text(s),
        (Kind::Text, Flex::Num(n) | Flex::Compound(n)) => Cell::Text(Cow::Borrowed(n)),
        (Kind::Text, Flex::Bool(b)) => Cell::Text(Cow::Borrowed(if b { "true" } else { "false" })),
        (Kind::Int64 | Kind::Int32, Flex::Num(n)) => {
            Cell::Int(parse_int(n).ok_or_else(|| uncoercible(col, "an integer"))?)
        }
        (Kind::Int64 | Kind::Int32, Flex::Str(s)) if s.trim().is_empty() => Cell::Null,
        (Kind::Int64 | Kind::Int32, Flex::Str(s)) => {
            Cell::Int(parse_int(s.trim()).ok_or_else(|| uncoercible(col, "an integer"))?)
        }
        (Kind::Bool, Flex::Bool(b)) => Cell::Bool(b),
        (Kind::Bool, Flex::Num("0")) => Cell::Bool(false),
        (Kind::Bool, Flex::Num("1")) => Cell::Bool(true),
        (Kind::Bool, Flex::Str(s)) => match s.trim() {
            "" => Cell::Null,
            t if t.eq_ignore_ascii_case("true") || t == "1" => Cell::Bool(true),
            t if t.eq_ignore_ascii_case("false") || t == "0" => Cell::Bool(false),
            _ => return Err(uncoercible(col, "a boolean")),
        },
        (Kind::Int64 | Kind::Int32, _) => return Err(uncoercible(col, "an integer")),
        (Kind::Bool, _) => return Err(uncoercible(col, "a boolean")),
        (Kind::Timestamp | Kind::Date, _) => return Err(uncoercible(col, "a timestamp")),
    })
}

/// An integer, or a float with no fractional part (`"23"`, `23`, `"23.0"`, `2.3e1`).
fn parse_int(s: &str) -> Option<i64> {
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// Column builders for the raw table.
enum ColumnBuilder {
    Text(StringBuilder),
    Int64(Int64Builder),
    Int32(Int32Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl ColumnBuilder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text => ColumnBuilder::Text(StringBuilder::new()),
            Kind::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            Kind::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            Kind::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            Kind::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            Kind::Date => ColumnBuilder::Date(Date32Builder::new()),
        }
    }

    fn append(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Text(b), Cell::Text(s)) => b.append_value(s),
            (ColumnBuilder::Int64(b), Cell::Int(v)) => b.append_value(*v),
            (ColumnBuilder::Int32(b), Cell::Int(v)) => b.append_option(i32::try_from(*v).ok()),
            (ColumnBuilder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Timestamp(b), Cell::Int(v)) => b.append_value(*v),
            (ColumnBuilder::Date(b), Cell::Int(v)) => b.append_option(i32::try_from(*v).ok()),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
        }
    }
}

/// Column builders for the dead-letter table.
struct DeadLetterBuilders {
    source: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    record_index: Int32Builder,
    enqueued_time: TimestampMicrosecondBuilder,
    reason: StringBuilder,
    message: StringBuilder,
    original: BinaryBuilder,
    seen_time: TimestampMicrosecondBuilder,
    date: Date32Builder,
    hour: Int32Builder,
    rows: usize,
}

impl DeadLetterBuilders {
    fn new() -> Self {
        DeadLetterBuilders {
            source: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            record_index: Int32Builder::new(),
            enqueued_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            reason: StringBuilder::new(),
            message: StringBuilder::new(),
            original: BinaryBuilder::new(),
            seen_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            date: Date32Builder::new(),
            hour: Int32Builder::new(),
            rows: 0,
        }
    }

    fn finish(&mut self) -> RecordBatch {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.record_index.finish()),
            Arc::new(self.enqueued_time.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.message.finish()),
            Arc::new(self.original.finish()),
            Arc::new(self.seen_time.finish()),
            Arc::new(self.date.finish()),
            Arc::new(self.hour.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(dead_letter_schema(), cols)
            .expect("dead-letter builders match their schema")
    }
}

/// Decodes messages into column builders; [`Decoder::finish`] hands out the batches.
pub struct Decoder {
    options: DecodeOptions,
    columns: Vec<ColumnBuilder>,
    raw_rows: usize,
    dead: DeadLetterBuilders,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("options", &self.options)
            .field("raw_rows", &self.raw_rows)
            .field("dead_letter_rows", &self.dead.rows)
            .finish()
    }
}

impl Decoder {
    /// A decoder with empty builders.
    pub fn new(options: DecodeOptions) -> Self {
        Decoder {
            options,
            columns: COLUMNS
                .iter()
                .map(|col| ColumnBuilder::new(col.kind))
                .collect(),
            raw_rows: 0,
            dead: DeadLetterBuilders::new(),
        }
    }

    /// Sets the time written to `seen_time` of the dead letters that follow.
    pub fn set_seen_time(&mut self, micros: i64) {
        self.options.seen_time_micros = micros;
    }

    /// Raw rows buffered since the last [`Decoder::finish`].
    pub fn raw_rows(&self) -> usize {
        self.raw_rows
    }

    /// Dead-letter rows buffered since the last [`Decoder::finish`].
    pub fn dead_letter_rows(&self) -> usize {
        self.dead.rows
    }

    /// Decodes one message; every record in it becomes a raw row or a dead-letter row.
    pub fn decode_message(&mut self, bytes: &[u8], coords: &SourceCoords<'_>) -> MessageOutcome {
        let before = (self.raw_rows, self.dead.rows);
        self.decode_inner(bytes, coords);
        MessageOutcome {
            raw_rows: self.raw_rows - before.0,
            dead_letter_rows: self.dead.rows - before.1,
        }
    }

    fn decode_inner(&mut self, bytes: &[u8], coords: &SourceCoords<'_>) {
        if bytes.len() > self.options.max_message_bytes {
            let msg = format!(
                "message of {} bytes is above the limit of {} bytes (max_message_bytes)",
                bytes.len(),
                self.options.max_message_bytes
            );
            return self.dead_letter(coords, None, Reason::TooLarge, &msg, bytes);
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!(
                    "message is not valid UTF-8 (first bad byte at {})",
                    e.valid_up_to()
                );
                return self.dead_letter(coords, None, Reason::NotUtf8, &msg, bytes);
            }
        };
        // Fast path: a single diagnostic-settings envelope.
        if let Ok(Top::Envelope(records)) = serde_json::from_str::<Top<'_>>(text) {
            if records.is_empty() {
                return self.dead_letter(
                    coords,
                    None,
                    Reason::Empty,
                    "envelope holds no records",
                    bytes,
                );
            }
            for (i, r) in records.iter().enumerate() {
                self.decode_record(r, coords, i as i32);
            }
            return;
        }
        // General path: one or more JSON values (JSON lines), each an envelope or a record.
        let values: Result<Vec<&RawValue>, _> = serde_json::Deserializer::from_str(text)
            .into_iter::<&RawValue>()
            .collect();
        let values = match values {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("message is not valid JSON: {}", strip_value(&e));
                return self.dead_letter(coords, None, Reason::InvalidJson, &msg, bytes);
            }
        };
        if values.is_empty() {
            return self.dead_letter(
                coords,
                None,
                Reason::Empty,
                "message holds no JSON value",
                bytes,
            );
        }
        let mut index = 0i32;
        for v in values {
            // Only an object that mentions "records" can be an envelope: skip the probe otherwise.
            let maybe_envelope = v.get().contains("\"records\"");
            let records = match maybe_envelope.then(|| serde_json::from_str::<Top<'_>>(v.get())) {
                Some(Ok(Top::Envelope(records))) => records,
                _ => vec![v],
            };
            for r in records {
                self.decode_record(r, coords, index);
                index += 1;
            }
        }
    }

    fn decode_record(&mut self, raw: &RawValue, coords: &SourceCoords<'_>, index: i32) {
        if !raw.get().starts_with('{') {
            let msg = format!("record {index} is not a JSON object");
            return self.dead_letter(
                coords,
                Some(index),
                Reason::NotAnObject,
                &msg,
                raw.get().as_bytes(),
            );
        }
        let mut row = Row::new();
        let parsed = SectionSeed {
            row: &mut row,
            section: Section::Top,
        }
        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()));
        let result = match parsed {
            // Cannot happen for a slice that already parsed as JSON; kept as a dead letter, not a panic.
            Err(e) => Err(Refusal {
                reason: Reason::InvalidJson,
                message: strip_value(&e),
            }),
            Ok(()) => self.append_row(row, coords, index),
        };
        if let Err(r) = result {
            let msg = format!("record {index}: {}", r.message);
            self.dead_letter(coords, Some(index), r.reason, &msg, raw.get().as_bytes());
        }
    }

    /// Validates and coerces every value first, then appends: a refused record leaves
    /// no partial row behind.
    fn append_row(
        &mut self,
        mut row: Row<'_>,
        coords: &SourceCoords<'_>,
        index: i32,
    ) -> Result<(), Refusal> {
        if let Some(part) = row.bad_shape {
            return Err(Refusal {
                reason: Reason::UncoercibleValue,
                message: format!("field `{part}` is neither an object nor null"),
            });
        }
        let time = match std::mem::take(&mut row.vals[c::TIME]) {
            Flex::Absent | Flex::Null => return Err(missing("time")),
            Flex::Str(s) if s.trim().is_empty() => return Err(missing("time")),
            Flex::Str(s) => {
                parse_timestamp_micros(&s).ok_or_else(|| uncoercible(c::TIME, "a timestamp"))?
            }
            _ => return Err(uncoercible(c::TIME, "a timestamp")),
        };
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(c::COUNT);
        for (col, v) in row.vals.drain(..).enumerate() {
            cells.push(match col {
                c::TIME => Cell::Int(time),
                _ => coerce(col, COLUMNS[col].kind, v)?,
            });
        }
        match &cells[c::OPERATION_NAME] {
            Cell::Text(s) if !s.trim().is_empty() => {}
            _ => return Err(missing("operationName")),
        }
        cells[c::PARTITION] = Cell::Int(i64::from(coords.partition));
        cells[c::OFFSET] = Cell::Int(coords.offset);
        cells[c::RECORD_INDEX] = Cell::Int(i64::from(index));
        cells[c::ENQUEUED_TIME] = coords.enqueued_time_micros.map_or(Cell::Null, Cell::Int);
        derive(&mut cells, time);
        if !row.extra.is_empty() {
            row.extra.push('}');
            cells[c::EXTRA] = Cell::Text(Cow::Owned(std::mem::take(&mut row.extra)));
        }
        for (col, (builder, cell)) in self.columns.iter_mut().zip(&cells).enumerate() {
            match (col, &mut *builder) {
                // Borrowed from the caller, so appended directly rather than copied into a cell.
                (c::SOURCE, ColumnBuilder::Text(b)) => b.append_value(coords.source),
                _ => builder.append(cell),
            }
        }
        self.raw_rows += 1;
        Ok(())
    }

    fn dead_letter(
        &mut self,
        coords: &SourceCoords<'_>,
        index: Option<i32>,
        reason: Reason,
        message: &str,
        original: &[u8],
    ) {
        let d = &mut self.dead;
        d.source.append_value(coords.source);
        d.partition.append_value(coords.partition);
        d.offset.append_value(coords.offset);
        d.record_index.append_option(index);
        d.enqueued_time.append_option(coords.enqueued_time_micros);
        d.reason.append_value(reason.code());
        d.message.append_value(message);
        d.original.append_value(original);
        d.seen_time.append_value(self.options.seen_time_micros);
        let (day, hour) = day_and_hour(
            coords
                .enqueued_time_micros
                .unwrap_or(self.options.seen_time_micros),
        );
        d.date.append_value(day);
        d.hour.append_value(hour);
        d.rows += 1;
    }

    /// Hands out everything decoded so far and starts empty builders.
    pub fn finish(&mut self) -> DecodeOutput {
        let cols: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        self.raw_rows = 0;
        DecodeOutput {
            raw: RecordBatch::try_new(raw_schema(), cols).expect("raw builders match their schema"),
            dead_letter: self.dead.finish(),
        }
    }
}

fn missing(field: &str) -> Refusal {
    Refusal {
        reason: Reason::MissingField,
        message: format!("required field `{field}` is missing, null or empty"),
    }
}

/// serde_json errors quote no input, but keep only the category and position anyway.
fn strip_value(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Fills the derived columns from the coerced ones.
fn derive(cells: &mut [Cell<'_>], time: i64) {
    cells[c::RESULT_CLASS] = Cell::Text(Cow::Borrowed(match cells[c::HTTP_STATUS_CODE] {
        Cell::Int(429) => "throttled",
        Cell::Int(s) if s < 400 => "success",
        Cell::Int(s) if s < 500 => "client_error",
        Cell::Int(_) => "server_error",
        _ => "unknown",
    }));
    if let Cell::Text(id) = &cells[c::RESOURCE_ID] {
        let r = parse_resource_id(id);
        let set = |v: Option<String>| v.map_or(Cell::Null, |s| Cell::Text(Cow::Owned(s)));
        cells[c::SUBSCRIPTION_ID] = set(r.subscription_id);
        cells[c::RESOURCE_GROUP] = set(r.resource_group);
        cells[c::VAULT_NAME] = set(r.vault_name);
    }
    let uri = match (&cells[c::PROPERTIES_ID], &cells[c::REQUEST_URI]) {
        (Cell::Text(id), _) if parse_object_uri(id).kind.is_some() => Some(id.to_string()),
        (_, Cell::Text(u)) => Some(u.to_string()),
        (Cell::Text(id), _) => Some(id.to_string()),
        _ => None,
    };
    if let Some(uri) = uri {
        let o = parse_object_uri(&uri);
        if matches!(cells[c::VAULT_NAME], Cell::Null)
            && let Some(v) = o.vault_from_host
        {
            cells[c::VAULT_NAME] = Cell::Text(Cow::Owned(v));
        }
        let own = |v: Option<&str>| v.map_or(Cell::Null, |s| Cell::Text(Cow::Owned(s.to_owned())));
        cells[c::OBJECT_KIND] = o.kind.map_or(Cell::Null, |k| Cell::Text(Cow::Borrowed(k)));
        cells[c::OBJECT_NAME] = own(o.name);
        cells[c::OBJECT_VERSION] = own(o.version);
    }
    let (day, hour) = day_and_hour(time);
    cells[c::DATE] = Cell::Int(i64::from(day));
    cells[c::HOUR] = Cell::Int(i64::from(hour));
}

#[cfg(test)]
mod tests;
