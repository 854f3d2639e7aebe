//! The AuditEvent decoder: message bytes in, raw rows and dead-letter rows out.
//! Records in = raw rows + dead-letter rows, always; it never panics on input.
//!
//! A message is the diagnostic-settings envelope `{"records": [...]}`, a bare record, or
//! several JSON values one after another (JSON lines, the storage-archive `PT1H.json`
//! format); a UTF-8 byte-order mark before it is skipped. Envelopes take a fast path: one
//! pass splits the `records` array into raw slices, a second decodes each record straight
//! into column values, borrowing strings from the input where they hold no escapes.
//!
//! Each record may take any of the [`Shape`]s of the same Key Vault `AuditEvent`: the
//! diagnostic-settings record, a Log Analytics `AzureDiagnostics` or `AZKVAuditLogs` row,
//! or the Managed HSM record. The shape is told per record from its keys (see
//! [`shape`] for the rules and Microsoft's references), or forced with [`Decoder::set_shape`];
//! every shape fills the same columns.

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
use crate::resource::resource_id_parts;
use crate::time::{day_and_hour, parse_timestamp_micros};

mod fast;
mod scan;
pub mod shape;
mod uri;

use shape::{ANY, Evidence, Slot, claim_slot, is_claim_namespace, property_slot, top_slot};
pub use shape::{Shape, UnknownShape};

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
    // Rows hold the columns read from a record only; the tests check the schema's count.
    #[cfg_attr(not(test), allow(dead_code))]
    pub const COUNT: usize = 51;
}

/// The first derived column: every column from here on is computed, not read.
const FIRST_DERIVED: usize = c::RESULT_CLASS;

/// The columns whose values can fail coercion: their source field is remembered for messages.
const NAMED: [usize; 5] = [
    c::TIME,
    c::DURATION_MS,
    c::HTTP_STATUS_CODE,
    c::IS_ACCESS_POLICY_MATCH,
    c::IS_RBAC_AUTHORIZED,
];

/// The columns read from a record that are not text, in column order: the only ones whose
/// values are coerced (and can fail) before a row is appended. `time` is parsed on its own.
const COERCED: [usize; 4] = {
    let mut out = [0; 4];
    let (mut col, mut n) = (0, 0);
    while col < FIRST_DERIVED {
        if !matches!(COLUMNS[col].kind, Kind::Text) && col != c::TIME {
            // Filled from the message's coordinates, never from a record's keys.
            if !matches!(
                col,
                c::PARTITION | c::OFFSET | c::RECORD_INDEX | c::ENQUEUED_TIME
            ) {
                out[n] = col;
                n += 1;
            }
        }
        col += 1;
    }
    assert!(
        n == out.len(),
        "COERCED lists every non-text column a record fills"
    );
    out
};

/// Each column's place in [`NAMED`], if it is there: a lookup per value set, not a search.
const NAMED_INDEX: [Option<u8>; FIRST_DERIVED] = {
    let mut index = [None; FIRST_DERIVED];
    let mut i = 0;
    while i < NAMED.len() {
        index[NAMED[i]] = Some(i as u8);
        i += 1;
    }
    index
};

/// A JSON value as it arrived, before coercion to its column's type.
#[derive(Debug, Clone, Default, PartialEq)]
enum Flex<'a> {
    #[default]
    Absent,
    Null,
    Bool(bool),
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
    /// An object or array, as JSON text.
    Compound(Cow<'a, str>),
}

impl Flex<'_> {
    fn into_owned(self) -> Flex<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        match self {
            Flex::Absent => Flex::Absent,
            Flex::Null => Flex::Null,
            Flex::Bool(b) => Flex::Bool(b),
            Flex::Num(n) => Flex::Num(own(n)),
            Flex::Str(s) => Flex::Str(own(s)),
            Flex::Compound(t) => Flex::Compound(own(t)),
        }
    }

    /// Null or an empty string: how Log Analytics writes a cell that has no value.
    fn is_empty(&self) -> bool {
        match self {
            Flex::Absent | Flex::Null => true,
            Flex::Str(s) => s.is_empty(),
            _ => false,
        }
    }

    /// The value as JSON text again.
    fn json(&self) -> Cow<'_, str> {
        match self {
            Flex::Absent | Flex::Null => Cow::Borrowed("null"),
            Flex::Bool(true) => Cow::Borrowed("true"),
            Flex::Bool(false) => Cow::Borrowed("false"),
            Flex::Num(n) | Flex::Compound(n) => Cow::Borrowed(n),
            Flex::Str(s) => {
                Cow::Owned(serde_json::to_string(s.as_ref()).unwrap_or_else(|_| "null".into()))
            }
        }
    }

    fn to_value(&self) -> serde_json::Value {
        match self {
            Flex::Absent | Flex::Null => serde_json::Value::Null,
            Flex::Bool(b) => serde_json::Value::Bool(*b),
            Flex::Str(s) => serde_json::Value::String(s.to_string()),
            Flex::Num(t) | Flex::Compound(t) => {
                serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.to_string()))
            }
        }
    }
}

/// Reads a raw JSON value cheaply: strings without escapes are borrowed, numbers stay text.
fn flex(raw: &RawValue) -> Flex<'_> {
    flex_text(raw.get())
}

/// [`flex`] on the text of a JSON value.
fn flex_text(t: &str) -> Flex<'_> {
    match t.as_bytes().first() {
        Some(b'"') => {
            let inner = &t[1..t.len() - 1];
            if inner.contains('\\') {
                escaped_str(t)
            } else {
                Flex::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'n') => Flex::Null,
        Some(b't') => Flex::Bool(true),
        Some(b'f') => Flex::Bool(false),
        Some(b'{' | b'[') => Flex::Compound(Cow::Borrowed(t)),
        _ => Flex::Num(Cow::Borrowed(t)),
    }
}

/// A JSON string with escapes, quotes included.
fn escaped_str(t: &str) -> Flex<'_> {
    // Valid JSON by construction, so this only fails on lone surrogates.
    serde_json::from_str::<String>(t).map_or(Flex::Compound(Cow::Borrowed(t)), |s| {
        Flex::Str(Cow::Owned(s))
    })
}

/// A member of a flattened `AzureDiagnostics` object: its column, its key, where the
/// member path is in the key, and its value.
type FlatMember<'a> = (usize, Cow<'a, str>, (usize, usize), Flex<'a>);

/// One record's values, indexed by column.
struct Row<'a> {
    vals: Vec<Flex<'a>>,
    /// Fields kvlake does not know: `"path":value` pairs, comma-separated, no braces yet.
    extra: String,
    /// The same for unknown fields that are null or empty: dropped for Log Analytics rows,
    /// whose every row carries every column of the table, most of them empty.
    extra_empty: String,
    /// Set when identity/properties/claim is neither an object, JSON text of one, nor null.
    bad_shape: Option<String>,
    /// The field each [`NAMED`] column came from (path, key), for error messages.
    names: [Option<(Cow<'static, str>, Cow<'a, str>)>; NAMED.len()],
    time_generated: Option<Flex<'a>>,
    la_resource_id: Option<Flex<'a>>,
    flat: Vec<FlatMember<'a>>,
    ev: Evidence,
}

impl<'a> Row<'a> {
    fn new() -> Self {
        Row::with_vals(vec![Flex::Absent; FIRST_DERIVED])
    }

    /// A row over `vals`, which holds [`FIRST_DERIVED`] absent values (the columns read
    /// from a record; the derived ones are computed on the way into the builders).
    fn with_vals(vals: Vec<Flex<'a>>) -> Self {
        Row {
            vals,
            extra: String::new(),
            extra_empty: String::new(),
            bad_shape: None,
            names: Default::default(),
            time_generated: None,
            la_resource_id: None,
            flat: Vec::new(),
            ev: Evidence::default(),
        }
    }

    /// Sets a column. An empty value (null, `""`) never replaces a value: two names can
    /// feed one column (`identity_claim_oid_g` and its long form in one `AzureDiagnostics`
    /// row), and a Log Analytics row carries both, one of them empty.
    // A `&Cow` so that the usual static paths are kept by copying a pointer, not the text.
    #[allow(clippy::ptr_arg)]
    fn set(&mut self, col: usize, v: Flex<'a>, path: &Cow<'static, str>, key: Cow<'a, str>) {
        if v.is_empty() && !self.vals[col].is_empty() {
            return;
        }
        if let Some(&Some(i)) = NAMED_INDEX.get(col) {
            self.names[usize::from(i)] = Some((path.clone(), key));
        }
        put(&mut self.vals[col], v);
    }

    /// [`Row::set`] of a string without escapes.
    #[allow(clippy::ptr_arg)]
    #[inline]
    fn set_str(&mut self, col: usize, v: &'a str, path: &Cow<'static, str>, key: Cow<'a, str>) {
        if v.is_empty() && !self.vals[col].is_empty() {
            return;
        }
        if let Some(&Some(i)) = NAMED_INDEX.get(col) {
            self.names[usize::from(i)] = Some((path.clone(), key));
        }
        put(&mut self.vals[col], Flex::Str(Cow::Borrowed(v)));
    }

    fn push_extra(&mut self, path: &str, key: &str, v: &Flex<'_>) {
        let buf = if v.is_empty() {
            &mut self.extra_empty
        } else {
            &mut self.extra
        };
        if !buf.is_empty() {
            buf.push(',');
        }
        // Key text comes from JSON, so it may need escaping again.
        push_json_string(buf, path, key);
        buf.push(':');
        match v {
            Flex::Str(t) => push_json_string(buf, "", t),
            _ => buf.push_str(&v.json()),
        }
    }

    /// [`Row::push_extra`] of a value whose JSON text is `raw` as it stands in the message
    /// (a string without escapes, quotes included, a number, literal or compound), under a
    /// `path` and `key` that hold nothing JSON escapes: the same text, without reading the
    /// value back. `empty`: the value is null or `""`.
    fn push_extra_raw(&mut self, path: &str, key: &str, raw: &str, empty: bool) {
        let buf = if empty {
            &mut self.extra_empty
        } else {
            &mut self.extra
        };
        if !buf.is_empty() {
            buf.push(',');
        }
        buf.push('"');
        buf.push_str(path);
        buf.push_str(key);
        buf.push_str("\":");
        buf.push_str(raw);
    }

    /// Takes in what a nested parse (an object held as JSON text) found.
    fn absorb(&mut self, inner: Row<'_>) {
        for (col, v) in inner.vals.into_iter().enumerate() {
            if v != Flex::Absent && (!v.is_empty() || self.vals[col].is_empty()) {
                self.vals[col] = v.into_owned();
            }
        }
        for (mine, theirs) in self.names.iter_mut().zip(inner.names) {
            if let Some((path, key)) = theirs {
                *mine = Some((path, Cow::Owned(key.into_owned())));
            }
        }
        for (buf, more) in [
            (&mut self.extra, inner.extra),
            (&mut self.extra_empty, inner.extra_empty),
        ] {
            if !more.is_empty() {
                if !buf.is_empty() {
                    buf.push(',');
                }
                buf.push_str(&more);
            }
        }
        if self.bad_shape.is_none() {
            self.bad_shape = inner.bad_shape;
        }
        self.ev.merge(&inner.ev);
    }

    /// The source field of a [`NAMED`] column, as the record spelled it.
    fn name_of(&self, col: usize) -> String {
        NAMED
            .iter()
            .position(|&n| n == col)
            .and_then(|i| self.names[i].as_ref())
            .map_or_else(
                || COLUMNS[col].name.to_string(),
                |(path, key)| format!("{path}{key}"),
            )
    }
}

/// `*slot = v`, written straight into the slot. An assignment builds `v` on the stack,
/// calls the old value's drop, then copies `v` over: reading back the value just stored in
/// pieces stalled store forwarding on every field (a fifth of the fast path's own time).
#[inline(always)]
fn put<'a>(slot: &mut Flex<'a>, v: Flex<'a>) {
    let old = std::mem::replace(slot, v);
    // Nearly always absent: a row's values start absent and a column is set once.
    if !matches!(old, Flex::Absent) {
        drop(old);
    }
}

/// Whether serde_json writes `t` as a JSON string without escapes.
fn json_plain(t: &str) -> bool {
    !t.bytes().any(|ch| ch < 0x20 || ch == b'"' || ch == b'\\')
}

/// Appends `a` then `b` as one JSON string, as serde_json writes it.
fn push_json_string(buf: &mut String, a: &str, b: &str) {
    if json_plain(a) && json_plain(b) {
        buf.push('"');
        buf.push_str(a);
        buf.push_str(b);
        buf.push('"');
    } else {
        let joined = format!("{a}{b}");
        buf.push_str(&serde_json::to_string(&joined).unwrap_or_else(|_| "\"?\"".into()));
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
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Top,
    Identity,
    Claims,
    Properties,
}

/// How deep objects held as JSON text may nest inside each other.
const MAX_TEXT_DEPTH: u8 = 2;

/// Fills a [`Row`] from one JSON object (a record, or its identity/claim/properties).
struct SectionSeed<'r, 'a> {
    row: &'r mut Row<'a>,
    section: Section,
    /// Dotted path of this object for `extra` and messages: `""`, `"identity."`, `"Identity.claim."`.
    path: Cow<'static, str>,
    /// Inside `claim`: the path of the claim namespace being read (Managed HSM's nesting).
    claim_path: String,
    /// Shapes whose field names are read ([`shape::ANY`] when detecting).
    allow: u8,
    /// Objects held as JSON text this one is inside.
    depth: u8,
}

impl<'r, 'a> SectionSeed<'r, 'a> {
    fn child(
        &mut self,
        section: Section,
        path: Cow<'static, str>,
        claim_path: String,
    ) -> SectionSeed<'_, 'a> {
        SectionSeed {
            row: &mut *self.row,
            section,
            path,
            claim_path,
            allow: self.allow,
            depth: self.depth,
        }
    }

    fn slot(&mut self, key: &str) -> Slot {
        match self.section {
            Section::Top => top_slot(key, self.allow, &mut self.row.ev),
            Section::Identity if key == "claim" => Slot::Claims,
            Section::Identity => Slot::Unknown,
            Section::Properties => property_slot(key).map_or(Slot::Unknown, Slot::Col),
            Section::Claims if self.claim_path.is_empty() => match claim_slot(key) {
                Some(col) => Slot::Col(col),
                None if is_claim_namespace(key) => Slot::NestedClaims,
                None => Slot::Unknown,
            },
            Section::Claims => {
                let full = format!("{}.{key}", self.claim_path);
                match claim_slot(&full) {
                    Some(col) => Slot::Col(col),
                    None if is_claim_namespace(&full) => Slot::NestedClaims,
                    None => Slot::Unknown,
                }
            }
        }
    }
}

/// The path prefix of a nested section, without allocating for the usual spellings.
fn section_path(parent: &str, key: &str, claim: bool) -> Cow<'static, str> {
    match (parent, key, claim) {
        ("", "identity", false) => Cow::Borrowed("identity."),
        ("", "Identity", false) => Cow::Borrowed("Identity."),
        ("", "properties", false) => Cow::Borrowed("properties."),
        ("", "Properties", false) => Cow::Borrowed("Properties."),
        ("identity.", _, true) => Cow::Borrowed("identity.claim."),
        ("Identity.", _, true) => Cow::Borrowed("Identity.claim."),
        _ => Cow::Owned(format!("{parent}{key}.")),
    }
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

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.slot(&key) {
                slot @ (Slot::Identity | Slot::Properties) => {
                    let section = if slot == Slot::Identity {
                        Section::Identity
                    } else {
                        Section::Properties
                    };
                    let path = section_path(&self.path, &key, false);
                    map.next_value_seed(self.child(section, path, String::new()))?;
                }
                Slot::Claims => {
                    let path = section_path(&self.path, &key, true);
                    map.next_value_seed(self.child(Section::Claims, path, String::new()))?;
                }
                Slot::NestedClaims => {
                    let raw: &'de RawValue = map.next_value()?;
                    let claim_path = if self.claim_path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{}.{key}", self.claim_path)
                    };
                    if raw.get().starts_with('{') {
                        let path = Cow::Owned(format!("{}{key}.", self.path));
                        let mut de = serde_json::Deserializer::from_str(raw.get());
                        self.child(Section::Claims, path, claim_path)
                            .deserialize(&mut de)
                            .map_err(de::Error::custom)?;
                    } else {
                        self.row.push_extra(&self.path, &key, &flex(raw));
                    }
                }
                Slot::Col(col) => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.row.set(col, flex(raw), &self.path, key);
                }
                Slot::TimeGenerated => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.row.time_generated = Some(flex(raw));
                }
                Slot::LaResourceId => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.row.la_resource_id = Some(flex(raw));
                }
                Slot::LaType => {
                    let raw: &'de RawValue = map.next_value()?;
                    let v = flex(raw);
                    if let Flex::Str(t) = &v {
                        self.row.ev.la_type = Shape::AzureDiagnostics
                            .name()
                            .eq_ignore_ascii_case(t)
                            .then_some(Shape::AzureDiagnostics)
                            .or_else(|| {
                                Shape::AzkvAuditLogs
                                    .name()
                                    .eq_ignore_ascii_case(t)
                                    .then_some(Shape::AzkvAuditLogs)
                            });
                    }
                    self.row.push_extra(&self.path, &key, &v);
                }
                Slot::Flat(col, start, end) => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.row.flat.push((col, key, (start, end), flex(raw)));
                }
                Slot::Unknown => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.row.push_extra(&self.path, &key, &flex(raw));
                }
            }
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    /// An object held as JSON text (`AZKVAuditLogs` dynamic columns from the query API,
    /// the Managed HSM's `identity`) is read like the object itself.
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.text_section(v);
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
    /// An object held as JSON text (`AZKVAuditLogs` dynamic columns from the query API,
    /// the Managed HSM's `identity`) is read like the object itself.
    fn text_section(self, v: &str) {
        let t = v.trim();
        if t.is_empty() {
            return;
        }
        if self.section == Section::Top || !t.starts_with('{') || self.depth >= MAX_TEXT_DEPTH {
            self.shape_error();
            return;
        }
        let mut inner = Row::new();
        let parsed = SectionSeed {
            row: &mut inner,
            section: self.section,
            path: self.path.clone(),
            claim_path: self.claim_path.clone(),
            allow: self.allow,
            depth: self.depth + 1,
        }
        .deserialize(&mut serde_json::Deserializer::from_str(t));
        match parsed {
            Ok(()) => {
                if self.section == Section::Identity && self.depth == 0 {
                    self.row.ev.identity_text = true;
                }
                self.row.absorb(inner);
            }
            Err(_) => self.shape_error(),
        }
    }

    fn shape_error(self) {
        if self.row.bad_shape.is_none() {
            let part = match self.section {
                Section::Top => "record",
                _ => self.path.trim_end_matches('.'),
            };
            self.row.bad_shape = Some(part.to_string());
        }
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
    /// The shape the record was read as, named in the message.
    shape: Option<Shape>,
}

fn uncoercible(field: &str, what: &str) -> Refusal {
    Refusal {
        reason: Reason::UncoercibleValue,
        message: format!("field `{field}` holds a value that cannot be read as {what}"),
        shape: None,
    }
}

/// A coerced value of a column that is not text.
#[derive(Clone, Copy)]
enum Scalar {
    Null,
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn int(self) -> Option<i64> {
        match self {
            Scalar::Int(v) => Some(v),
            _ => None,
        }
    }
}

/// A value of a text column, as [`coerce`] makes it: null and `""` are null, numbers and
/// objects their JSON text, booleans `true`/`false`.
fn text_of<'v>(v: &'v Flex<'_>) -> Option<&'v str> {
    match v {
        Flex::Absent | Flex::Null => None,
        Flex::Str(s) if s.is_empty() => None,
        Flex::Str(s) | Flex::Num(s) | Flex::Compound(s) => Some(s),
        Flex::Bool(b) => Some(if *b { "true" } else { "false" }),
    }
}

/// Coerced values ready to append; text borrowed from the message where possible.
enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

/// Coerces one value to its column's kind; on failure, says what it should have been.
fn coerce(kind: Kind, v: Flex<'_>) -> Result<Cell<'_>, &'static str> {
    Ok(match (kind, v) {
        (_, Flex::Absent | Flex::Null) => Cell::Null,
        (Kind::Text, Flex::Str(s)) if s.is_empty() => Cell::Null,
        (Kind::Text, Flex::Str(s) | Flex::Num(s) | Flex::Compound(s)) => Cell::Text(s),
        (Kind::Text, Flex::Bool(b)) => Cell::Text(Cow::Borrowed(if b { "true" } else { "false" })),
        (Kind::Int64 | Kind::Int32, Flex::Num(n)) => Cell::Int(parse_int(&n).ok_or("an integer")?),
        (Kind::Int64 | Kind::Int32, Flex::Str(s)) if s.trim().is_empty() => Cell::Null,
        (Kind::Int64 | Kind::Int32, Flex::Str(s)) => {
            Cell::Int(parse_int(s.trim()).ok_or("an integer")?)
        }
        (Kind::Bool, Flex::Bool(b)) => Cell::Bool(b),
        (Kind::Bool, Flex::Num(n)) if n == "0" => Cell::Bool(false),
        (Kind::Bool, Flex::Num(n)) if n == "1" => Cell::Bool(true),
        (Kind::Bool, Flex::Str(s)) => match s.trim() {
            "" => Cell::Null,
            t if t.eq_ignore_ascii_case("true") || t == "1" => Cell::Bool(true),
            t if t.eq_ignore_ascii_case("false") || t == "0" => Cell::Bool(false),
            _ => return Err("a boolean"),
        },
        (Kind::Int64 | Kind::Int32, _) => return Err("an integer"),
        (Kind::Bool, _) => return Err("a boolean"),
        (Kind::Timestamp | Kind::Date, _) => return Err("a timestamp"),
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

/// Rebuilds the JSON objects an `AzureDiagnostics` row flattened into `a_b_c_s` columns
/// (`secretProperties_attributes_enabled_b` → `secretProperties` = `{"attributes":{"enabled":true}}`).
/// Log Analytics joins member names with `_`, so a member whose own name holds `_` comes
/// back split; it stores no null, so null members do not come back. Empty cells are skipped;
/// a member that clashes with another, or whose column is already filled, goes to `extra`.
fn rebuild_flattened(row: &mut Row<'_>) {
    use serde_json::{Map, Value};
    let flat = std::mem::take(&mut row.flat);
    let mut trees: Vec<(usize, Map<String, Value>)> = Vec::new();
    for (col, key, (start, end), v) in flat {
        if v.is_empty() {
            continue;
        }
        let mut placed = false;
        if row.vals[col] == Flex::Absent {
            let i = match trees.iter().position(|(c, _)| *c == col) {
                Some(i) => i,
                None => {
                    trees.push((col, Map::new()));
                    trees.len() - 1
                }
            };
            let path = key.get(start..end).unwrap_or("");
            placed = insert_path(&mut trees[i].1, path, v.to_value());
        }
        if !placed {
            row.push_extra("", &key, &v);
        }
    }
    for (col, tree) in trees {
        if !tree.is_empty() {
            let text = serde_json::to_string(&Value::Object(tree)).unwrap_or_default();
            row.vals[col] = Flex::Compound(Cow::Owned(text));
        }
    }
}

/// Puts `value` at the `_`-separated `path` of `tree`; false when something is in the way.
fn insert_path(
    tree: &mut serde_json::Map<String, serde_json::Value>,
    path: &str,
    value: serde_json::Value,
) -> bool {
    let mut segs: Vec<&str> = path.split('_').filter(|s| !s.is_empty()).collect();
    let Some(last) = segs.pop() else {
        return false;
    };
    let mut node = tree;
    for s in segs {
        let entry = node
            .entry(s.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        match entry {
            serde_json::Value::Object(m) => node = m,
            _ => return false,
        }
    }
    if node.contains_key(last) {
        return false;
    }
    node.insert(last.to_string(), value);
    true
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

    /// Re-creates this builder with room for `rows` rows, as wide per row as its `now`
    /// rows so far (a quarter more), keeping those rows.
    fn resize_for(&mut self, rows: usize, now: usize) {
        match self {
            ColumnBuilder::Text(b) => {
                let per_row = b.values_slice().len().div_ceil(now.max(1));
                let bytes = (rows + rows / 4).saturating_mul(per_row);
                let old = b.finish();
                *b = StringBuilder::with_capacity(rows, bytes);
                b.append_array(&old)
                    .expect("a string array of this builder fits its own kind");
            }
            ColumnBuilder::Int64(b) => resize_primitive(b, rows),
            ColumnBuilder::Int32(b) => resize_primitive(b, rows),
            ColumnBuilder::Bool(b) => {
                let old = b.finish();
                *b = BooleanBuilder::with_capacity(rows);
                b.extend(old.iter());
            }
            ColumnBuilder::Timestamp(b) => resize_primitive(b, rows),
            ColumnBuilder::Date(b) => resize_primitive(b, rows),
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

/// Re-creates a primitive builder with room for `rows` rows, keeping its rows and type.
fn resize_primitive<T: arrow::datatypes::ArrowPrimitiveType>(
    b: &mut arrow::array::PrimitiveBuilder<T>,
    rows: usize,
) {
    let old = b.finish();
    *b = arrow::array::PrimitiveBuilder::<T>::with_capacity(rows)
        .with_data_type(arrow::array::Array::data_type(&old).clone());
    b.append_array(&old);
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
    /// The shape every record is read as; `None` tells it per record.
    shape: Option<Shape>,
    columns: Vec<ColumnBuilder>,
    raw_rows: usize,
    dead: DeadLetterBuilders,
    /// Reused for lower-cased and braced text on its way into a builder.
    scratch: String,
    /// Allocations of finished rows, for the next rows.
    spare: Spare,
    /// What the last resource id gave.
    resource: ResourceMemo,
    /// The allocation of the records of a message, for the next message.
    spare_staged: Vec<fast::Staged<'static>>,
    /// The last records' keys by place ([`fast::KeyMemo`]).
    keys: fast::KeyMemo,
    /// Raw rows the caller expects before [`Decoder::finish`] ([`Decoder::reserve_rows`]).
    expected_rows: usize,
    /// The builders were sized for `expected_rows` since the last [`Decoder::finish`].
    sized: bool,
}

/// Allocations of finished rows, for the rows of the next messages.
#[derive(Debug, Default)]
struct Spare {
    /// Rows' values, emptied.
    vals: Vec<Vec<Flex<'static>>>,
    /// Rows' `extra` text, emptied.
    extra: Vec<String>,
}

/// What is derived from resource ids, kept for the records that follow: a stream names a
/// handful of vaults, so nearly every record's id was seen a few records before.
#[derive(Debug)]
struct ResourceMemo {
    /// A small direct-mapped table, indexed by a hash of the id's length and last bytes.
    slots: Vec<Option<ResourceParts>>,
}

/// What one resource id gives.
#[derive(Debug)]
struct ResourceParts {
    id: String,
    /// It names a managed HSM (`/managedHSMs/`).
    hsm: bool,
    /// Subscription, resource group and vault, lower-cased ([`resource_id_parts`]).
    parts: [Option<String>; 3],
}

/// Slots in [`ResourceMemo`]: more vaults than one instance usually reads.
const RESOURCE_SLOTS: usize = 64;

impl Default for ResourceMemo {
    fn default() -> Self {
        ResourceMemo {
            slots: (0..RESOURCE_SLOTS).map(|_| None).collect(),
        }
    }
}

impl ResourceMemo {
    /// The parts in slot `slot` (from [`ResourceMemo::slot`]).
    fn at(&self, slot: usize) -> &ResourceParts {
        self.slots[slot]
            .as_ref()
            .expect("a slot handed out holds its parts")
    }

    /// The slot holding the parts of `id`, derived again only when it held another id.
    fn slot(&mut self, id: &str) -> usize {
        // Ids of one subscription differ at the end (the vault's name): hash the last bytes.
        let b = id.as_bytes();
        let tail = b.len().saturating_sub(8);
        let mut h = b.len() as u64;
        for &ch in &b[tail..] {
            h = (h ^ u64::from(ch)).wrapping_mul(0x0100_0000_01b3);
        }
        let at = (h >> 7) as usize % RESOURCE_SLOTS;
        let slot = &mut self.slots[at];
        if slot.as_ref().is_some_and(|p| p.id != id) {
            *slot = None;
        }
        slot.get_or_insert_with(|| ResourceParts {
            id: id.to_owned(),
            hsm: b.iter().enumerate().any(|(i, &ch)| {
                ch == b'/'
                    && b.get(i..i + 13)
                        .is_some_and(|w| w.eq_ignore_ascii_case(b"/managedhsms/"))
            }),
            parts: resource_id_parts(id).map(|p| p.map(str::to_ascii_lowercase)),
        });
        at
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("options", &self.options)
            .field("shape", &self.shape)
            .field("raw_rows", &self.raw_rows)
            .field("dead_letter_rows", &self.dead.rows)
            .finish()
    }
}

/// The UTF-8 byte-order mark some Windows tools write at the start of a file.
const BOM: char = '\u{feff}';

impl Decoder {
    /// A decoder with empty builders that tells the shape of each record by itself.
    pub fn new(options: DecodeOptions) -> Self {
        Decoder {
            options,
            shape: None,
            columns: COLUMNS
                .iter()
                .map(|col| ColumnBuilder::new(col.kind))
                .collect(),
            raw_rows: 0,
            dead: DeadLetterBuilders::new(),
            scratch: String::new(),
            spare: Spare::default(),
            resource: ResourceMemo::default(),
            spare_staged: Vec::new(),
            keys: fast::KeyMemo::default(),
            expected_rows: 0,
            sized: false,
        }
    }

    /// The same decoder, reading every record as `shape` (`None`: told per record).
    pub fn with_shape(mut self, shape: Option<Shape>) -> Self {
        self.shape = shape;
        self
    }

    /// Reads the records that follow as `shape` (`kvlake convert --format`): only that
    /// shape's field names fill columns, everything else goes to `extra`. `None` goes
    /// back to telling the shape per record.
    pub fn set_shape(&mut self, shape: Option<Shape>) {
        self.shape = shape;
    }

    /// The forced shape, if any.
    pub fn shape(&self) -> Option<Shape> {
        self.shape
    }

    /// Sets the time written to `seen_time` of the dead letters that follow.
    pub fn set_seen_time(&mut self, micros: i64) {
        self.options.seen_time_micros = micros;
    }

    /// Expects about `rows` raw rows between two calls to [`Decoder::finish`] (a batch's
    /// flush size): after the first message that gives a row, every raw column is sized
    /// for that many rows of the same width, so the builders never grow again on the way
    /// (regrowth copied every column's bytes once more: a twentieth of the decoder's time).
    /// Without it the builders start empty and double as they fill. Memory is only
    /// reserved, not written: pages never filled stay untouched.
    pub fn reserve_rows(&mut self, rows: usize) {
        self.expected_rows = rows;
        self.sized = false;
    }

    /// Re-creates the raw builders with room for `expected_rows` rows, each column as wide
    /// per row as in the rows so far (plus a quarter), and the rows so far copied over.
    fn size_builders(&mut self) {
        self.sized = true;
        let (rows, now) = (self.expected_rows, self.raw_rows);
        for builder in &mut self.columns {
            builder.resize_for(rows, now);
        }
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
        self.decode_inner(bytes, coords, true);
        if !self.sized && self.expected_rows > self.raw_rows && self.raw_rows > 0 {
            self.size_builders();
        }
        MessageOutcome {
            raw_rows: self.raw_rows - before.0,
            dead_letter_rows: self.dead.rows - before.1,
        }
    }

    /// [`Decoder::decode_message`] without the envelope fast path: every message takes the
    /// serde_json passes. The reference the fast path is tested against; not for production.
    #[doc(hidden)]
    pub fn decode_message_reference(
        &mut self,
        bytes: &[u8],
        coords: &SourceCoords<'_>,
    ) -> MessageOutcome {
        let before = (self.raw_rows, self.dead.rows);
        self.decode_inner(bytes, coords, false);
        MessageOutcome {
            raw_rows: self.raw_rows - before.0,
            dead_letter_rows: self.dead.rows - before.1,
        }
    }

    /// Whether `bytes` is an envelope the fast path reads (tests check that generated
    /// traffic does not silently fall back to the serde path).
    #[doc(hidden)]
    pub fn fast_path_reads(&self, bytes: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let text = text.strip_prefix(BOM).unwrap_or(text);
        let allow = self.shape.map_or(ANY, Shape::bit);
        let mut keys = fast::KeyMemo::default();
        fast::envelope(
            text,
            allow,
            &mut Vec::new(),
            &mut Spare::default(),
            &mut keys,
        )
        .is_ok()
    }

    /// The envelope fast path ([`fast`]): true when it took the message, false when it
    /// gave up before appending anything.
    fn decode_envelope(&mut self, text: &str, coords: &SourceCoords<'_>) -> bool {
        // The last message's (empty) vector, its allocation kept: an empty vector mapped
        // to the same layout keeps it (in-place collect).
        let mut staged: Vec<fast::Staged<'_>> = std::mem::take(&mut self.spare_staged)
            .into_iter()
            .map(|_| fast::Staged::NotAnObject(""))
            .collect();
        let allow = self.shape.map_or(ANY, Shape::bit);
        let taken =
            fast::envelope(text, allow, &mut staged, &mut self.spare, &mut self.keys).is_ok();
        // Rows are read where they were staged: moved out, each would be copied once more.
        for (i, record) in staged.iter_mut().enumerate() {
            match record {
                fast::Staged::Record(row, _) if !taken => {
                    self.recycle(std::mem::take(&mut row.vals))
                }
                fast::Staged::Record(row, raw) => self.finish_record(row, raw, coords, i as i32),
                fast::Staged::NotAnObject(_) if !taken => {}
                fast::Staged::NotAnObject(raw) => self.not_an_object(raw, coords, i as i32),
            }
        }
        staged.clear();
        self.spare_staged = staged
            .into_iter()
            .map(|_| fast::Staged::NotAnObject(""))
            .collect();
        taken
    }

    fn decode_inner(&mut self, bytes: &[u8], coords: &SourceCoords<'_>, fast: bool) {
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
        let text = text.strip_prefix(BOM).unwrap_or(text);
        if fast && self.decode_envelope(text, coords) {
            return;
        }
        // Serde path: a single diagnostic-settings envelope.
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
            return self.not_an_object(raw.get(), coords, index);
        }
        let mut row = Row::new();
        let parsed = SectionSeed {
            row: &mut row,
            section: Section::Top,
            path: Cow::Borrowed(""),
            claim_path: String::new(),
            allow: self.shape.map_or(ANY, Shape::bit),
            depth: 0,
        }
        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()));
        match parsed {
            Ok(()) => self.finish_record(&mut row, raw.get(), coords, index),
            // Cannot happen for a slice that already parsed as JSON; kept as a dead letter, not a panic.
            Err(e) => self.refused(
                Refusal {
                    reason: Reason::InvalidJson,
                    message: strip_value(&e),
                    shape: None,
                },
                raw.get(),
                coords,
                index,
            ),
        }
    }

    fn not_an_object(&mut self, raw: &str, coords: &SourceCoords<'_>, index: i32) {
        let msg = format!("record {index} is not a JSON object");
        self.dead_letter(
            coords,
            Some(index),
            Reason::NotAnObject,
            &msg,
            raw.as_bytes(),
        );
    }

    /// Appends a read record, or dead-letters it with its text `raw`.
    // The row by reference: it is a few hundred bytes, and moving it costs a copy.
    fn finish_record(
        &mut self,
        row: &mut Row<'_>,
        raw: &str,
        coords: &SourceCoords<'_>,
        index: i32,
    ) {
        if let Err(r) = self.append_row(row, coords, index) {
            self.refused(r, raw, coords, index);
        }
        // Nearly every record has a field kvlake does not know: keep the allocation.
        if row.extra.capacity() > 0 && self.spare.extra.len() < 256 {
            let mut extra = std::mem::take(&mut row.extra);
            extra.clear();
            self.spare.extra.push(extra);
        }
    }

    fn refused(&mut self, r: Refusal, raw: &str, coords: &SourceCoords<'_>, index: i32) {
        let msg = match r.shape {
            Some(shape) => format!("record {index} ({}): {}", shape.label(), r.message),
            None => format!("record {index}: {}", r.message),
        };
        self.dead_letter(coords, Some(index), r.reason, &msg, raw.as_bytes());
    }

    /// Validates and coerces every value first, then appends: a refused record leaves
    /// no partial row behind.
    fn append_row(
        &mut self,
        row: &mut Row<'_>,
        coords: &SourceCoords<'_>,
        index: i32,
    ) -> Result<(), Refusal> {
        // The slot of the resource id's parts, looked up once: nothing below replaces a
        // resource id that is a string (`_ResourceId` only fills an absent or null one).
        let mut resource = None;
        if let (None, Flex::Str(id)) = (self.shape, &row.vals[c::RESOURCE_ID]) {
            let slot = self.resource.slot(id);
            row.ev.hsm_resource = self.resource.at(slot).hsm;
            resource = Some(slot);
        }
        let shape = self.shape.unwrap_or_else(|| row.ev.shape());
        let refuse = |mut r: Refusal| {
            r.shape = Some(shape);
            r
        };
        if let Some(part) = row.bad_shape.take() {
            return Err(refuse(Refusal {
                reason: Reason::UncoercibleValue,
                message: format!(
                    "field `{part}` is neither an object, JSON text of an object, nor null"
                ),
                shape: None,
            }));
        }
        settle_log_analytics(row, shape);
        let time = match std::mem::take(&mut row.vals[c::TIME]) {
            Flex::Absent | Flex::Null => return Err(refuse(missing(shape.time_field()))),
            Flex::Str(s) if s.trim().is_empty() => {
                return Err(refuse(missing(shape.time_field())));
            }
            Flex::Str(s) => parse_timestamp_micros(&s)
                .ok_or_else(|| refuse(uncoercible(&row.name_of(c::TIME), "a timestamp")))?,
            _ => {
                return Err(refuse(uncoercible(&row.name_of(c::TIME), "a timestamp")));
            }
        };
        let vals = std::mem::take(&mut row.vals);
        // Only the columns that are not text can fail coercion: check those first, in
        // column order, then the operation, before anything is appended.
        let mut scalars = [Scalar::Null; FIRST_DERIVED];
        let mut refusal = None;
        for col in COERCED {
            let (kind, v) = (COLUMNS[col].kind, &vals[col]);
            if matches!(v, Flex::Absent | Flex::Null) {
                continue;
            }
            scalars[col] = match coerce(kind, v.clone()) {
                Ok(Cell::Int(i)) => Scalar::Int(i),
                Ok(Cell::Bool(b)) => Scalar::Bool(b),
                Ok(_) => Scalar::Null,
                Err(what) => {
                    refusal = Some(refuse(uncoercible(&row.name_of(col), what)));
                    break;
                }
            };
        }
        if refusal.is_none()
            && text_of(&vals[c::OPERATION_NAME]).is_none_or(|s| s.trim().is_empty())
        {
            refusal = Some(refuse(missing(shape.operation_field())));
        }
        if let Some(r) = refusal {
            self.recycle(vals);
            return Err(r);
        }
        scalars[c::PARTITION] = Scalar::Int(i64::from(coords.partition));
        scalars[c::OFFSET] = Scalar::Int(coords.offset);
        scalars[c::RECORD_INDEX] = Scalar::Int(i64::from(index));
        scalars[c::ENQUEUED_TIME] = coords
            .enqueued_time_micros
            .map_or(Scalar::Null, Scalar::Int);
        scalars[c::TIME] = Scalar::Int(time);
        if !shape.is_log_analytics() && !row.extra_empty.is_empty() {
            if !row.extra.is_empty() {
                row.extra.push(',');
            }
            row.extra.push_str(&row.extra_empty);
        }
        for (col, builder) in self.columns[..FIRST_DERIVED].iter_mut().enumerate() {
            match builder {
                // Borrowed from the caller, so appended directly rather than copied into a cell.
                ColumnBuilder::Text(b) if col == c::SOURCE => b.append_value(coords.source),
                ColumnBuilder::Text(b) => b.append_option(text_of(&vals[col])),
                ColumnBuilder::Int64(b) => b.append_option(scalars[col].int()),
                ColumnBuilder::Int32(b) => {
                    b.append_option(scalars[col].int().and_then(|v| i32::try_from(v).ok()))
                }
                ColumnBuilder::Bool(b) => b.append_option(match scalars[col] {
                    Scalar::Bool(v) => Some(v),
                    _ => None,
                }),
                ColumnBuilder::Timestamp(b) => b.append_option(scalars[col].int()),
                ColumnBuilder::Date(b) => {
                    b.append_option(scalars[col].int().and_then(|v| i32::try_from(v).ok()))
                }
            }
        }
        self.append_derived(
            scalars[c::HTTP_STATUS_CODE],
            [c::RESOURCE_ID, c::PROPERTIES_ID, c::REQUEST_URI].map(|col| text_of(&vals[col])),
            resource,
            time,
            &row.extra,
        );
        self.recycle(vals);
        self.raw_rows += 1;
        Ok(())
    }

    /// Keeps the allocation of a row's values for the next row.
    fn recycle(&mut self, vals: Vec<Flex<'_>>) {
        // Mapped to the same layout, a vector keeps its allocation (in-place collect): one
        // pass drops the values and leaves every column absent for the next row.
        let vals: Vec<Flex<'static>> = vals.into_iter().map(|_| Flex::Absent).collect();
        if self.spare.vals.len() < 256 {
            self.spare.vals.push(vals);
        }
    }

    /// A row whose values reuse a recycled allocation.
    fn new_row<'a>(spare: &mut Spare) -> Row<'a> {
        // Recycled vectors hold FIRST_DERIVED absent values already.
        let mut vals: Vec<Flex<'a>> = spare.vals.pop().unwrap_or_default();
        if vals.len() != FIRST_DERIVED {
            vals.clear();
            vals.resize(FIRST_DERIVED, Flex::Absent);
        }
        let mut row = Row::with_vals(vals);
        row.extra = spare.extra.pop().unwrap_or_default();
        row
    }

    /// Appends the derived columns: from the status code, and from the resource id,
    /// `properties.id` and the request URI as coerced. No copy but the lower-casing.
    fn append_derived(
        &mut self,
        status: Scalar,
        [resource_id, id, request_uri]: [Option<&str>; 3],
        resource: Option<usize>,
        time: i64,
        extra: &str,
    ) {
        let result_class = match status {
            Scalar::Int(429) => "throttled",
            Scalar::Int(s) if s < 400 => "success",
            Scalar::Int(s) if s < 500 => "client_error",
            Scalar::Int(_) => "server_error",
            _ => "unknown",
        };
        // Already lower-cased, from the memo.
        let [subscription, group, vault_of_id] = match resource_id {
            Some(id) => {
                // The slot `append_row` looked up for this id, if it did.
                let slot = resource.unwrap_or_else(|| self.resource.slot(id));
                let p = &self.resource.at(slot).parts;
                [0, 1, 2].map(|i| p[i].as_deref())
            }
            None => [None; 3],
        };
        let mut vault = vault_of_id.map(|v| (v, false));
        let parsed_id = id.map(uri::object_uri);
        let object = match (parsed_id, request_uri) {
            (Some(p), _) if p.1.kind.is_some() => Some(p),
            (_, Some(u)) => Some(uri::object_uri(u)),
            (p, None) => p,
        };
        let (mut kind, mut name, mut version) = (None, None, None);
        if let Some((host, o)) = object {
            vault = vault.or(host.map(|h| (h, true)));
            (kind, name, version) = (o.kind, o.name, o.version);
        }
        let (day, hour) = day_and_hour(time);
        let scratch = &mut self.scratch;
        for (col, builder) in self.columns.iter_mut().enumerate().skip(FIRST_DERIVED) {
            let (value, lower) = match col {
                c::RESULT_CLASS => (Some(result_class), false),
                c::SUBSCRIPTION_ID => (subscription, false),
                c::RESOURCE_GROUP => (group, false),
                c::VAULT_NAME => (vault.map(|v| v.0), vault.is_some_and(|v| v.1)),
                c::OBJECT_KIND => (kind, false),
                c::OBJECT_NAME => (name, false),
                c::OBJECT_VERSION => (version, false),
                c::EXTRA => (None, false),
                c::DATE | c::HOUR => {
                    let v = if col == c::DATE { day } else { hour };
                    builder.append(&Cell::Int(i64::from(v)));
                    continue;
                }
                _ => continue,
            };
            let ColumnBuilder::Text(b) = builder else {
                continue;
            };
            match value {
                Some(v) if lower => {
                    scratch.clear();
                    scratch.push_str(v);
                    scratch.make_ascii_lowercase();
                    b.append_value(&*scratch);
                }
                Some(v) => b.append_value(v),
                None if col == c::EXTRA && !extra.is_empty() => {
                    scratch.clear();
                    scratch.push('{');
                    scratch.push_str(extra);
                    scratch.push('}');
                    b.append_value(&*scratch);
                }
                None => b.append_null(),
            }
        }
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
        self.sized = false;
        DecodeOutput {
            raw: RecordBatch::try_new(raw_schema(), cols).expect("raw builders match their schema"),
            dead_letter: self.dead.finish(),
        }
    }
}

/// What only rows of some shapes need: `TimeGenerated` and `_ResourceId` stand in for
/// `time` and `resourceId` when those are absent (else they go to `extra`), flattened
/// objects are rebuilt, and an `AZKVAuditLogs` row, a table of one category, gets it.
fn settle_log_analytics(row: &mut Row<'_>, shape: Shape) {
    for (col, key) in [(c::TIME, "TimeGenerated"), (c::RESOURCE_ID, "_ResourceId")] {
        let alt = if col == c::TIME {
            row.time_generated.take()
        } else {
            row.la_resource_id.take()
        };
        let Some(v) = alt else { continue };
        if row.vals[col] == Flex::Absent || (row.vals[col] == Flex::Null && !v.is_empty()) {
            row.set(col, v, &Cow::Borrowed(""), Cow::Borrowed(key));
        } else {
            row.push_extra("", key, &v);
        }
    }
    if !row.flat.is_empty() {
        rebuild_flattened(row);
    }
    if shape == Shape::AzkvAuditLogs && row.vals[c::CATEGORY].is_empty() {
        row.vals[c::CATEGORY] = Flex::Str(Cow::Borrowed("AuditEvent"));
    }
}

fn missing(field: &str) -> Refusal {
    Refusal {
        reason: Reason::MissingField,
        message: format!("required field `{field}` is missing, null or empty"),
        shape: None,
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

#[cfg(test)]
mod tests;
