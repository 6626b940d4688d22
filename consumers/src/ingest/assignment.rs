//! Assignment and revocation, as the rebalance callback delivers them (on the poll thread).
//!
//! - On **assign**, each new partition's stored offset is read from PostgreSQL and the consumer starts
//!   exactly there (or at `start_from` when none is stored): Kafka's committed offset is not trusted.
//!   The idempotency window stored with it is loaded, and a replay fence stored with it
//!   (`sluice-ingest replay`) goes into the partition's batches, which then keep the records below it
//!   for ClickHouse only. Without its stored state a partition cannot start exactly, so reads are
//!   retried (with the sinks' backoff) until they succeed or the process stops.
//! - On **revoke**, the in-flight flush is awaited and the revoked partitions' batches are flushed, within
//!   the drain timeout; whatever does not make it is simply not committed and the next owner replays it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::{Offset, TopicPartitionList};
use sluice_aggregator::dedup::DedupWindow;
use sluice_aggregator::PartitionBatch;
use sluice_sinks::postgres::Stored;
use sluice_sinks::retry::Backoff;
use sluice_sinks::SinkError;

use super::context::IngestContext;
use super::partitions::Partitions;
use super::state::State;
use crate::config::StartFrom;
use crate::metrics::{
    ASSIGNED_PARTITIONS, CONSUMER_LAG, FETCH_LAG, OLDEST_UNCOMMITTED_AGE, REBALANCES,
};

impl Partitions {
    pub(super) fn start_offset(&self) -> Offset {
        match self.start_from {
            StartFrom::Earliest => Offset::Beginning,
            StartFrom::Latest => Offset::End,
        }
    }

    /// Reads the partition count of each topic in `tpl` from the brokers (for the misrouting check). A
    /// topic whose metadata cannot be read keeps its last count, or goes unchecked.
    pub(super) fn refresh_partition_counts(
        &self,
        consumer: &BaseConsumer<IngestContext>,
        tpl: &TopicPartitionList,
    ) {
        let mut topics: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_owned())
            .collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let Some(index) = self.topics.index(&topic) else {
                continue;
            };
            match consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)) {
                Ok(metadata) => {
                    if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                        let count = t.partitions().len() as i32;
                        if count > 0 {
                            self.lock().partition_counts.insert(index, count);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "cannot read the partition count; misrouting is not checked until the next assignment")
                }
            }
        }
    }

    /// Reads stored offsets for newly assigned partitions and records them in `tpl`; creates batches.
    pub(super) fn on_assign(&self, tpl: &mut TopicPartitionList) {
        metrics::counter!(REBALANCES, "kind" => "assign").increment(1);
        let mut by_topic: HashMap<String, Vec<i32>> = HashMap::new();
        for elem in tpl.elements() {
            by_topic
                .entry(elem.topic().to_owned())
                .or_default()
                .push(elem.partition());
        }
        let mut resumed = 0;
        for (topic, parts) in by_topic {
            let Some(index) = self.topics.index(&topic) else {
                continue;
            };
            let stored = self.load_stored_retrying(&topic, &parts);
            let mut state = self.lock();
            for partition in parts {
                let at = stored.get(&partition).copied();
                resumed += usize::from(at.is_some());
                self.install(&mut state, index, &topic, partition, at);
                let offset = at.map_or(self.start_offset(), |s| Offset::Offset(s.next_offset));
                if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                    tracing::error!(%topic, partition, error = %e, "cannot set start offset");
                }
                tracing::debug!(%topic, partition, stored = ?at, "partition assigned");
            }
        }
        self.health.joined.store(true, Ordering::Relaxed);
        let state = self.lock();
        tracing::info!(
            assigned = tpl.count(),
            total = state.batches.len(),
            resumed_from_stored = resumed,
            "partitions assigned"
        );
        metrics::gauge!(ASSIGNED_PARTITIONS).set(state.batches.len() as f64);
    }

    /// Replaces a partition's batch (and dedup window) with the state stored in PostgreSQL.
    pub(super) fn install(
        &self,
        state: &mut State,
        index: usize,
        topic: &str,
        partition: i32,
        at: Option<Stored>,
    ) {
        let key = (index, partition);
        state.unflushed_since.remove(&key);
        let replay_until = at.and_then(|s| s.replay_until);
        if let (Some(stored), Some(fence)) = (at, replay_until) {
            tracing::info!(
                %topic,
                partition,
                from = stored.next_offset,
                replay_until = fence,
                "replaying: records below the fence go to ClickHouse only"
            );
        }
        state.batches.insert(
            key,
            PartitionBatch::new(topic, partition, at.map(|s| s.next_offset))
                .with_replay_until(replay_until),
        );
        if let (Some(window), Some(postgres)) = (self.dedup_window_ms, &self.stored) {
            let watermark = at.and_then(|s| s.watermark_ms).unwrap_or(0);
            let entries = self.retrying(topic, || postgres.load_dedup(topic, partition, watermark));
            let mut restored = DedupWindow::restore(window, watermark, entries.unwrap_or_default());
            // Assigned mid-turn: the clock until the poll loop's next turn sets it again.
            restored.set_clock(chrono::Utc::now().timestamp_millis());
            state.dedup.insert(key, restored);
        }
    }

    pub(super) fn load_stored_retrying(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> HashMap<i32, Stored> {
        let Some(postgres) = &self.stored else {
            return HashMap::new();
        };
        self.retrying(topic, || postgres.load_offsets(topic, partitions))
            .unwrap_or_default()
    }

    /// Runs a PostgreSQL read until it succeeds. Without the stored offset (and window) we cannot know
    /// where to start, so waiting is the only exact choice; the consumer stays in the group while
    /// max.poll.interval.ms allows. Gives up (`None`) only when the process is stopping.
    fn retrying<T, F, Fut>(&self, topic: &str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match self.handle.block_on(op()) {
                Ok(value) => return Some(value),
                Err(e) if !self.health.shutdown.is_triggered() => {
                    tracing::warn!(%topic, error = %e, "cannot read stored state, retrying");
                    std::thread::sleep(backoff.next_delay());
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "cannot read stored state while stopping");
                    return None;
                }
            }
        }
    }

    /// Drains revoked partitions: waits for the in-flight flush, flushes their batches, drops them.
    pub(super) fn on_revoke(
        &self,
        consumer: &BaseConsumer<IngestContext>,
        tpl: &TopicPartitionList,
    ) {
        metrics::counter!(REBALANCES, "kind" => "revoke").increment(1);
        let deadline = Instant::now() + self.drain_timeout;
        let mut state = self.lock();
        if let Err(e) = self.poll_flush(consumer, &mut state, self.drain_timeout) {
            tracing::error!(error = %e, "flush failed during revoke; the next owner replays it");
        }
        let revoked: Vec<(usize, i32)> = tpl
            .elements()
            .iter()
            .filter_map(|e: &TopicPartitionListElem<'_>| {
                self.topics.index(e.topic()).map(|i| (i, e.partition()))
            })
            .collect();
        let lost = consumer.assignment_lost();
        for key in &revoked {
            state.dedup.remove(key);
            state.unflushed_since.remove(key);
            // The lag gauges describe owned partitions only: another instance reports these now.
            let labels = [
                ("topic", self.topics.name(key.0).to_owned()),
                ("partition", key.1.to_string()),
            ];
            metrics::gauge!(FETCH_LAG, &labels).set(0.0);
            metrics::gauge!(CONSUMER_LAG, &labels).set(0.0);
            metrics::gauge!(OLDEST_UNCOMMITTED_AGE, &labels).set(0.0);
        }
        let batches: Vec<PartitionBatch> = revoked
            .iter()
            .filter_map(|key| state.batches.remove(key))
            .filter(|b| !b.is_empty())
            .collect();
        if !batches.is_empty() && !lost {
            let remaining = deadline.saturating_duration_since(Instant::now());
            state.inflight = Some(self.spawn_flush(batches, Vec::new()));
            if let Err(e) = self.poll_flush(consumer, &mut state, remaining) {
                tracing::error!(error = %e, "flush failed during revoke; the next owner replays it");
            }
        }
        tracing::info!(partitions = revoked.len(), lost, "partitions revoked");
        metrics::gauge!(ASSIGNED_PARTITIONS).set(state.batches.len() as f64);
    }
}
