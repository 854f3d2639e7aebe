//! Checkpoints: the whole state of a table at one version in one Parquet file, so a
//! reader (and kvlake on restart) replays at most the commits since, not years of log.
//! Rows are actions; columns are the action kinds (`txn`, `add`, `remove`, `metaData`,
//! `protocol`) as in the protocol's checkpoint schema. Encoded and decoded through
//! arrow-json from the same JSON the commits use, so both share one serde definition.

use std::io::Cursor;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::DeltaFormatError;
use super::actions::{Action, decode_commit, encode_commit};

fn text() -> DataType {
    DataType::Utf8
}

fn string_map() -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
        false,
    )
}

fn strukt(fields: Vec<(&str, DataType)>) -> DataType {
    DataType::Struct(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect(),
    )
}

/// The checkpoint schema of the actions kvlake writes.
pub fn checkpoint_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let txn = strukt(vec![
            ("appId", text()),
            ("version", DataType::Int64),
            ("lastUpdated", DataType::Int64),
        ]);
        let add = strukt(vec![
            ("path", text()),
            ("partitionValues", string_map()),
            ("size", DataType::Int64),
            ("modificationTime", DataType::Int64),
            ("dataChange", DataType::Boolean),
            ("stats", text()),
        ]);
        let remove = strukt(vec![
            ("path", text()),
            ("deletionTimestamp", DataType::Int64),
            ("dataChange", DataType::Boolean),
            ("extendedFileMetadata", DataType::Boolean),
            ("partitionValues", string_map()),
            ("size", DataType::Int64),
        ]);
        let metadata = strukt(vec![
            ("id", text()),
            ("name", text()),
            ("description", text()),
            (
                "format",
                strukt(vec![("provider", text()), ("options", string_map())]),
            ),
            ("schemaString", text()),
            (
                "partitionColumns",
                DataType::List(Arc::new(Field::new("element", text(), true))),
            ),
            ("configuration", string_map()),
            ("createdTime", DataType::Int64),
        ]);
        let protocol = strukt(vec![
            ("minReaderVersion", DataType::Int32),
            ("minWriterVersion", DataType::Int32),
        ]);
        Arc::new(Schema::new(vec![
            Field::new("txn", txn, true),
            Field::new("add", add, true),
            Field::new("remove", remove, true),
            Field::new("metaData", metadata, true),
            Field::new("protocol", protocol, true),
        ]))
    });
    SCHEMA.clone()
}

/// A checkpoint file of `actions` (commitInfo lines are not part of a checkpoint).
pub fn encode_checkpoint(actions: &[Action]) -> Result<Bytes, DeltaFormatError> {
    let err = |e: &dyn std::fmt::Display| DeltaFormatError::Checkpoint(e.to_string());
    let lines: Vec<Action> = actions
        .iter()
        .filter(|a| !matches!(a, Action::CommitInfo(_)))
        .cloned()
        .collect();
    let json = encode_commit(&lines);
    let schema = checkpoint_schema();
    let reader = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(8192)
        .build(Cursor::new(json))
        .map_err(|e| err(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(|e| err(&e))?;
    for batch in reader {
        w.write(&batch.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    Ok(Bytes::from(w.into_inner().map_err(|e| err(&e))?))
}

/// The actions in a checkpoint file (written by kvlake or another Delta writer: columns
/// and fields kvlake does not use are ignored).
pub fn decode_checkpoint(version: i64, bytes: Bytes) -> Result<Vec<Action>, DeltaFormatError> {
    decode_checkpoint_columns(
        version,
        bytes,
        &["txn", "add", "remove", "metaData", "protocol"],
    )
}

/// The actions of a checkpoint without its `add` and `remove` columns: what a writer
/// needs to know its txn versions. Parquet skips those column chunks unread, so the
/// cost no longer grows with the number of live files.
pub fn decode_checkpoint_without_files(
    version: i64,
    bytes: Bytes,
) -> Result<Vec<Action>, DeltaFormatError> {
    decode_checkpoint_columns(version, bytes, &["txn", "metaData", "protocol"])
}

/// Only the action columns named (`*_parsed` statistics and the like are never read).
fn decode_checkpoint_columns(
    version: i64,
    bytes: Bytes,
    columns: &[&str],
) -> Result<Vec<Action>, DeltaFormatError> {
    let err = |e: &dyn std::fmt::Display| DeltaFormatError::Checkpoint(e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
    let roots: Vec<usize> = builder
        .parquet_schema()
        .root_schema()
        .get_fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.contains(&f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(|e| err(&e))?;
    let mut json = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut json);
        for batch in reader {
            w.write(&batch.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
        }
        w.finish().map_err(|e| err(&e))?;
    }
    decode_commit(version, &json)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::delta::actions::{Add, Format, Metadata, Protocol, Remove, Txn};

    #[test]
    fn checkpoints_round_trip() {
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
            Action::Metadata(Metadata {
                id: "id".into(),
                name: None,
                description: None,
                format: Format::default(),
                schema_string: "{}".into(),
                partition_columns: vec!["date".into(), "hour".into()],
                configuration: BTreeMap::from([("delta.checkpointInterval".into(), "20".into())]),
                created_time: Some(1),
            }),
            Action::Txn(Txn {
                app_id: "kvlake:t:0".into(),
                version: 3,
                last_updated: Some(9),
            }),
            Action::Add(add.clone()),
            Action::Remove(Remove::of(&add, 7, false)),
        ];
        let bytes = encode_checkpoint(&actions).unwrap();
        assert_eq!(decode_checkpoint(4, bytes).unwrap(), actions);
    }
}
