//! The dead-letter table: every message or record the decoder could not turn into a raw
//! row, with the reason, the original bytes and the source coordinates.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::raw::timestamp_type;
use crate::{SCHEMA_VERSION, SCHEMA_VERSION_KEY};

/// Why a message or record was dead-lettered. The code is what lands in `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// The message is larger than the configured maximum.
    TooLarge,
    /// The message is not valid UTF-8.
    NotUtf8,
    /// The message is not valid JSON.
    InvalidJson,
    /// The message or one entry of its `records` array is not a JSON object.
    NotAnObject,
    /// A field holds a value that cannot be coerced to its column's type.
    UncoercibleValue,
    /// A required field (`time`, `operationName`) is missing, null or empty.
    MissingField,
    /// The message holds no record at all (`{"records": []}`, whitespace).
    Empty,
}

impl Reason {
    /// Every reason, for documentation and tests.
    pub const ALL: [Reason; 7] = [
        Reason::TooLarge,
        Reason::NotUtf8,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::UncoercibleValue,
        Reason::MissingField,
        Reason::Empty,
    ];

    /// The stable code written to the `reason` column.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::NotUtf8 => "not_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::UncoercibleValue => "uncoercible_value",
            Reason::MissingField => "missing_field",
            Reason::Empty => "empty",
        }
    }

    /// Whether this reason covers the whole message (`_record_index` is null) rather
    /// than one record of it.
    pub fn is_message_level(self) -> bool {
        matches!(
            self,
            Reason::TooLarge | Reason::NotUtf8 | Reason::InvalidJson | Reason::Empty
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

static DEAD_LETTER: LazyLock<SchemaRef> = LazyLock::new(|| build(true));
static DEAD_LETTER_FILE: LazyLock<SchemaRef> = LazyLock::new(|| build(false));

fn build(with_partitions: bool) -> SchemaRef {
    let doc = |f: Field, d: &str| {
        f.with_metadata(HashMap::from([("description".to_string(), d.to_string())]))
    };
    let mut fields = vec![
        doc(
            Field::new("_source", DataType::Utf8, false),
            "topic, or input file for `kvlake convert`",
        ),
        doc(
            Field::new("_partition", DataType::Int32, false),
            "Kafka partition; 0 for files",
        ),
        doc(
            Field::new("_offset", DataType::Int64, false),
            "Kafka offset; line number for files",
        ),
        doc(
            Field::new("_record_index", DataType::Int32, true),
            "index of the record inside its message; null when the whole message was dead-lettered",
        ),
        doc(
            Field::new("_enqueued_time", timestamp_type(), true),
            "Event Hubs enqueued time; null for files",
        ),
        doc(
            Field::new("reason", DataType::Utf8, false),
            "reason code: too_large, not_utf8, invalid_json, not_an_object, uncoercible_value, missing_field, empty",
        ),
        doc(
            Field::new("message", DataType::Utf8, false),
            "what was wrong, for a person (names the field, never a value)",
        ),
        doc(
            Field::new("original", DataType::Binary, false),
            "the original bytes: the whole message, or the record's JSON text",
        ),
        doc(
            Field::new("seen_time", timestamp_type(), false),
            "when kvlake dead-lettered it, UTC",
        ),
    ];
    if with_partitions {
        fields.push(doc(
            Field::new("date", DataType::Date32, false),
            "partition: UTC date of `_enqueued_time`, else of `seen_time`",
        ));
        fields.push(doc(
            Field::new("hour", DataType::Int32, false),
            "partition: UTC hour, as `date`",
        ));
    }
    let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Schema of decoded dead-letter batches, partition columns last.
pub fn dead_letter_schema() -> SchemaRef {
    DEAD_LETTER.clone()
}

/// Schema of dead-letter Parquet files: without the partition columns.
pub fn dead_letter_file_schema() -> SchemaRef {
    DEAD_LETTER_FILE.clone()
}
