//! Per-partition state of one ingest process, shared between the poll loop and the rebalance callback
//! (both run on the poll thread; the mutex is never contended and never held across `poll` or `.await`).
//!
//! - On **assign**, each new partition's stored offset is read from PostgreSQL and the consumer starts
//!   exactly there (or at `start_from` when none is stored): Kafka's committed offset is not trusted.
//!   A replay fence stored with it (`sluice-ingest replay`) goes into the partition's batches, which
//!   then keep the records below it for ClickHouse only.
//! - A **flush** takes every non-empty batch, leaves an empty successor continuing from its end, and runs
//!   on the Tokio runtime; at most one flush is in flight. Its outcomes come back over a channel:
//!   committed partitions get their Kafka offset committed too (informational); a fenced partition (its
//!   stored offset moved under us) drops what it buffered and seeks to the stored offset.
//! - On **revoke**, the in-flight flush is awaited and the revoked partitions' batches are flushed, within
//!   the drain timeout; whatever does not make it is simply not committed and the next owner replays it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_aggregator::dedup::DedupWindow;
use sluice_aggregator::sinks::postgres::Stored;
use sluice_aggregator::sinks::SinkError;
use sluice_aggregator::{FlushOutcome, Flusher, PartitionBatch};
use sluice_schemas::EventKind;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::config::StartFrom;
use crate::metrics::{
    ASSIGNED_PARTITIONS, CONSUMER_LAG, FETCH_LAG, FLUSHES, FLUSH_SECONDS, OLDEST_UNCOMMITTED_AGE,
    REBALANCES,
};
use crate::telemetry::Health;

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

/// A flush running on the runtime.
#[derive(Debug)]
pub struct InFlight {
    outcomes: mpsc::Receiver<Vec<FlushOutcome>>,
    abort: watch::Sender<bool>,
    started: Instant,
    /// When this process read the oldest record of each flushed partition (for the age metric).
    since: Vec<((usize, i32), Instant)>,
}

/// Mutable state: one batch per assigned partition, keyed by (topic index, partition).
#[derive(Debug, Default)]
pub struct State {
    pub batches: HashMap<(usize, i32), PartitionBatch>,
    /// Each partition's idempotency window (absent when deduplication is off).
    pub dedup: HashMap<(usize, i32), DedupWindow>,
    pub inflight: Option<InFlight>,
    /// Partition counts of the subscribed topics (by topic index), read from the brokers on assignment:
    /// what the misrouting check divides by.
    pub partition_counts: HashMap<usize, i32>,
    /// When this process read the oldest record of each partition's current (not yet flushing) batch.
    pub unflushed_since: HashMap<(usize, i32), Instant>,
}

impl State {
    pub fn buffered_bytes(&self) -> usize {
        self.batches.values().map(|b| b.approx_bytes).sum()
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

/// Everything the poll loop and the rebalance callback share.
#[derive(Debug)]
pub struct Partitions {
    state: Mutex<State>,
    pub topics: Topics,
    flusher: Flusher,
    handle: Handle,
    start_from: StartFrom,
    drain_timeout: Duration,
    dedup_window_ms: Option<i64>,
    /// Total fetch lag of the assigned partitions, from the last statistics callback.
    pub fetch_lag: AtomicU64,
    /// Duration of the last completed flush, in microseconds.
    pub last_flush_micros: AtomicU64,
    /// Liveness and readiness, for the health endpoints.
    pub health: Arc<Health>,
}

/// Why ingest must stop: a permanent sink error. Nothing was committed past durable data.
#[derive(Debug, thiserror::Error)]
#[error("flush of {topic}/{partition} failed permanently: {error}")]
pub struct FatalFlush {
    pub topic: String,
    pub partition: i32,
    pub error: String,
}

impl Partitions {
    pub fn new(
        topics: Topics,
        flusher: Flusher,
        handle: Handle,
        start_from: StartFrom,
        drain_timeout: Duration,
        dedup_window_ms: Option<i64>,
    ) -> Self {
        Partitions {
            state: Mutex::new(State::default()),
            topics,
            flusher,
            handle,
            start_from,
            drain_timeout,
            dedup_window_ms,
            fetch_lag: AtomicU64::new(0),
            last_flush_micros: AtomicU64::new(0),
            health: Arc::new(Health::default()),
        }
    }

    /// Locks the state. A poisoned lock means a panic on the poll thread, which already ended ingest.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// Starts a flush of every non-empty batch unless one is in flight. Returns whether one started.
    pub fn start_flush(&self, state: &mut State) -> bool {
        if state.inflight.is_some() {
            return false;
        }
        let mut batches = Vec::new();
        let mut since = Vec::new();
        for (key, batch) in state.batches.iter_mut() {
            if !batch.is_empty() {
                let next = batch.successor();
                batches.push(std::mem::replace(batch, next));
                if let Some(at) = state.unflushed_since.remove(key) {
                    since.push((*key, at));
                }
            }
        }
        if batches.is_empty() {
            return false;
        }
        state.inflight = Some(self.spawn_flush(batches, since));
        true
    }

    fn spawn_flush(
        &self,
        batches: Vec<PartitionBatch>,
        since: Vec<((usize, i32), Instant)>,
    ) -> InFlight {
        let (tx, rx) = mpsc::channel();
        let (abort_tx, abort_rx) = watch::channel(false);
        let flusher = self.flusher.clone();
        self.handle.spawn(async move {
            let outcomes = flusher.flush(batches, abort_rx).await;
            // The receiver is gone only if ingest already stopped; replay covers that.
            let _ = tx.send(outcomes);
        });
        self.health
            .flush_started_ms
            .store(crate::telemetry::now_ms(), Ordering::Relaxed);
        InFlight {
            outcomes: rx,
            abort: abort_tx,
            started: Instant::now(),
            since,
        }
    }

    /// After a flush: partitions it committed (or that were fenced and start over) have nothing old
    /// left; any other outcome leaves their records uncommitted, still as old as they were.
    fn settle_ages(
        &self,
        state: &mut State,
        since: Vec<((usize, i32), Instant)>,
        outcomes: &[FlushOutcome],
    ) {
        for (key, at) in since {
            let settled = outcomes.iter().any(|o| match o {
                FlushOutcome::Committed {
                    topic, partition, ..
                }
                | FlushOutcome::Fenced {
                    topic, partition, ..
                } => *partition == key.1 && self.topics.index(topic) == Some(key.0),
                _ => false,
            });
            if !settled && state.batches.contains_key(&key) {
                let entry = state.unflushed_since.entry(key).or_insert(at);
                *entry = (*entry).min(at);
            }
        }
    }

    /// Applies the in-flight flush's outcomes if it is done (`wait` = how long to wait for it; on timeout
    /// the flush is aborted and awaited briefly). Returns `Ok(true)` if no flush is in flight afterwards.
    pub fn poll_flush(
        &self,
        consumer: &BaseConsumer<IngestContext>,
        state: &mut State,
        wait: Duration,
    ) -> Result<bool, FatalFlush> {
        let Some(inflight) = &state.inflight else {
            return Ok(true);
        };
        let received = match inflight.outcomes.recv_timeout(wait) {
            Ok(outcomes) => Some(outcomes),
            Err(mpsc::RecvTimeoutError::Timeout) if wait.is_zero() => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    waited_ms = wait.as_millis() as u64,
                    "flush did not finish in time, aborting it"
                );
                let _ = inflight.abort.send(true);
                inflight.outcomes.recv_timeout(Duration::from_secs(5)).ok()
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Vec::new()),
        };
        let Some(outcomes) = received else {
            return Ok(false);
        };
        self.health.flush_started_ms.store(0, Ordering::Relaxed);
        let (started, since) = state
            .inflight
            .take()
            .map_or((None, Vec::new()), |f| (Some(f.started), f.since));
        self.settle_ages(state, since, &outcomes);
        if let Some(started) = started {
            let took = started.elapsed();
            metrics::histogram!(FLUSH_SECONDS).record(took.as_secs_f64());
            self.last_flush_micros
                .store(took.as_micros() as u64, Ordering::Relaxed);
        }
        self.apply(consumer, state, outcomes)?;
        Ok(true)
    }

    fn apply(
        &self,
        consumer: &BaseConsumer<IngestContext>,
        state: &mut State,
        outcomes: Vec<FlushOutcome>,
    ) -> Result<(), FatalFlush> {
        let mut commit = TopicPartitionList::new();
        let mut fatal = None;
        for outcome in outcomes {
            let label = match &outcome {
                FlushOutcome::Committed { .. } => "committed",
                FlushOutcome::Fenced { .. } => "fenced",
                FlushOutcome::Aborted { .. } => "aborted",
                FlushOutcome::Failed { .. } => "failed",
            };
            metrics::counter!(FLUSHES, "outcome" => label).increment(1);
            match outcome {
                FlushOutcome::Committed {
                    topic,
                    partition,
                    next_offset,
                } => {
                    if let Err(e) =
                        commit.add_partition_offset(&topic, partition, Offset::Offset(next_offset))
                    {
                        tracing::warn!(%topic, partition, error = %e, "cannot record kafka commit");
                    }
                }
                FlushOutcome::Fenced {
                    topic,
                    partition,
                    stored,
                } => {
                    tracing::warn!(%topic, partition, ?stored, "stored offset moved under this consumer; dropping its buffer and seeking to it");
                    let Some(index) = self.topics.index(&topic) else {
                        continue;
                    };
                    if state.batches.contains_key(&(index, partition)) {
                        // Start over from what is stored: offset, dedup window and all.
                        let stored = self.load_stored_retrying(&topic, &[partition]);
                        let at = stored.get(&partition).copied();
                        self.install(state, index, &topic, partition, at);
                        let offset =
                            at.map_or(self.start_offset(), |s| Offset::Offset(s.next_offset));
                        if let Err(e) =
                            consumer.seek(&topic, partition, offset, Duration::from_secs(10))
                        {
                            tracing::error!(%topic, partition, error = %e, "seek after fencing failed");
                        }
                    }
                }
                FlushOutcome::Aborted { topic, partition } => {
                    tracing::warn!(%topic, partition, "flush aborted; the partition will be replayed from its stored offset");
                }
                FlushOutcome::Failed {
                    topic,
                    partition,
                    error,
                } => {
                    tracing::error!(%topic, partition, %error, "flush failed permanently");
                    fatal.get_or_insert(FatalFlush {
                        topic,
                        partition,
                        error,
                    });
                }
            }
        }
        if commit.count() > 0 {
            // Informational: the truth is in PostgreSQL. Async so the poll loop never waits for it.
            if let Err(e) = consumer.commit(&commit, CommitMode::Async) {
                tracing::debug!(error = %e, "kafka offset commit failed (informational only)");
            }
        }
        fatal.map_or(Ok(()), Err)
    }

    fn start_offset(&self) -> Offset {
        match self.start_from {
            StartFrom::Earliest => Offset::Beginning,
            StartFrom::Latest => Offset::End,
        }
    }

    /// Reads the partition count of each topic in `tpl` from the brokers (for the misrouting check). A
    /// topic whose metadata cannot be read keeps its last count, or goes unchecked.
    fn refresh_partition_counts(
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
    fn on_assign(&self, tpl: &mut TopicPartitionList) {
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
    fn install(
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
        if let (Some(window), false) = (self.dedup_window_ms, self.flusher.is_noop()) {
            let watermark = at.and_then(|s| s.watermark_ms).unwrap_or(0);
            let entries = self.retrying(topic, || {
                self.flusher
                    .sinks()
                    .postgres
                    .load_dedup(topic, partition, watermark)
            });
            let mut restored = DedupWindow::restore(window, watermark, entries.unwrap_or_default());
            // Assigned mid-turn: the clock until the poll loop's next turn sets it again.
            restored.set_clock(chrono::Utc::now().timestamp_millis());
            state.dedup.insert(key, restored);
        }
    }

    fn load_stored_retrying(&self, topic: &str, partitions: &[i32]) -> HashMap<i32, Stored> {
        if self.flusher.is_noop() {
            return HashMap::new();
        }
        self.retrying(topic, || {
            self.flusher
                .sinks()
                .postgres
                .load_offsets(topic, partitions)
        })
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
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.handle.block_on(op()) {
                Ok(value) => return Some(value),
                Err(e) if !self.health.stopping.load(Ordering::Relaxed) => {
                    tracing::warn!(%topic, error = %e, "cannot read stored state, retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "cannot read stored state while stopping");
                    return None;
                }
            }
        }
    }

    /// Drains revoked partitions: waits for the in-flight flush, flushes their batches, drops them.
    fn on_revoke(&self, consumer: &BaseConsumer<IngestContext>, tpl: &TopicPartitionList) {
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

/// The rdkafka context: routes rebalances to [`Partitions`] and logs client errors.
#[derive(Debug, Clone)]
pub struct IngestContext {
    pub partitions: Arc<Partitions>,
}

impl ClientContext for IngestContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.partitions.health.brokers_down();
        }
    }

    /// librdkafka's statistics (every `statistics.interval.ms`, on the poll thread): per assigned
    /// partition, the fetch lag (high watermark − next record for the application) feeds the flush
    /// controller, and the commit lag (high watermark − committed offset, i.e. records not yet durable)
    /// is exported.
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Readiness: is any broker connection up? (Bootstrap entries included: a client that never
        // reached one has nothing else.)
        if statistics.brokers.values().any(|b| b.state == "UP") {
            self.partitions.health.brokers_up();
        } else {
            self.partitions.health.brokers_down();
        }
        let assigned: std::collections::HashSet<(usize, i32)> =
            self.partitions.lock().batches.keys().copied().collect();
        let mut fetch_lag_total = 0u64;
        for (topic, t) in &statistics.topics {
            let Some(index) = self.partitions.topics.index(topic) else {
                continue;
            };
            for (&partition, p) in &t.partitions {
                if partition < 0 || !assigned.contains(&(index, partition)) || p.hi_offset < 0 {
                    continue;
                }
                let position = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.committed_offset
                };
                let fetch_lag = if position >= 0 {
                    (p.hi_offset - position).max(0)
                } else {
                    0
                };
                fetch_lag_total += fetch_lag as u64;
                let labels = [
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                metrics::gauge!(FETCH_LAG, &labels).set(fetch_lag as f64);
                if p.consumer_lag >= 0 {
                    metrics::gauge!(CONSUMER_LAG, &labels).set(p.consumer_lag as f64);
                }
            }
        }
        self.partitions
            .fetch_lag
            .store(fetch_lag_total, Ordering::Relaxed);
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.partitions.refresh_partition_counts(consumer, tpl);
                self.partitions.on_assign(tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.partitions.on_revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
    }
}
