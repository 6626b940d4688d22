//! Event → queryable latency. Generators send every K-th event as a latency probe (under
//! [`PROBE_TENANT`], with a delivery report) and report it as a [`Sample`]: its produce time (wall clock
//! just before it was handed to the producer), its partition and offset. Two pollers then watch for it:
//!
//! - **PostgreSQL**: an event's aggregates become visible in the transaction that moves its partition's
//!   `sluice_offsets.next_offset` past its offset (durable = queryable). The poller reads the group's
//!   stored offsets every `pg_every` and stamps each sample whose offset is below its partition's.
//! - **ClickHouse**: the raw row with that `event_id`. Every `ch_every` one statement reads, per raw
//!   table, the probe tenant's rows at or after each partition's oldest pending probe; every pending
//!   probe among them is stamped. The probes share one short range of the primary index (`tenant_id`
//!   leads every sort key), so a poll reads a few granules per part whatever the backlog. The versions
//!   before looked the samples up by their full sort keys, one granule per part per sample: the first
//!   looked up every pending sample (about half a core of ClickHouse at 100k events/s), the second
//!   searched each partition's pending samples in rounds, so a poll under load took seconds and stamps
//!   came tens of seconds late (docs/BENCHMARKS.md, session 17).
//!
//! A stamp is the wall-clock time the lookup that first saw the event *returned*: an upper bound, at
//! most one poll period plus the lookups' duration late. The report gives the poll periods and what
//! the polls cost.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sluice_schemas::EventKind;
use sqlx::PgPool;

use super::generate::{now_us, Sample, PROBE_TENANT};

/// A sample and when it became visible (Unix µs).
#[derive(Debug, Clone)]
pub struct Tracked {
    pub sample: Sample,
    pub pg_us: Option<i64>,
    pub ch_us: Option<i64>,
}

/// What the pollers cost: statements run and their total wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PollCost {
    pub pg_queries: u64,
    pub pg_seconds: f64,
    pub ch_queries: u64,
    pub ch_seconds: f64,
}

/// All samples of a run, shared by the generator readers (which add) and the pollers (which stamp).
#[derive(Debug, Clone, Default)]
pub struct Tracker(Arc<Mutex<Vec<Tracked>>>, Arc<Mutex<PollCost>>);

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Vec<Tracked>> {
        // A poisoned lock only means a poller panicked mid-update; the stamps are still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, sample: Sample) {
        self.lock().push(Tracked {
            sample,
            pg_us: None,
            ch_us: None,
        });
    }

    /// (samples, visible in PostgreSQL, visible in ClickHouse).
    pub fn counts(&self) -> (usize, usize, usize) {
        let all = self.lock();
        (
            all.len(),
            all.iter().filter(|t| t.pg_us.is_some()).count(),
            all.iter().filter(|t| t.ch_us.is_some()).count(),
        )
    }

    pub fn snapshot(&self) -> Vec<Tracked> {
        self.lock().clone()
    }

    pub fn cost(&self) -> PollCost {
        *self.1.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_cost(&self, pg: bool, seconds: f64) {
        let mut cost = self.1.lock().unwrap_or_else(|e| e.into_inner());
        if pg {
            cost.pg_queries += 1;
            cost.pg_seconds += seconds;
        } else {
            cost.ch_queries += 1;
            cost.ch_seconds += seconds;
        }
    }
}

/// Nearest-rank percentiles and extremes of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(mut values_ms: Vec<f64>) -> Percentiles {
        if values_ms.is_empty() {
            return Percentiles::default();
        }
        values_ms.sort_by(f64::total_cmp);
        let n = values_ms.len();
        let rank = |p: f64| values_ms[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Percentiles {
            count: n,
            min_ms: values_ms[0],
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: values_ms[n - 1],
            mean_ms: values_ms.iter().sum::<f64>() / n as f64,
        }
    }
}

/// Latencies of the visible samples: (PostgreSQL, ClickHouse).
pub fn summarize(samples: &[Tracked]) -> (Percentiles, Percentiles) {
    let ms = |at: Option<i64>, t: &Tracked| at.map(|a| (a - t.sample.produced_us) as f64 / 1000.0);
    (
        Percentiles::of(samples.iter().filter_map(|t| ms(t.pg_us, t)).collect()),
        Percentiles::of(samples.iter().filter_map(|t| ms(t.ch_us, t)).collect()),
    )
}

/// Stamps samples whose partition's stored offset has passed them, every `every`, until `stop`.
pub async fn poll_postgres(
    tracker: Tracker,
    pg: PgPool,
    group: String,
    topics: BTreeMap<EventKind, String>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let started = std::time::Instant::now();
        let result = crate::kit::kafka::stored_offsets(&pg, &group).await;
        tracker.add_cost(true, started.elapsed().as_secs_f64());
        let stored = match result {
            Ok(stored) => stored,
            Err(e) => {
                tracing::debug!(error = %e, "latency poll of sluice_offsets failed");
                continue;
            }
        };
        let at = now_us();
        for t in tracker.lock().iter_mut().filter(|t| t.pg_us.is_none()) {
            let Some(topic) = topics.get(&t.sample.kind) else {
                continue;
            };
            let key = (topic.clone(), t.sample.partition);
            if stored.get(&key).is_some_and(|&next| next > t.sample.offset) {
                t.pg_us = Some(at);
            }
        }
    }
}

/// `SELECT event_id FROM <table> WHERE tenant_id = '<probe tenant>' AND (…)`: the visible probes of
/// one kind at or after each partition's oldest pending probe (`oldest`: partition → offset).
/// `tenant_id` leads every raw table's sort key, so the primary index narrows the read to the probes'
/// few granules in each part, however many rows the table holds.
pub fn lookup_sql(kind: EventKind, oldest: &BTreeMap<i32, i64>) -> String {
    let table = match kind {
        EventKind::Rank => "rank_events",
        EventKind::Crawl => "crawl_events",
        EventKind::Click => "click_events",
    };
    let from: Vec<String> = oldest
        .iter()
        .map(|(partition, offset)| {
            format!("(kafka_partition = {partition} AND kafka_offset >= {offset})")
        })
        .collect();
    format!(
        "SELECT event_id FROM {table} WHERE tenant_id = '{PROBE_TENANT}' AND ({})",
        from.join(" OR ")
    )
}

#[derive(Debug, Row, Deserialize)]
struct Found {
    event_id: String,
}

/// The oldest pending (not yet seen in ClickHouse) probe's offset, per kind and partition.
fn oldest_pending(samples: &[Tracked]) -> BTreeMap<EventKind, BTreeMap<i32, i64>> {
    let mut oldest: BTreeMap<EventKind, BTreeMap<i32, i64>> = BTreeMap::new();
    for t in samples.iter().filter(|t| t.ch_us.is_none()) {
        let offset = oldest
            .entry(t.sample.kind)
            .or_default()
            .entry(t.sample.partition)
            .or_insert(t.sample.offset);
        *offset = (*offset).min(t.sample.offset);
    }
    oldest
}

/// Stamps `at` on every sample not yet seen in ClickHouse whose event id is in `found`; returns how
/// many it stamped.
fn stamp_found(samples: &mut [Tracked], found: &HashSet<String>, at: i64) -> usize {
    let mut stamped = 0;
    for t in samples.iter_mut().filter(|t| t.ch_us.is_none()) {
        if found.contains(&t.sample.event_id) {
            t.ch_us = Some(at);
            stamped += 1;
        }
    }
    stamped
}

/// Stamps probes whose raw row has appeared in ClickHouse, every `every` (or, when a lookup gets slow,
/// every 10 × its duration, so that lookups take at most 10 % of the time; from `hurry` on, once
/// nothing is being written any more, every `every` again), until `stop`. Each poll is one statement:
/// per kind, the probes at or after each partition's oldest pending one ([`lookup_sql`]).
pub async fn poll_clickhouse(
    tracker: Tracker,
    ch: clickhouse::Client,
    every: Duration,
    stop: Arc<AtomicBool>,
    hurry: Arc<AtomicBool>,
) {
    let mut pause = every;
    while !stop.load(Ordering::Relaxed) {
        pause_unless_hurried(pause, every, &stop, &hurry).await;
        let oldest = oldest_pending(&tracker.lock());
        if oldest.is_empty() {
            pause = every;
            continue;
        }
        let statement: Vec<String> = oldest
            .iter()
            .map(|(&kind, from)| lookup_sql(kind, from))
            .collect();
        let started = std::time::Instant::now();
        let result = ch.query(&statement.join(" UNION ALL ")).fetch_all().await;
        let took = started.elapsed();
        tracker.add_cost(false, took.as_secs_f64());
        match result {
            Ok(rows) => {
                let found: HashSet<String> = rows.into_iter().map(|f: Found| f.event_id).collect();
                stamp_found(&mut tracker.lock(), &found, now_us());
            }
            Err(e) => tracing::debug!(error = %e, "latency poll of clickhouse failed"),
        }
        // The lookups run on the database being measured: keep them under 1/DUTY of the time.
        pause = every
            .max(took * DUTY)
            .saturating_sub(took)
            .max(Duration::from_millis(10));
    }
}

/// The ClickHouse poller waits at least this many times its last poll's lookup time.
const DUTY: u32 = 10;

/// Waits `pause`, but no longer than `every` once `hurry` is set (or until `stop`). A poll that took
/// seconds under load sets a pause of tens of seconds; once the run has drained, the last samples must
/// not wait for it (the 10 s the driver gives the pollers then would not see them).
async fn pause_unless_hurried(
    pause: Duration,
    every: Duration,
    stop: &AtomicBool,
    hurry: &AtomicBool,
) {
    let started = tokio::time::Instant::now();
    let step = Duration::from_millis(100).min(every);
    loop {
        let waited = started.elapsed();
        let limit = if hurry.load(Ordering::Relaxed) {
            pause.min(every)
        } else {
            pause
        };
        if waited >= limit || stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(step.min(limit - waited)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long pause (a slow poll under load) ends within `every` once the run is hurried.
    #[tokio::test(start_paused = true)]
    async fn a_hurried_poller_does_not_sit_out_its_pause() {
        let stop = Arc::new(AtomicBool::new(false));
        let hurry = Arc::new(AtomicBool::new(false));
        let every = Duration::from_millis(250);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn({
            let (stop, hurry) = (Arc::clone(&stop), Arc::clone(&hurry));
            async move { pause_unless_hurried(Duration::from_secs(60), every, &stop, &hurry).await }
        });
        tokio::time::sleep(Duration::from_millis(5050)).await;
        assert!(
            !waiting.is_finished(),
            "the pause ended before it was hurried"
        );
        hurry.store(true, Ordering::Relaxed);
        waiting.await.unwrap();
        // Hurried 5.05 s in, past `every` already: it returns at its next 100 ms step.
        assert_eq!(started.elapsed(), Duration::from_millis(5100));

        // Not hurried: the whole pause.
        hurry.store(false, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        pause_unless_hurried(Duration::from_secs(60), every, &stop, &hurry).await;
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(p.count, 100);
        assert_eq!(Percentiles::of(vec![]).count, 0);
        assert_eq!(Percentiles::of(vec![3.0]).p99_ms, 3.0);
    }

    fn tracked(kind: EventKind, partition: i32, offset: i64, ch_us: Option<i64>) -> Tracked {
        Tracked {
            sample: Sample {
                generator: 1,
                event_id: format!("{kind}-{partition}-{offset}"),
                kind,
                partition,
                offset,
                produced_us: 0,
            },
            pg_us: None,
            ch_us,
        }
    }

    #[test]
    fn a_poll_reads_each_partition_from_its_oldest_pending_probe() {
        let samples = vec![
            tracked(EventKind::Click, 0, 40, None),
            tracked(EventKind::Click, 0, 10, Some(5)),
            tracked(EventKind::Click, 0, 20, None),
            tracked(EventKind::Click, 3, 7, None),
            tracked(EventKind::Rank, 1, 900, None),
            tracked(EventKind::Crawl, 2, 4, Some(9)),
        ];
        let oldest = oldest_pending(&samples);
        let expected: BTreeMap<EventKind, BTreeMap<i32, i64>> = BTreeMap::from([
            (EventKind::Rank, BTreeMap::from([(1, 900)])),
            (EventKind::Click, BTreeMap::from([(0, 20), (3, 7)])),
        ]);
        assert_eq!(oldest, expected);
        assert_eq!(
            lookup_sql(EventKind::Click, &oldest[&EventKind::Click]),
            "SELECT event_id FROM click_events WHERE tenant_id = 'latency-probe' AND \
             ((kafka_partition = 0 AND kafka_offset >= 20) OR (kafka_partition = 3 AND kafka_offset >= 7))"
        );
        assert_eq!(
            lookup_sql(EventKind::Rank, &oldest[&EventKind::Rank]),
            "SELECT event_id FROM rank_events WHERE tenant_id = 'latency-probe' AND \
             ((kafka_partition = 1 AND kafka_offset >= 900))"
        );
    }

    #[test]
    fn found_probes_are_stamped_once() {
        let mut samples = vec![
            tracked(EventKind::Click, 0, 20, None),
            tracked(EventKind::Click, 0, 40, None),
            tracked(EventKind::Click, 0, 10, Some(5)),
        ];
        let found: HashSet<String> = ["click-0-20", "click-0-10", "click-9-9"]
            .map(String::from)
            .into();
        assert_eq!(stamp_found(&mut samples, &found, 77), 1);
        let stamps: Vec<Option<i64>> = samples.iter().map(|t| t.ch_us).collect();
        assert_eq!(stamps, vec![Some(77), None, Some(5)]);
        assert_eq!(stamp_found(&mut samples, &found, 99), 0);
    }
}
