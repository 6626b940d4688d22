//! The one backoff every retry loop uses: exponential with full jitter. Attempt n waits a uniformly
//! random time in `0..=min(max, initial × 2ⁿ)` ("full jitter": many consumers that failed together do not
//! retry together). [`retry_transient`] drives an async operation with it: a transient
//! [`SinkError`] is retried, anything else is returned at once, and a stop signal ends the wait.
//!
//! Why not a crate: `backon` (the well-kept choice) adds its jitter on top of the exponential delay
//! instead of drawing the whole delay, and a loop that also watches our stop signal and classifies our
//! error is as long as the adapter would be.

use std::future::Future;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::error::SinkError;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    cap: Duration,
    rng: SmallRng,
}

impl Backoff {
    /// Delays start below `initial` and their cap doubles per attempt up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self::with_rng(initial, max, SmallRng::from_rng(&mut rand::rng()))
    }

    /// The same with a fixed seed: reproducible delays, for tests.
    pub fn seeded(initial: Duration, max: Duration, seed: u64) -> Self {
        Self::with_rng(initial, max, SmallRng::seed_from_u64(seed))
    }

    fn with_rng(initial: Duration, max: Duration, rng: SmallRng) -> Self {
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            cap: initial,
            rng,
        }
    }

    /// The upper bound of the next delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The delay before the next attempt: uniform in `0..=cap`; the cap then doubles (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.rng.random_range(Duration::ZERO..=self.cap);
        self.cap = (self.cap * 2).min(self.max);
        delay
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.cap = self.initial;
    }
}

/// Runs `op` until it succeeds (`Ok(Some)`), fails with an error that is not transient (`Err`), or
/// `stop` turns true (`Ok(None)`: checked before each attempt and while waiting). `on_retry` sees each
/// transient error with the delay about to be slept (for logs and metrics).
pub async fn retry_transient<T, F, Fut>(
    backoff: &mut Backoff,
    mut stop: watch::Receiver<bool>,
    mut op: F,
    mut on_retry: impl FnMut(&SinkError, Duration),
) -> Result<Option<T>, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    loop {
        if *stop.borrow() {
            return Ok(None);
        }
        match op().await {
            Ok(value) => return Ok(Some(value)),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                on_retry(&e, delay);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::time::Instant;

    use super::*;
    use crate::error::ErrorClass;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn caps_double_to_the_maximum_and_delays_stay_under_them() {
        let mut backoff = Backoff::seeded(100 * MS, 1000 * MS, 7);
        let mut caps = Vec::new();
        for _ in 0..6 {
            let cap = backoff.cap();
            let delay = backoff.next_delay();
            assert!(delay <= cap, "{delay:?} > {cap:?}");
            caps.push(cap.as_millis());
        }
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.cap(), 100 * MS);
    }

    #[test]
    fn full_jitter_spreads_delays_over_the_whole_range() {
        // 2,000 draws at a cap of 1 s: a quarter below 250 ms and a quarter above 750 ms, roughly.
        let mut backoff = Backoff::seeded(1000 * MS, 1000 * MS, 42);
        let draws: Vec<Duration> = (0..2000).map(|_| backoff.next_delay()).collect();
        let low = draws.iter().filter(|d| **d < 250 * MS).count();
        let high = draws.iter().filter(|d| **d > 750 * MS).count();
        assert!((400..600).contains(&low), "{low} of 2000 below 250 ms");
        assert!((400..600).contains(&high), "{high} of 2000 above 750 ms");
    }

    fn transient() -> SinkError {
        SinkError::transient("postgres", "connection refused")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_with_the_drawn_delays() {
        let (_stop_tx, stop) = watch::channel(false);
        let attempts = Cell::new(0);
        let mut slept = Vec::new();
        let started = Instant::now();
        let mut backoff = Backoff::seeded(100 * MS, 1000 * MS, 3);
        // The delays the same seed draws, computed apart from the loop.
        let mut expected = Backoff::seeded(100 * MS, 1000 * MS, 3);
        let expected: Vec<Duration> = (0..3).map(|_| expected.next_delay()).collect();
        let result = retry_transient(
            &mut backoff,
            stop,
            || {
                attempts.set(attempts.get() + 1);
                let n = attempts.get();
                async move {
                    if n < 4 {
                        Err(transient())
                    } else {
                        Ok(n)
                    }
                }
            },
            |_, delay| slept.push(delay),
        )
        .await;
        assert_eq!(result, Ok(Some(4)));
        assert_eq!(slept, expected);
        // The paused clock fires timers on whole milliseconds: each sleep ends up to 1 ms late.
        let (drawn, elapsed) = (expected.iter().sum::<Duration>(), started.elapsed());
        assert!(
            drawn <= elapsed && elapsed <= drawn + 3 * MS,
            "{elapsed:?} for {drawn:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_or_data_error_is_returned_without_waiting() {
        for class in [ErrorClass::Permanent, ErrorClass::Data] {
            let (_stop_tx, stop) = watch::channel(false);
            let started = Instant::now();
            let error = SinkError::new("clickhouse", class, Some("60".into()), "no such table");
            let mut backoff = Backoff::seeded(100 * MS, 1000 * MS, 1);
            let result: Result<Option<()>, _> = retry_transient(
                &mut backoff,
                stop,
                || async { Err(error.clone()) },
                |_, _| panic!("no retry"),
            )
            .await;
            assert_eq!(result, Err(error));
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait_at_once() {
        let (stop_tx, stop) = watch::channel(false);
        let started = Instant::now();
        // The first delay this seed draws is longer than the 50 ms after which the stop comes.
        let mut backoff = Backoff::seeded(10_000 * MS, 10_000 * MS, 9);
        assert!(backoff.clone().next_delay() > 50 * MS);
        tokio::spawn(async move {
            tokio::time::sleep(50 * MS).await;
            stop_tx.send_replace(true);
        });
        let result: Result<Option<()>, _> =
            retry_transient(&mut backoff, stop, || async { Err(transient()) }, |_, _| {}).await;
        assert_eq!(result, Ok(None));
        assert_eq!(started.elapsed(), 50 * MS);
    }
}
