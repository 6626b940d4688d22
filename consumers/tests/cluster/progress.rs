//! How long ingest stood still: a sampler scrapes ingest's `/metrics` every 100 ms and notes when each
//! sink's written-rows counter (`sluice_sink_rows_total{sink=…}`) moved. With traffic flowing, a healthy
//! pipeline moves both every flush interval or so; the longest time between two moves is the stall a
//! failure caused, and the first move after it is when the pipeline resumed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_loadtest::kit::metrics;

pub(crate) const SINKS: [&str; 2] = ["postgres", "clickhouse"];

/// One scrape: when, and each sink's rows written so far (in [`SINKS`] order).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    rows: [f64; 2],
}

/// A running sampler; [`Progress::stop`] ends it and returns what it saw.
pub(crate) struct Progress {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The longest stall of one sink: from its last move before, to its first move after.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stall {
    pub(crate) sink: &'static str,
    pub(crate) from: Instant,
    pub(crate) to: Instant,
}

impl Stall {
    pub(crate) fn length(&self) -> Duration {
        self.to - self.from
    }
}

/// Rows written by one sink according to an exposition (every `table` label summed).
fn rows_of(exposition: &str, sink: &str) -> f64 {
    let label = format!("sink=\"{sink}\"");
    exposition
        .lines()
        .filter(|l| l.starts_with("sluice_sink_rows_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Progress {
    pub(crate) fn watch(metrics_addr: &str) -> Progress {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let addr = metrics_addr.to_owned();
        let out = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(text) = metrics::scrape(&addr).await {
                    let sample = Sample {
                        at: Instant::now(),
                        rows: SINKS.map(|sink| rows_of(&text, sink)),
                    };
                    out.lock().expect("samples").push(sample);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress { samples, task }
    }

    /// Waits until both sinks have written rows (ingest has started, migrated and flushed once), up to
    /// `timeout`.
    pub(crate) async fn wait_moving(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.samples.lock().expect("samples").last().copied();
            if last.is_some_and(|s| s.rows.iter().all(|rows| *rows > 0.0)) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no rows written by both sinks within {timeout:?} (last scrape: {last:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops sampling; returns each sink's longest stall between its first and last move inside
    /// `[from, until]` (a stall still open at `until` ends there).
    pub(crate) fn stop(self, from: Instant, until: Instant) -> Vec<Stall> {
        self.task.abort();
        let samples = self.samples.lock().expect("samples").clone();
        (0..SINKS.len())
            .map(|i| longest_stall(&samples, i, from, until))
            .collect()
    }
}

fn longest_stall(samples: &[Sample], sink: usize, from: Instant, until: Instant) -> Stall {
    // The instants at which the counter was seen higher than at the previous scrape.
    let moves: Vec<Instant> = samples
        .windows(2)
        .filter(|w| w[1].rows[sink] > w[0].rows[sink])
        .map(|w| w[1].at)
        .filter(|at| *at >= from && *at <= until)
        .collect();
    let mut longest = Stall {
        sink: SINKS[sink],
        from,
        to: moves.first().copied().unwrap_or(until),
    };
    let ends = moves.iter().copied().chain(std::iter::once(until));
    for (a, b) in moves.iter().copied().zip(ends.skip(1)) {
        if b - a > longest.length() {
            longest = Stall {
                sink: SINKS[sink],
                from: a,
                to: b,
            };
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn the_longest_gap_between_moves_is_the_stall() {
        let t = Instant::now();
        // postgres moves at 100, 200, 1200 (gap 1000), 1300; clickhouse moves at 100, then nothing.
        let rows = [
            (0, [0.0, 0.0]),
            (100, [5.0, 5.0]),
            (200, [6.0, 5.0]),
            (700, [6.0, 5.0]),
            (1200, [9.0, 5.0]),
            (1300, [10.0, 5.0]),
        ];
        let samples: Vec<Sample> = rows
            .iter()
            .map(|(ms, r)| Sample {
                at: at(t, *ms),
                rows: *r,
            })
            .collect();
        let pg = longest_stall(&samples, 0, t, at(t, 1400));
        assert_eq!((pg.from, pg.to), (at(t, 200), at(t, 1200)));
        let ch = longest_stall(&samples, 1, t, at(t, 1400));
        assert_eq!((ch.from, ch.to), (at(t, 100), at(t, 1400)));
    }

    #[test]
    fn rows_are_summed_over_tables_of_one_sink() {
        let text = "sluice_sink_rows_total{sink=\"postgres\",table=\"click_daily\"} 3\n\
                    sluice_sink_rows_total{sink=\"postgres\",table=\"rank_daily\"} 4\n\
                    sluice_sink_rows_total{sink=\"clickhouse\",table=\"click_events\"} 10\n";
        assert_eq!(rows_of(text, "postgres"), 7.0);
        assert_eq!(rows_of(text, "clickhouse"), 10.0);
    }
}
