//! The poll loop. One thread owns the rdkafka `BaseConsumer` and does all per-record work: decode,
//! validate, fold into the partition's batch. Everything slow happens elsewhere: flushes run on the
//! Tokio runtime while the loop keeps consuming into fresh batches (`inflight`; at most one in flight),
//! and the loop only checks for their outcomes between polls. When to flush and when to pause fetching
//! is the [`FlushSchedule`]'s answer, asked once per turn. On shutdown it stops fetching, flushes what it
//! holds, and returns within the configured deadline; anything not flushed by then was never committed
//! and is replayed by whoever owns the partition next.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use sluice_aggregator::batch::Unfit;
use sluice_aggregator::{DeadLetter, Offered};
use sluice_schemas::{
    decode, Encoding, EventKind, Limits, RejectReason, Rejection, ENCODING_HEADER,
};

use super::context::IngestContext;
use super::partitions::Partitions;
use super::schedule::FlushSchedule;
use super::shutdown::Shutdown;
use crate::metrics::{
    BATCH_BUDGET_BYTES, BUFFERED_BYTES, BUFFERED_EVENTS, BUFFERED_KEYS, DEDUP_BYTES, DEDUP_KEYS,
    DUPLICATES, EVENTS_AGGREGATED, FLUSHING_BYTES, FLUSH_INTERVAL_SECONDS, OLDEST_UNCOMMITTED_AGE,
    PAUSED, RECORDS_CONSUMED, RECORDS_REJECTED, RECORDS_REPLAYED,
};
use crate::routing::{self, MisroutedCounts};

/// Records handled per loop turn before housekeeping (flush checks, metrics) runs.
const RECORDS_PER_TURN: usize = 2048;
/// Rejections logged per second; the rest are counted and summarized.
const REJECT_LOGS_PER_SECOND: u32 = 20;
/// Misrouted records logged per second (they are not refused, so they can be the whole stream).
const MISROUTED_LOGS_PER_SECOND: u32 = 2;

/// The poll thread's loop and what it owns.
pub(super) struct PollLoop {
    pub(super) consumer: BaseConsumer<IngestContext>,
    pub(super) partitions: Arc<Partitions>,
    /// Keep refused records for the dead-letter topic.
    pub(super) dead_letters: bool,
    pub(super) limits: Limits,
    pub(super) schedule: FlushSchedule,
    pub(super) shutdown_timeout: Duration,
    pub(super) shutdown: Shutdown,
}

/// Counts accumulated on the hot path and published once per turn.
#[derive(Default)]
struct Counts {
    consumed: [u64; 3],
    aggregated: [u64; 3],
    duplicates: [u64; 3],
    replayed: [u64; 3],
    rejected: HashMap<(EventKind, RejectReason), u64>,
    reject_logs: LogBudget,
    misrouted: MisroutedCounts,
    misrouted_logs: LogBudget,
}

/// At most `per_second` log lines of one kind a second; the rest are counted and summarized.
#[derive(Default)]
struct LogBudget {
    per_second: u32,
    left: u32,
    suppressed: u64,
}

impl LogBudget {
    fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            left: per_second,
            suppressed: 0,
        }
    }

    /// Whether one more line may be logged this second (if not, it is counted).
    fn allow(&mut self) -> bool {
        if self.left > 0 {
            self.left -= 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Summarizes what this second suppressed (`what`: "records rejected", …) and refills the budget.
    fn next_second(&mut self, what: &str) {
        if self.suppressed > 0 {
            tracing::warn!(suppressed = self.suppressed, "more {what} than logged");
            self.suppressed = 0;
        }
        self.left = self.per_second;
    }
}

fn kind_slot(kind: EventKind) -> usize {
    match kind {
        EventKind::Rank => 0,
        EventKind::Crawl => 1,
        EventKind::Click => 2,
    }
}

impl Counts {
    fn publish(&mut self) {
        let per_kind = [
            (RECORDS_CONSUMED, &mut self.consumed),
            (EVENTS_AGGREGATED, &mut self.aggregated),
            (DUPLICATES, &mut self.duplicates),
            (RECORDS_REPLAYED, &mut self.replayed),
        ];
        for (name, counts) in per_kind {
            for kind in EventKind::ALL {
                let n = std::mem::take(&mut counts[kind_slot(kind)]);
                if n > 0 {
                    metrics::counter!(name, "kind" => kind.as_str()).increment(n);
                }
            }
        }
        self.misrouted.publish(|slot| EventKind::ALL[slot]);
        for ((kind, reason), n) in self.rejected.drain() {
            metrics::counter!(RECORDS_REJECTED, "kind" => kind.as_str(), "reason" => reason.as_str()).increment(n);
        }
    }
}

impl PollLoop {
    pub(super) fn run(mut self) -> anyhow::Result<()> {
        let mut counts = Counts {
            reject_logs: LogBudget::new(REJECT_LOGS_PER_SECOND),
            misrouted_logs: LogBudget::new(MISROUTED_LOGS_PER_SECOND),
            ..Counts::default()
        };
        let mut next_second = Instant::now() + Duration::from_secs(1);
        let mut paused = false;
        let mut squeezed = false;
        metrics::gauge!(FLUSH_INTERVAL_SECONDS).set(self.schedule.interval().as_secs_f64());
        while !self.shutdown.is_triggered() {
            self.partitions.health.beat();
            let mut timeout = Duration::from_millis(100);
            let mut idle = false;
            // One clock read per turn for the timestamp-window check (at most ~100 ms stale against
            // a window of an hour ahead and a year back), not one per record.
            let now = chrono::Utc::now();
            // The same clock caps the dedup time of this turn's records (DedupWindow::set_clock).
            self.partitions
                .lock()
                .set_dedup_clock(now.timestamp_millis());
            for _ in 0..RECORDS_PER_TURN {
                match self.consumer.poll(timeout) {
                    None => {
                        idle = true;
                        break;
                    }
                    Some(Ok(message)) => self.handle(&message, now, &mut counts),
                    Some(Err(e)) => tracing::warn!(error = %e, "kafka consume error"),
                }
                timeout = Duration::ZERO;
            }

            let now = Instant::now();
            let mut state = self.partitions.lock();
            state.mark_unflushed(now);
            self.partitions
                .poll_flush(&self.consumer, &mut state, Duration::ZERO)?;
            let buffered = state.buffered_bytes();
            let keys = state.buffered_keys();
            if self.schedule.due(now, idle) || self.schedule.flush_early(buffered, keys) {
                // Starts only when no flush is in flight: flushes never overlap.
                let started = self.partitions.start_flush(&mut state);
                if !started && state.inflight.is_none() {
                    // Nothing to flush: the last flush's cost no longer says anything about the next.
                    self.partitions
                        .last_flush_micros
                        .store(0, Ordering::Relaxed);
                }
                if started || state.inflight.is_none() {
                    self.schedule.restart(now);
                }
            }
            // After a flush may have started: its batches now count as in flight.
            let inflight = state.inflight_bytes();
            let should_pause =
                self.schedule
                    .should_pause(state.buffered_bytes(), state.buffered_keys(), inflight);
            let flushing = inflight.unwrap_or(0);
            // The once-a-second gauges' readings, taken while the state is locked anyway.
            let second = (now >= next_second).then(|| {
                (
                    state.buffered_events(),
                    state.dedup_keys(),
                    state.dedup_bytes(),
                    state.oldest_uncommitted(now),
                )
            });
            drop(state);
            if should_pause != paused {
                self.set_paused(should_pause);
                paused = should_pause;
            }
            if let Some((events, dedup_keys, dedup_bytes, ages)) = second {
                self.budget_dedup_windows(dedup_bytes, &mut squeezed);
                let lag = self.partitions.fetch_lag.load(Ordering::Relaxed);
                let last_flush = Duration::from_micros(
                    self.partitions.last_flush_micros.load(Ordering::Relaxed),
                );
                let before = self.schedule.interval();
                let interval = self.schedule.observe(lag, last_flush);
                if interval != before {
                    tracing::debug!(
                        lag,
                        interval_ms = interval.as_millis() as u64,
                        "flush interval changed"
                    );
                }
                metrics::gauge!(FLUSH_INTERVAL_SECONDS).set(interval.as_secs_f64());
                counts.publish();
                counts.reject_logs.next_second("records rejected");
                counts.misrouted_logs.next_second("misrouted records");
                for ((topic, partition), age) in ages {
                    let labels = [
                        ("topic", self.partitions.topics.name(topic).to_owned()),
                        ("partition", partition.to_string()),
                    ];
                    metrics::gauge!(OLDEST_UNCOMMITTED_AGE, &labels).set(age.as_secs_f64());
                }
                metrics::gauge!(BUFFERED_BYTES).set(buffered as f64);
                metrics::gauge!(FLUSHING_BYTES).set(flushing as f64);
                metrics::gauge!(BUFFERED_EVENTS).set(events as f64);
                metrics::gauge!(BUFFERED_KEYS).set(keys as f64);
                metrics::gauge!(DEDUP_KEYS).set(dedup_keys as f64);
                metrics::gauge!(DEDUP_BYTES).set(dedup_bytes as f64);
                next_second = now + Duration::from_secs(1);
            }
        }
        counts.publish();
        self.drain()
    }

    fn handle(
        &self,
        message: &BorrowedMessage<'_>,
        now: chrono::DateTime<chrono::Utc>,
        counts: &mut Counts,
    ) {
        let Some(topic) = self.partitions.topics.index(message.topic()) else {
            return;
        };
        let kind = self.partitions.topics.kind(topic);
        let header = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == ENCODING_HEADER)
                .map(|h| h.value.unwrap_or_default())
        });
        let payload = message.payload().unwrap_or_default();
        let decoded = Encoding::from_header(header)
            .and_then(|encoding| decode(kind, encoding, payload, &self.limits, now));
        let offset = message.offset();
        counts.consumed[kind_slot(kind)] += 1;
        let mut guard = self.partitions.lock();
        let state = &mut *guard;
        let key = (topic, message.partition());
        // A record of a partition no longer assigned (revoked between fetch and poll) is not ours.
        let Some(batch) = state.batches.get_mut(&key) else {
            return;
        };
        // A record is refused when it does not decode and validate, or — a gap in validation — when a
        // raw table cannot hold one of its values (the batch then changed nothing).
        let rejection = match decoded {
            Ok(event) => {
                // The Kafka timestamp is part of the log, so replays decide duplicates identically.
                let ts = message
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(|| event.occurred_at().timestamp_millis());
                let slot = kind_slot(kind);
                if !batch.replaying(offset) {
                    let placed = routing::check(
                        message.key(),
                        event.tenant_id(),
                        event.entity(),
                        message.partition(),
                        state.partition_counts.get(&topic).copied(),
                    );
                    if let Some(reason) = placed {
                        counts.misrouted.add(slot, reason);
                        if counts.misrouted_logs.allow() {
                            tracing::warn!(
                                topic = %message.topic(),
                                partition = message.partition(),
                                offset,
                                reason = reason.as_str(),
                                "record is not on the partition Kafka's murmur2 assigns to its key \
                                 {{tenant_id}}/{{entity}}: a copy of it on another partition would be \
                                 counted again (docs/guarantees.md)"
                            );
                        }
                    }
                }
                match batch.offer(event, offset, ts, state.dedup.get_mut(&key)) {
                    Ok(offered) => {
                        match offered {
                            Offered::Added => counts.aggregated[slot] += 1,
                            Offered::Duplicate => counts.duplicates[slot] += 1,
                            Offered::Replayed => counts.replayed[slot] += 1,
                        }
                        return;
                    }
                    Err(Unfit(detail)) => Rejection::new(RejectReason::InvalidField, detail),
                }
            }
            Err(rejection) => rejection,
        };
        // Below a replay fence: rejected, counted, logged and dead-lettered the first time.
        if batch.replaying(offset) {
            batch.reject(offset, None);
            counts.replayed[kind_slot(kind)] += 1;
        } else {
            {
                let letter = self.dead_letters.then(|| DeadLetter {
                    offset,
                    key: message.key().map(<[u8]>::to_vec),
                    value: payload.to_vec(),
                    headers: message
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp_ms: message.timestamp().to_millis(),
                    reason: rejection.reason.as_str(),
                    detail: rejection.detail.clone(),
                });
                batch.reject(offset, letter);
                *counts.rejected.entry((kind, rejection.reason)).or_insert(0) += 1;
                if counts.reject_logs.allow() {
                    tracing::warn!(
                        topic = %message.topic(),
                        partition = message.partition(),
                        offset,
                        reason = %rejection.reason,
                        detail = %rejection.detail,
                        "record rejected"
                    );
                }
            }
        }
    }

    /// The dedup windows now hold `bytes` of the memory budget: the batches get the rest (at least an
    /// eighth of their share). Says so once, each time the windows start to crowd the batches down to
    /// that floor — memory then exceeds `max_buffered_bytes` — and once when they no longer do.
    fn budget_dedup_windows(&mut self, bytes: usize, squeezed: &mut bool) {
        self.schedule.set_dedup_bytes(bytes);
        metrics::gauge!(BATCH_BUDGET_BYTES).set(self.schedule.batch_budget() as f64);
        let now = self.schedule.squeezed();
        if now && !*squeezed {
            tracing::warn!(
                dedup_bytes = bytes,
                batch_budget_bytes = self.schedule.batch_budget(),
                "the dedup windows hold nearly all of max_buffered_bytes: the batches keep an eighth \
                 of their share and memory exceeds the budget; raise max_buffered_bytes or lower \
                 dedup_window_secs"
            );
        } else if !now && *squeezed {
            tracing::info!(
                dedup_bytes = bytes,
                "the dedup windows fit the memory budget again"
            );
        }
        *squeezed = now;
    }

    fn set_paused(&self, pause: bool) {
        let result = self.consumer.assignment().and_then(|assignment| {
            if pause {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
        });
        match result {
            Ok(()) => tracing::info!(paused = pause, "fetching paused for the memory budget"),
            Err(e) => tracing::warn!(error = %e, "cannot pause/resume fetching"),
        }
        metrics::gauge!(PAUSED).set(if pause { 1.0 } else { 0.0 });
    }

    /// Final flush within the shutdown deadline.
    fn drain(self) -> anyhow::Result<()> {
        // Not ready any more, and stored-state reads stop retrying (already so when the stop came from
        // the signal; not when the loop ended otherwise).
        self.shutdown.trigger();
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut state = self.partitions.lock();
        self.partitions
            .poll_flush(&self.consumer, &mut state, self.shutdown_timeout)?;
        let events = state.buffered_events();
        if self.partitions.start_flush(&mut state) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            self.partitions
                .poll_flush(&self.consumer, &mut state, remaining)?;
        }
        let left = state.buffered_events();
        drop(state);
        tracing::info!(
            flushed_events = events - left.min(events),
            "final flush done; leaving the group"
        );
        // Dropping the consumer closes it: the group rebalances and our (empty) partitions are revoked.
        drop(self.consumer);
        Ok(())
    }
}
