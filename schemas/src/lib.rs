//! kvlake's data contracts: the Arrow schemas of every table, the AuditEvent decoder,
//! the lake layout and the checkpoint-log record formats. Pure: no network, no clock.
//!
//! Everything another part of kvlake (or an outside reader of the lake) relies on is
//! defined here, so the contract lives in one crate that does no I/O.

pub mod alerts;
pub mod checkpoint;
pub mod deadletter;
pub mod decode;
pub mod delta;
pub mod layout;
pub mod raw;
pub mod resource;
pub mod time;
pub mod writer;

pub use decode::{DecodeOptions, DecodeOutput, Decoder, Shape, SourceCoords, UnknownShape};

/// Version of the raw and dead-letter table schemas; bumped on any column change and
/// written into every Parquet file's key-value metadata as `kvlake.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// Key of the Parquet/Arrow metadata entry holding [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "kvlake.schema_version";
