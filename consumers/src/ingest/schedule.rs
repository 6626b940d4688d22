//! When to flush, and when to stop fetching. Once per poll-loop turn the loop tells the schedule how
//! much it buffers and whether it found nothing to read; the schedule answers whether a flush is due:
//! by the lag-adaptive interval (`sluice_aggregator::controller::FlushController`, fed once a second with
//! the fetch lag and the last flush's duration), early when the buffer passes its memory budget (bytes
//! or aggregate keys), or as soon as the minimum interval has passed when there is nothing left to read
//! (a drained buffer waits no longer).
//!
//! The byte budget counts everything the batches hold, including the batches of the flush in flight
//! (they live until the flush ends): a flush starts early once the accumulating batches hold half the
//! batch budget, and fetching pauses while the accumulating batches plus the in-flight ones hold all of
//! it — so a slow flush cannot let the next batch grow to a second budget beside it. A flush can always
//! start (nothing waits for memory to start one), so a single batch over the budget still flushes, and
//! fetching resumes as soon as it ends. The dedup windows share the budget: once a second the loop
//! reports their bytes, which come out of what the batches may hold — down to an eighth of it, so
//! that ingest keeps flushing even when the windows alone outgrow the budget (then memory exceeds
//! `max_buffered_bytes` and the loop says so). Pure decisions over the inputs: no clock is read here.

use std::time::{Duration, Instant};

use sluice_aggregator::controller::{ControllerConfig, FlushController};

/// The flush schedule of one poll loop.
#[derive(Debug)]
pub struct FlushSchedule {
    controller: FlushController,
    min: Duration,
    /// Bytes the batches and the dedup windows may hold together ([`crate::config::Config::batch_budget_bytes`]).
    batch_bytes: usize,
    /// Bytes the dedup windows hold (reported once a second): not available to the batches.
    dedup_bytes: usize,
    max_buffered_keys: usize,
    last_flush_started: Option<Instant>,
}

impl FlushSchedule {
    pub fn new(controller: ControllerConfig, batch_bytes: usize, max_buffered_keys: usize) -> Self {
        FlushSchedule {
            min: controller.min,
            controller: FlushController::new(controller),
            batch_bytes,
            dedup_bytes: 0,
            max_buffered_keys,
            last_flush_started: None,
        }
    }

    /// The dedup windows now hold `bytes`: they come out of the batches' share from here on.
    pub fn set_dedup_bytes(&mut self, bytes: usize) {
        self.dedup_bytes = bytes;
    }

    /// What the batches may hold, accumulating and in flight together: the budget less the dedup
    /// windows, at least an eighth of the budget.
    pub fn batch_budget(&self) -> usize {
        self.batch_bytes
            .saturating_sub(self.dedup_bytes)
            .max(self.batch_bytes / 8)
    }

    /// True when the dedup windows leave the batches only their floor: memory then exceeds the budget.
    pub fn squeezed(&self) -> bool {
        self.batch_bytes.saturating_sub(self.dedup_bytes) < self.batch_bytes / 8
    }

    /// The interval the controller asks for now.
    pub fn interval(&self) -> Duration {
        self.controller.interval()
    }

    /// Whether the accumulating batches should be flushed now, before the interval: they hold half the
    /// batch budget (the other half is for the next batches while this one flushes) or the key budget.
    pub fn flush_early(&self, buffered_bytes: usize, buffered_keys: usize) -> bool {
        buffered_bytes >= self.batch_budget() / 2 || buffered_keys >= self.max_buffered_keys
    }

    /// Whether a flush is due at `now` by time: the interval has passed since the last one started, or
    /// the loop found nothing to read (`idle`) and the minimum interval has passed. The first call
    /// starts the clock.
    pub fn due(&mut self, now: Instant, idle: bool) -> bool {
        let last = *self.last_flush_started.get_or_insert(now);
        let since = now.duration_since(last);
        since >= self.controller.interval() || (idle && since >= self.min)
    }

    /// A flush started at `now` (or there was nothing to flush and none in flight): the interval counts
    /// from here.
    pub fn restart(&mut self, now: Instant) {
        self.last_flush_started = Some(now);
    }

    /// Whether fetching must pause: a flush is in flight (`in_flight` = the bytes of its batches) and the
    /// accumulating batches plus the in-flight ones hold the batch budget, or the accumulating ones hold
    /// the key budget. Without a flush in flight it never pauses: the next flush can start, and must.
    pub fn should_pause(
        &self,
        buffered_bytes: usize,
        buffered_keys: usize,
        in_flight: Option<usize>,
    ) -> bool {
        in_flight.is_some_and(|flushing| {
            buffered_bytes.saturating_add(flushing) >= self.batch_budget()
                || buffered_keys >= self.max_buffered_keys
        })
    }

    /// Once a second: the fetch lag and the last flush's duration move the interval; returns it.
    pub fn observe(&mut self, lag: u64, last_flush: Duration) -> Duration {
        self.controller.observe(lag, last_flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn schedule() -> FlushSchedule {
        let config = ControllerConfig {
            min: 2 * S,
            max: 30 * S,
            ..ControllerConfig::default()
        };
        FlushSchedule::new(config, 1000, 10)
    }

    #[test]
    fn a_flush_is_due_once_the_interval_has_passed() {
        let mut s = schedule();
        let t0 = Instant::now();
        assert_eq!(s.interval(), 2 * S);
        assert!(!s.due(t0, false));
        assert!(!s.due(t0 + Duration::from_millis(1999), false));
        assert!(s.due(t0 + 2 * S, false));
        s.restart(t0 + 2 * S);
        assert!(!s.due(t0 + 3 * S, false));
        assert!(s.due(t0 + 4 * S, false));
    }

    #[test]
    fn a_long_interval_is_cut_to_the_minimum_when_nothing_is_left_to_read() {
        let mut s = schedule();
        // A large backlog stretches the interval past the minimum.
        let interval = s.observe(100_000_000, Duration::ZERO);
        assert!(interval > 2 * S, "{interval:?}");
        let t0 = Instant::now();
        assert!(!s.due(t0, false));
        assert!(!s.due(t0 + 2 * S, false), "busy: waits for the interval");
        assert!(
            !s.due(t0 + Duration::from_millis(1999), true),
            "idle: not before the minimum"
        );
        assert!(s.due(t0 + 2 * S, true), "idle: the minimum is enough");
    }

    #[test]
    fn a_flush_starts_early_at_half_the_byte_budget_or_at_the_key_budget() {
        let s = schedule();
        assert!(!s.flush_early(499, 9));
        assert!(s.flush_early(500, 0));
        assert!(s.flush_early(0, 10));
    }

    #[test]
    fn the_bytes_of_the_flush_in_flight_count_toward_the_pause() {
        let s = schedule();
        // Accumulating alone is under the budget, but with the in-flight batches it holds all of it.
        assert!(s.should_pause(400, 0, Some(600)));
        assert!(s.should_pause(0, 0, Some(1000)));
        assert!(!s.should_pause(400, 0, Some(599)));
        assert!(!s.should_pause(0, 0, Some(999)));
        // The key budget counts the accumulating batches only (it bounds one flush's rows).
        assert!(s.should_pause(0, 10, Some(0)));
        assert!(!s.should_pause(0, 9, Some(0)));
    }

    #[test]
    fn without_a_flush_in_flight_fetching_never_pauses() {
        let s = schedule();
        // Even far over budget: the next flush must be able to start, so a single over-budget batch
        // still flushes and nothing stalls.
        assert!(!s.should_pause(5000, 50, None));
        assert!(!s.should_pause(usize::MAX, usize::MAX, None));
        assert!(
            s.should_pause(usize::MAX, 0, Some(usize::MAX)),
            "no overflow"
        );
    }

    /// The dedup windows' bytes leave the batches less room: a flush starts early, and fetching pauses,
    /// that much sooner — but the batches keep an eighth of the budget however large the windows grow.
    #[test]
    fn the_dedup_windows_take_their_bytes_out_of_the_batches_share() {
        let mut s = schedule();
        s.set_dedup_bytes(400);
        assert_eq!(s.batch_budget(), 600);
        assert!(!s.squeezed());
        assert!(!s.flush_early(299, 0));
        assert!(s.flush_early(300, 0));
        assert!(!s.should_pause(100, 0, Some(499)));
        assert!(s.should_pause(100, 0, Some(500)));
        // The windows alone at or above seven eighths of the budget: the batches keep 125 bytes.
        s.set_dedup_bytes(875);
        assert_eq!(s.batch_budget(), 125);
        assert!(!s.squeezed());
        s.set_dedup_bytes(876);
        assert_eq!(s.batch_budget(), 125);
        assert!(s.squeezed());
        s.set_dedup_bytes(usize::MAX);
        assert_eq!(s.batch_budget(), 125);
        assert!(!s.flush_early(61, 0));
        assert!(s.flush_early(62, 0));
        assert!(s.should_pause(0, 0, Some(125)));
        // Windows that shrink (expired keys swept) give the room back.
        s.set_dedup_bytes(0);
        assert_eq!(s.batch_budget(), 1000);
        assert!(!s.should_pause(0, 0, Some(999)));
    }
}
