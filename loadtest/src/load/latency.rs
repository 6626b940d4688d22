//! Event → queryable latency. Generators send every K-th event with a delivery report and report it
//! as a [`Sample`]: its produce time (wall clock just before it was handed to the producer), its
//! partition and offset, and its raw table's sort key. Two pollers then watch for it:
//!
//! - **PostgreSQL**: an event's aggregates become visible in the transaction that moves its partition's
//!   `sluice_offsets.next_offset` past its offset (durable = queryable). The poller reads the group's
//!   stored offsets every `pg_every` and stamps each sample whose offset is below its partition's.
//! - **ClickHouse**: the raw row with that `event_id`, looked up by the raw table's full sort key
//!   (`(tenant_id, …, occurred_at, event_id) IN (…)`, so the primary index is used). Every `ch_every`
//!   the poller looks up the oldest pending sample of each partition; a partition's rows arrive in
//!   offset order, so when that one is visible a galloping/binary [`Search`] over the partition's
//!   pending samples (a few more rounds, every partition in the same statements) finds how far
//!   visibility reaches. An idle poll costs one small lookup per kind; the first version, which looked
//!   up every pending sample each time, cost ClickHouse about half a core at 100k events/s.
//!
//! A stamp is the wall-clock time the lookup that first saw the event *returned*: an upper bound, at
//! most one poll period plus the lookups' duration late. The report gives the poll periods and what
//! the polls cost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sluice_schemas::EventKind;
use sqlx::PgPool;

use super::generate::{now_us, Sample};

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

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `SELECT event_id FROM <table> WHERE (<sort key>) IN (…)` for a batch of samples of one kind.
pub fn lookup_sql(kind: EventKind, samples: &[&Sample]) -> String {
    let (table, columns) = match kind {
        EventKind::Rank => ("rank_events", "tenant_id, campaign_id, keyword"),
        EventKind::Crawl => ("crawl_events", "tenant_id, campaign_id, domain"),
        EventKind::Click => ("click_events", "tenant_id, short_code"),
    };
    let tuples: Vec<String> = samples
        .iter()
        .map(|s| {
            let mut fields = vec![quote(&s.tenant_id)];
            fields.extend(s.key.iter().map(|k| quote(k)));
            fields.push(s.occurred_at_s.to_string());
            fields.push(quote(&s.event_id));
            format!("({})", fields.join(", "))
        })
        .collect();
    format!(
        "SELECT event_id FROM {table} WHERE ({columns}, occurred_at, event_id) IN ({})",
        tuples.join(", ")
    )
}

#[derive(Debug, Row, Deserialize)]
struct Found {
    event_id: String,
}

/// One partition's pending samples (sorted by offset) and what the current poll knows about them:
/// indices `..=lo` are visible, `hi..` are not (yet). Visibility is monotonic in the offset: a
/// partition's rows reach ClickHouse in offset order (one flush at a time; a batch is a contiguous
/// offset range inserted in order).
#[derive(Debug)]
pub struct Search {
    pub samples: Vec<Sample>,
    /// Highest index known visible (-1: none).
    lo: isize,
    /// Lowest index known invisible (`samples.len()`: none).
    hi: usize,
    /// Galloping step while no invisible sample has been found.
    step: usize,
    galloping: bool,
}

impl Search {
    pub fn new(mut samples: Vec<Sample>) -> Search {
        samples.sort_by_key(|s| s.offset);
        let hi = samples.len();
        Search {
            samples,
            lo: -1,
            hi,
            step: 1,
            galloping: true,
        }
    }

    /// The index to probe next, or `None` when the boundary is found.
    pub fn next_probe(&self) -> Option<usize> {
        let first_unknown = usize::try_from(self.lo + 1).unwrap_or(0);
        if first_unknown >= self.hi {
            return None;
        }
        Some(if self.galloping {
            (first_unknown + self.step - 1).min(self.hi - 1)
        } else {
            first_unknown + (self.hi - first_unknown) / 2
        })
    }

    /// Records a probe's outcome; returns how many samples are now known visible.
    pub fn record(&mut self, index: usize, visible: bool) -> usize {
        if visible {
            self.lo = self.lo.max(index as isize);
            if self.galloping {
                self.step *= 2;
            }
        } else {
            self.hi = self.hi.min(index);
            self.galloping = false;
        }
        usize::try_from(self.lo + 1).unwrap_or(0)
    }
}

/// Most lookup rounds per poll (each one statement per kind); a search needs about 2·log2(pending).
const MAX_ROUNDS: usize = 32;

/// Stamps samples whose raw row has appeared in ClickHouse, every `every` (or, when lookups get slow,
/// every 10 × their duration, so that they take at most 10 % of the time; from `hurry` on, once nothing
/// is being written any more, every `every` again), until `stop`. Per
/// partition, one lookup of the oldest pending sample answers "did anything new arrive?"; when it
/// did, a galloping then binary search over the partition's pending samples (a few more rounds, all
/// partitions in the same statements) finds how far, and every sample up to there is stamped.
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
        let poll_started = std::time::Instant::now();
        let mut lookup_time = Duration::ZERO;
        let mut by_partition: BTreeMap<(EventKind, i32), Vec<Sample>> = BTreeMap::new();
        for t in tracker.lock().iter().filter(|t| t.ch_us.is_none()) {
            by_partition
                .entry((t.sample.kind, t.sample.partition))
                .or_default()
                .push(t.sample.clone());
        }
        let mut searches: Vec<Search> = by_partition.into_values().map(Search::new).collect();
        for _ in 0..MAX_ROUNDS {
            let probes: Vec<(usize, usize)> = searches
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.next_probe().map(|p| (i, p)))
                .collect();
            if probes.is_empty() {
                break;
            }
            // One statement per round: the kinds' lookups joined with UNION ALL.
            let statements: Vec<String> = EventKind::ALL
                .iter()
                .filter_map(|&kind| {
                    let of_kind: Vec<&Sample> = probes
                        .iter()
                        .map(|&(i, p)| &searches[i].samples[p])
                        .filter(|s| s.kind == kind)
                        .collect();
                    (!of_kind.is_empty()).then(|| lookup_sql(kind, &of_kind))
                })
                .collect();
            let started = std::time::Instant::now();
            let result = ch.query(&statements.join(" UNION ALL ")).fetch_all().await;
            lookup_time += started.elapsed();
            tracker.add_cost(false, started.elapsed().as_secs_f64());
            let found: std::collections::HashSet<String> = match result {
                Ok(rows) => rows.into_iter().map(|f: Found| f.event_id).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "latency poll of clickhouse failed");
                    break;
                }
            };
            let at = now_us();
            let mut known = vec![0usize; searches.len()];
            for &(i, p) in &probes {
                let visible = found.contains(&searches[i].samples[p].event_id);
                known[i] = searches[i].record(p, visible);
            }
            let newly: std::collections::HashSet<&str> = searches
                .iter()
                .zip(&known)
                .flat_map(|(search, &n)| search.samples[..n].iter().map(|s| s.event_id.as_str()))
                .collect();
            if !newly.is_empty() {
                for t in tracker.lock().iter_mut().filter(|t| t.ch_us.is_none()) {
                    if newly.contains(t.sample.event_id.as_str()) {
                        t.ch_us = Some(at);
                    }
                }
            }
        }
        // The lookups run on the database being measured: keep them under 1/DUTY of the time.
        pause = every
            .max(lookup_time * DUTY)
            .saturating_sub(poll_started.elapsed())
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

    fn sample(partition: i32, offset: i64) -> Sample {
        Sample {
            generator: 1,
            event_id: format!("e-{partition}-{offset}"),
            kind: EventKind::Rank,
            tenant_id: "t".into(),
            key: vec!["c".into(), "k".into()],
            occurred_at_s: 0,
            partition,
            offset,
            produced_us: 0,
        }
    }

    #[test]
    fn search_finds_the_visibility_boundary() {
        for visible in 0..=40usize {
            let mut search = Search::new((0..40).rev().map(|o| sample(0, o * 10)).collect());
            let mut rounds = 0;
            let mut known = 0;
            while let Some(p) = search.next_probe() {
                known = search.record(p, p < visible);
                rounds += 1;
            }
            assert_eq!(known, visible, "boundary at {visible}");
            assert!(rounds <= 12, "{rounds} rounds for boundary {visible}");
        }
        assert_eq!(Search::new(Vec::new()).next_probe(), None);
    }

    #[test]
    fn lookup_uses_the_sort_key_and_quotes() {
        let s = Sample {
            generator: 1,
            event_id: "r-g1-0".into(),
            kind: EventKind::Click,
            tenant_id: "tenant-001".into(),
            key: vec!["it's".into()],
            occurred_at_s: 1_780_000_000,
            partition: 0,
            offset: 5,
            produced_us: 0,
        };
        assert_eq!(
            lookup_sql(EventKind::Click, &[&s]),
            "SELECT event_id FROM click_events WHERE (tenant_id, short_code, occurred_at, event_id) \
             IN (('tenant-001', 'it\\'s', 1780000000, 'r-g1-0'))"
        );
    }
}
