//! Rates of a run from what it samples: high watermarks through one long-lived Kafka client, and the
//! moments ingest's consumed counter changed on its `/metrics` (ingest publishes counters once a second,
//! so rates are taken between changes, and the moment a total was reached is interpolated).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kit::kafka::Offsets;
use crate::kit::metrics::{metric_sum, scrape};

/// The counter the rates are read from.
pub(super) const CONSUMED: &str = "sluice_ingest_records_consumed_total";

/// High watermarks through one long-lived client (a new client per second would be a new connection).
#[derive(Clone)]
pub(super) struct Watermarks {
    consumer: Arc<BaseConsumer>,
    partitions: Vec<(String, i32)>,
}

impl Watermarks {
    pub(super) fn new(
        brokers: &str,
        topics: &[String],
        partitions: i32,
    ) -> anyhow::Result<Watermarks> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .context("cannot create a kafka client")?;
        Ok(Watermarks {
            consumer: Arc::new(consumer),
            partitions: topics
                .iter()
                .flat_map(|t| (0..partitions).map(move |p| (t.clone(), p)))
                .collect(),
        })
    }

    pub(super) async fn high(&self) -> anyhow::Result<Offsets> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Offsets::new();
            for (topic, p) in &this.partitions {
                let (_, high) = this
                    .consumer
                    .fetch_watermarks(topic, *p, Duration::from_secs(5))
                    .with_context(|| format!("watermarks of {topic}/{p}"))?;
                out.insert((topic.clone(), *p), high);
            }
            Ok(out)
        })
        .await
        .context("watermark task")?
    }
}

/// Moments a counter on ingest's `/metrics` changed: `(seconds since t0, value)`. Ingest publishes
/// its counters once a second, so rates are taken between changes, never between fixed ticks.
#[derive(Clone, Default)]
pub(super) struct ChangePoints(Arc<Mutex<Vec<(f64, f64)>>>);

impl ChangePoints {
    pub(super) fn spawn(
        addr: String,
        t0: Instant,
        every: Duration,
        stop: Arc<AtomicBool>,
    ) -> ChangePoints {
        let points = ChangePoints::default();
        let out = points.clone();
        tokio::spawn(async move {
            let mut last = -1.0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = scrape(&addr).await {
                    let value = metric_sum(&text, CONSUMED);
                    if value != last {
                        last = value;
                        let t = t0.elapsed().as_secs_f64();
                        out.lock().push((t, value));
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        points
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(f64, f64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn points(&self) -> Vec<(f64, f64)> {
        self.lock().clone()
    }

    pub(super) fn latest(&self) -> f64 {
        self.lock().last().map_or(0.0, |p| p.1)
    }

    /// The rate between the last two changes; 0 when the counter has not moved for `STALE_S` at
    /// `now_s` (fetching paused, or nothing to read).
    pub(super) fn recent_rate(&self, now_s: f64) -> f64 {
        let p = self.lock();
        match p.len() {
            0 | 1 => 0.0,
            n if now_s - p[n - 1].0 > STALE_S => 0.0,
            n => rate(p[n - 2], p[n - 1]),
        }
    }
}

/// Ingest publishes its counters about once a second; no change for this long means no progress.
pub(super) const STALE_S: f64 = 2.5;

/// The highest rate over `span` consecutive publications of a counter (about `span` seconds: a
/// single interval can be short or long by the publication jitter and would exaggerate).
pub(super) fn peak_rate(points: &[(f64, f64)], span: usize) -> f64 {
    points
        .windows(span + 1)
        .map(|w| rate(w[0], w[span]))
        .fold(0.0, f64::max)
}

pub(super) fn rate(a: (f64, f64), b: (f64, f64)) -> f64 {
    if b.0 > a.0 {
        (b.1 - a.1) / (b.0 - a.0)
    } else {
        0.0
    }
}

/// When a once-a-second counter reached `total`: within its last publication interval, by the rate of
/// the interval before (the counter only says "by this second"); the change time when it cannot tell.
pub(super) fn reach_time(points: &[(f64, f64)], total: f64) -> Option<f64> {
    let n = points.iter().position(|p| p.1 >= total)?;
    let (tn, _) = points[n];
    if n >= 2 {
        let r = rate(points[n - 2], points[n - 1]);
        if r > 0.0 {
            return Some((points[n - 1].0 + (total - points[n - 1].1) / r).min(tn));
        }
    }
    Some(tn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn peak_rate_spans_several_publications() {
        let points = [(1.0, 100.0), (1.5, 1100.0), (2.0, 1200.0), (3.0, 1300.0)];
        assert_eq!(peak_rate(&points, 1), 2000.0);
        assert_eq!(peak_rate(&points, 3), 600.0);
        assert_eq!(peak_rate(&points[..2], 3), 0.0);
    }

    #[test]
    pub(super) fn reach_time_interpolates_the_last_second() {
        // 100/s, published once a second; the total (250) is reached at 2.5 s, seen at 3.0 s.
        let points = [(1.0, 100.0), (2.0, 200.0), (3.0, 250.0)];
        assert_eq!(reach_time(&points, 250.0), Some(2.5));
        assert_eq!(reach_time(&[(1.0, 250.0)], 250.0), Some(1.0));
        assert_eq!(reach_time(&points, 300.0), None);
    }
}
