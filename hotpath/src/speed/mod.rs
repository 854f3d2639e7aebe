//! The speed layer: detections in transit. Partition tasks hand each decoded chunk's
//! records to one engine per instance (`engine`), which runs the rules (`rules`) over the
//! state of every partition (`state`) and the cold path's history (`history`), writes each
//! alert (`alert`) to the lake's outbox and `alerts` table and delivers it (`outbox`,
//! through the `sinks` the binary provides). ARCHITECTURE.md, "Speed layer", says why.

pub mod alert;
pub mod engine;
pub mod event;
pub mod history;
pub mod list_reads;
pub mod outbox;
pub mod rules;
pub mod sinks;
pub mod state;

pub use alert::Alert;
pub use engine::{SpeedConfig, SpeedHandle, start};
pub use rules::Thresholds;
pub use sinks::{Sink, SinkError, SinkFuture};
