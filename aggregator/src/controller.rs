//! The lag-adaptive flush controller. Once a second the ingest loop feeds it the consumer's fetch lag
//! (records written to its partitions but not yet read) and the duration of the last flush; it answers
//! with the flush interval to use. Short when caught up (fresh data for product APIs), longer — bigger
//! batches, fewer round trips, more events folded into each aggregate row — while a backlog drains.
//!
//! Policy (docs/flush-controller.md has the reasoning):
//! 1. Smooth the lag with an exponentially weighted moving average (`alpha`), so one burst does not
//!    swing the interval.
//! 2. Map the smoothed lag to a target on a log scale between `lag_low` (→ `min`) and `lag_high`
//!    (→ `max`): lags span orders of magnitude, and each tenfold step of lag buys the same step of
//!    interval.
//! 3. Never target less than `flush_cost_factor` × the last flush duration, so flushing never takes
//!    most of the time (flushes also never overlap: the loop starts one only when the last finished).
//! 4. Hysteresis: changes under `deadband` (relative) are ignored unless they reach a bound; rises
//!    apply at once (a backlog needs throughput now), falls at most halve the interval per step (no
//!    oscillation as lag drains) — except that once the raw (unsmoothed) lag is at or below `lag_low`
//!    (everything written has been read) the interval drops to the minimum (or the flush-cost floor)
//!    at once: holding a drained buffer longer only delays it.
//!
//! The controller is a pure state machine over its inputs — no clock, no I/O — so tests drive it with
//! series of observations.

use std::time::Duration;

/// Bounds and shape of the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerConfig {
    pub min: Duration,
    pub max: Duration,
    /// Smoothed lag at or below which the interval is `min`.
    pub lag_low: f64,
    /// Smoothed lag at or above which the interval is `max`.
    pub lag_high: f64,
    /// EWMA weight of the newest observation (0 < alpha ≤ 1).
    pub alpha: f64,
    /// The interval is at least this many times the last flush's duration.
    pub flush_cost_factor: f64,
    /// Relative change below which the interval stays as it is.
    pub deadband: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            min: Duration::from_secs(1),
            max: Duration::from_secs(10),
            lag_low: 10_000.0,
            lag_high: 1_000_000.0,
            alpha: 0.4,
            flush_cost_factor: 2.0,
            deadband: 0.1,
        }
    }
}

/// The controller's state.
#[derive(Debug, Clone)]
pub struct FlushController {
    config: ControllerConfig,
    smoothed_lag: Option<f64>,
    interval: Duration,
}

impl FlushController {
    pub fn new(config: ControllerConfig) -> Self {
        FlushController {
            config,
            smoothed_lag: None,
            interval: config.min,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn smoothed_lag(&self) -> f64 {
        self.smoothed_lag.unwrap_or(0.0)
    }

    /// One observation: current fetch lag (records) and the last flush's duration. Returns the interval.
    pub fn observe(&mut self, lag: u64, last_flush: Duration) -> Duration {
        let c = &self.config;
        let lag = lag as f64;
        let smoothed = match self.smoothed_lag {
            None => lag,
            Some(prev) => prev + c.alpha * (lag - prev),
        };
        self.smoothed_lag = Some(smoothed);

        let (min, max) = (
            c.min.as_secs_f64(),
            c.max.as_secs_f64().max(c.min.as_secs_f64()),
        );
        let position = if smoothed <= c.lag_low {
            0.0
        } else if smoothed >= c.lag_high {
            1.0
        } else {
            (smoothed.ln() - c.lag_low.ln()) / (c.lag_high.ln() - c.lag_low.ln())
        };
        // Caught up on fetching (the raw lag, not the smoothed one): what is buffered is all there is,
        // and holding it longer only delays it.
        let caught_up = lag <= c.lag_low;
        let position = if caught_up { 0.0 } else { position };
        let target = (min + (max - min) * position)
            .max(c.flush_cost_factor * last_flush.as_secs_f64())
            .clamp(min, max);

        let current = self.interval.as_secs_f64();
        // Inside the deadband nothing moves — except onto a bound, so that a drained backlog ends at
        // exactly `min` and a large one at exactly `max`.
        let at_bound = target <= min || target >= max;
        let next = if caught_up {
            target
        } else if (target - current).abs() <= c.deadband * current && !at_bound {
            current
        } else if target > current {
            target
        } else {
            target.max(current / 2.0)
        };
        self.interval = Duration::from_secs_f64(next.clamp(min, max));
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        (d.as_secs_f64() * 1000.0).round() / 1000.0
    }

    fn controller() -> FlushController {
        FlushController::new(ControllerConfig {
            alpha: 1.0,
            ..ControllerConfig::default()
        })
    }

    #[test]
    fn caught_up_stays_at_the_minimum() {
        let mut c = controller();
        for lag in [0, 50, 9_999, 10_000, 3] {
            assert_eq!(secs(c.observe(lag, Duration::from_millis(100))), 1.0);
        }
    }

    #[test]
    fn lag_maps_to_the_interval_on_a_log_scale() {
        // Without smoothing and hysteresis in the way: position = log10(lag / 1e4) / 2.
        for (lag, expected) in [(100_000u64, 5.5), (1_000_000, 10.0), (50_000_000, 10.0)] {
            let mut c = controller();
            assert_eq!(secs(c.observe(lag, Duration::ZERO)), expected, "lag {lag}");
        }
    }

    #[test]
    fn slow_flushes_stretch_the_interval() {
        let mut c = controller();
        // Caught up, but the last flush took 3 s: the interval is at least 2 × 3 s.
        assert_eq!(secs(c.observe(0, Duration::from_secs(3))), 6.0);
        // Never beyond the maximum.
        assert_eq!(secs(c.observe(0, Duration::from_secs(30))), 10.0);
    }

    #[test]
    fn backlog_rises_at_once_falls_by_halves_and_drops_to_the_minimum_once_drained() {
        let mut c = controller();
        let lags = [
            0u64, 5_000_000, 4_000_000, 2_000_000, 500_000, 20_000, 0, 0, 0, 0,
        ];
        let series: Vec<f64> = lags
            .iter()
            .map(|&l| secs(c.observe(l, Duration::from_millis(200))))
            .collect();
        // 0 → min; 5M → max at once; 4M, 2M stay at max; 500k → target 1 + 9·log10(50)/2 = 8.645
        // (|8.645 − 10| = 1.355 > 10 % of 10) → 8.645; 20k → target 1 + 9·log10(2)/2 =
        // 2.355, floor at half of 8.645 = 4.323; then 0: drained, straight to the minimum.
        assert_eq!(
            series,
            [1.0, 10.0, 10.0, 10.0, 8.645, 4.323, 1.0, 1.0, 1.0, 1.0]
        );
    }

    #[test]
    fn smoothing_ignores_a_single_spike() {
        let mut c = FlushController::new(ControllerConfig::default()); // alpha 0.4
        c.observe(0, Duration::ZERO);
        // One sample of 30k lag: smoothed 12k → target 1 + 9·log10(1.2)/2 = 1.356, a 36 % rise.
        let after_spike = secs(c.observe(30_000, Duration::ZERO));
        assert_eq!(after_spike, 1.356);
        // Back to 0: smoothed 7.2k ≤ lag_low → target 1.0, and 1.356 → max(1.0, 0.678) = 1.0.
        assert_eq!(secs(c.observe(0, Duration::ZERO)), 1.0);
    }

    #[test]
    fn a_shrinking_backlog_halves_the_interval_at_most_per_step() {
        let mut c = controller();
        let lags = [2_000_000u64, 900_000, 150_000, 60_000, 12_000];
        let series: Vec<f64> = lags
            .iter()
            .map(|&l| secs(c.observe(l, Duration::ZERO)))
            .collect();
        // Targets: 10; 1 + 4.5·log10(90) = 9.794 (inside the 10 % deadband of 10, stays); 6.292;
        // 4.502; 1.356 — limited to half of 4.502 = 2.251.
        assert_eq!(series, [10.0, 10.0, 6.292, 4.502, 2.251]);
    }

    #[test]
    fn small_wobbles_do_not_move_the_interval() {
        let mut c = controller();
        assert_eq!(secs(c.observe(100_000, Duration::ZERO)), 5.5);
        // 110k → 1 + 9·log10(11)/2 = 5.686: within 10 % of 5.5, so 5.5 stays.
        assert_eq!(secs(c.observe(110_000, Duration::ZERO)), 5.5);
    }
}
