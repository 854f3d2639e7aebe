//! What crosses between the stages of the pipeline: the contract between them.

/// One Kafka message, copied out of librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Kafka offset.
    pub offset: i64,
    /// Broker timestamp (Event Hubs enqueued time), ms since epoch.
    pub timestamp_ms: Option<i64>,
    /// Payload; a null payload arrives empty.
    pub payload: Vec<u8>,
}

/// Consecutive messages of one partition, handed from the source to its partition task.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Messages in offset order.
    pub msgs: Vec<Msg>,
    /// Sum of payload sizes.
    pub bytes: usize,
}

impl Chunk {
    /// Appends a message.
    pub fn push(&mut self, m: Msg) {
        self.bytes += m.payload.len();
        self.msgs.push(m);
    }
}

/// What a partition task reports when it stops.
#[derive(Debug, Clone, Default)]
pub struct PartitionReport {
    /// Partition.
    pub partition: i32,
    /// Batches committed by this run.
    pub batches: u64,
    /// Raw rows committed.
    pub raw_rows: u64,
    /// Dead-letter rows committed.
    pub dead_letter_rows: u64,
    /// Message bytes committed.
    pub bytes: u64,
    /// Offset the partition's log ends at.
    pub end_offset: i64,
    /// Another writer took the partition over: this run let it go.
    pub lost_to: Option<String>,
    /// Messages the broker delivered past the run's end point (an until-caught-up run stops
    /// at the high watermark read at its start): a broker that under-reports its high
    /// watermark (Tansu) shows here, as does traffic that arrived meanwhile.
    pub seen_past_end: i64,
}
