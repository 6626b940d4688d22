//! The in-flight flush, from start to outcome. [`Partitions::start_flush`] takes every non-empty batch
//! (leaving an empty successor that continues from its end) and runs `sluice_sinks::Flusher::flush` on
//! the Tokio runtime; at most one flush is in flight, so flushes never overlap. Between polls the loop
//! calls [`Partitions::poll_flush`]; once the outcomes are in, `apply` acts on each partition's: a
//! committed partition gets its Kafka offset committed too (informational: the truth is the offset
//! PostgreSQL stored with the aggregates); a fenced one (its stored offset moved under us) drops what it
//! buffered and seeks to the stored offset; an aborted one is replayed by whoever owns it next; a
//! failed one stops ingest ([`FatalFlush`]). A flush that outlives its deadline is aborted through its
//! own switch.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_aggregator::PartitionBatch;
use sluice_sinks::FlushOutcome;
use tokio::sync::watch;

use super::context::IngestContext;
use super::partitions::Partitions;
use super::state::State;
use crate::metrics::{FLUSHES, FLUSH_SECONDS};

/// A flush running on the runtime.
#[derive(Debug)]
pub struct InFlight {
    pub(super) outcomes: mpsc::Receiver<Vec<FlushOutcome>>,
    abort: watch::Sender<bool>,
    started: Instant,
    /// When this process read the oldest record of each flushed partition (for the age metric).
    pub(super) since: Vec<((usize, i32), Instant)>,
    /// The flushed batches' `approx_bytes`: held until the flush ends, so they count toward the memory
    /// budget until then.
    pub(super) bytes: usize,
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

    pub(super) fn spawn_flush(
        &self,
        batches: Vec<PartitionBatch>,
        since: Vec<((usize, i32), Instant)>,
    ) -> InFlight {
        let bytes = batches.iter().map(|b| b.approx_bytes).sum();
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
            bytes,
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
}
