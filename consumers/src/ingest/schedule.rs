//! When to flush, and when to stop fetching. Once per poll-loop turn the loop tells the schedule how
//! much it buffers and whether it found nothing to read; the schedule answers whether a flush is due:
//! by the lag-adaptive interval (`sluice_aggregator::controller::FlushController`, fed once a second with
//! the fetch lag and the last flush's duration), early when the buffer passes its memory budget (bytes
//! or aggregate keys), or as soon as the minimum interval has passed when there is nothing left to read
//! (a drained buffer waits no longer). Fetching pauses while the buffer is over budget and a flush is
//! still in flight, so memory stays bounded without leaving the group. Pure decisions over the inputs:
//! no clock is read here.

use std::time::{Duration, Instant};

use sluice_aggregator::controller::{ControllerConfig, FlushController};

/// The flush schedule of one poll loop.
#[derive(Debug)]
pub struct FlushSchedule {
    controller: FlushController,
    min: Duration,
    max_buffered_bytes: usize,
    max_buffered_keys: usize,
    last_flush_started: Option<Instant>,
}

impl FlushSchedule {
    pub fn new(
        controller: ControllerConfig,
        max_buffered_bytes: usize,
        max_buffered_keys: usize,
    ) -> Self {
        FlushSchedule {
            min: controller.min,
            controller: FlushController::new(controller),
            max_buffered_bytes,
            max_buffered_keys,
            last_flush_started: None,
        }
    }

    /// The interval the controller asks for now.
    pub fn interval(&self) -> Duration {
        self.controller.interval()
    }

    /// Whether the buffer is over its memory budget (flush early; pause fetching while a flush runs).
    pub fn over_budget(&self, buffered_bytes: usize, buffered_keys: usize) -> bool {
        buffered_bytes >= self.max_buffered_bytes || buffered_keys >= self.max_buffered_keys
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

    /// Fetching pauses while over budget with a flush in flight (it resumes once either ends).
    pub fn should_pause(over_budget: bool, flush_in_flight: bool) -> bool {
        over_budget && flush_in_flight
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
    fn over_budget_by_bytes_or_keys_and_pause_only_with_a_flush_in_flight() {
        let s = schedule();
        assert!(!s.over_budget(999, 9));
        assert!(s.over_budget(1000, 0));
        assert!(s.over_budget(0, 10));
        assert!(FlushSchedule::should_pause(true, true));
        assert!(!FlushSchedule::should_pause(true, false));
        assert!(!FlushSchedule::should_pause(false, true));
    }
}
