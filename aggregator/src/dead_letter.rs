//! A record ingest refused, kept whole (key, value, headers, source offset, reason) from the moment it
//! is refused until the flush that covers its offset hands it to the dead-letter sink
//! (`sluice_sinks::dead_letter`). Plain data: the batch holds these next to its aggregates.

/// A refused record, kept whole until it is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
    /// Low-cardinality reason (a `RejectReason` name, or `sink_refused`).
    pub reason: &'static str,
    pub detail: String,
}

impl DeadLetter {
    pub fn approx_bytes(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, Vec::len) + self.detail.len() + 128
    }
}
