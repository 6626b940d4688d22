//! What ingest holds per assigned partition between two flushes: its batch (`sluice_aggregator`), its
//! idempotency window, when its oldest unflushed record was read, and the in-flight flush. Only the poll
//! thread touches it (the poll loop and the rebalance callback both run there), through
//! [`Partitions::lock`](super::partitions::Partitions::lock).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_aggregator::dedup::DedupWindow;
use sluice_aggregator::PartitionBatch;
use sluice_schemas::EventKind;

use super::inflight::InFlight;

/// The three subscribed topics and their event kinds, looked up by index on the hot path.
#[derive(Debug, Clone)]
pub struct Topics {
    entries: Vec<(String, EventKind)>,
}

impl Topics {
    pub fn new(entries: Vec<(String, EventKind)>) -> Self {
        Topics { entries }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(n, _)| n == name)
    }

    pub fn name(&self, index: usize) -> &str {
        &self.entries[index].0
    }

    pub fn kind(&self, index: usize) -> EventKind {
        self.entries[index].1
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// The maps below are looked up for every record (batch, idempotency window, partition count): std's
/// `HashMap` with hashbrown's default hasher (foldhash) in place of SipHash, which cost more than the
/// lookup itself for these small integer keys (`cargo bench -p sluice-consumers --bench routing`,
/// `partition_maps`).
pub type PartitionMap<K, V> = HashMap<K, V, hashbrown::DefaultHashBuilder>;

/// Mutable state: one batch per assigned partition, keyed by (topic index, partition).
#[derive(Debug, Default)]
pub struct State {
    pub batches: PartitionMap<(usize, i32), PartitionBatch>,
    /// Each partition's idempotency window (absent when deduplication is off).
    pub dedup: PartitionMap<(usize, i32), DedupWindow>,
    pub inflight: Option<InFlight>,
    /// Partition counts of the subscribed topics (by topic index), read from the brokers on assignment:
    /// what the misrouting check divides by.
    pub partition_counts: PartitionMap<usize, i32>,
    /// When this process read the oldest record of each partition's current (not yet flushing) batch.
    pub unflushed_since: HashMap<(usize, i32), Instant>,
}

impl State {
    pub fn buffered_bytes(&self) -> usize {
        self.batches.values().map(|b| b.approx_bytes).sum()
    }

    /// Bytes of the batches a flush in flight holds (`None` when none is in flight).
    pub fn inflight_bytes(&self) -> Option<usize> {
        self.inflight.as_ref().map(|f| f.bytes)
    }

    pub fn buffered_events(&self) -> usize {
        self.batches.values().map(PartitionBatch::events).sum()
    }

    /// Aggregate rows held in the batches (distinct keys per partition).
    pub fn buffered_keys(&self) -> usize {
        self.batches
            .values()
            .map(|b| b.clicks.len() + b.ranks.len() + b.crawls.len())
            .sum()
    }

    /// Keys held in the dedup windows.
    pub fn dedup_keys(&self) -> usize {
        self.dedup.values().map(DedupWindow::len).sum()
    }

    /// Bytes the dedup windows hold.
    pub fn dedup_bytes(&self) -> usize {
        self.dedup.values().map(DedupWindow::heap_bytes).sum()
    }

    /// Sets every dedup window's clock (Unix ms): once per poll-loop turn.
    pub fn set_dedup_clock(&mut self, now_ms: i64) {
        for window in self.dedup.values_mut() {
            window.set_clock(now_ms);
        }
    }

    /// Notes `read_at` as the first read time of every partition whose batch took records since the last
    /// call and has none yet (called once per poll-loop turn, so ages are exact to within a turn).
    pub fn mark_unflushed(&mut self, read_at: Instant) {
        for (key, batch) in &self.batches {
            if !batch.is_empty() {
                self.unflushed_since.entry(*key).or_insert(read_at);
            }
        }
    }

    /// Per assigned partition, the age of its oldest uncommitted record (zero when none): the older of
    /// the in-flight flush's and the current batch's first read.
    pub fn oldest_uncommitted(&self, now: Instant) -> Vec<((usize, i32), Duration)> {
        self.batches
            .keys()
            .map(|key| {
                let inflight = self
                    .inflight
                    .as_ref()
                    .and_then(|f| f.since.iter().find(|(k, _)| k == key).map(|(_, at)| *at));
                let oldest = match (inflight, self.unflushed_since.get(key).copied()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (
                    *key,
                    oldest.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
                )
            })
            .collect()
    }
}
