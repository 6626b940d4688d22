//! Poison isolation: when a database refuses the content of some rows (a data error), the flush finds
//! the refused events by binary search over prefixes ([`isolate`]), so they can be dead-lettered and
//! the rest committed with its aggregates recomputed without them. ClickHouse is probed by inserting
//! subsets (idempotent), PostgreSQL in transactions that always roll back.

use std::collections::{HashMap, HashSet};

use sluice_aggregator::PartitionBatch;
use tokio::sync::watch;

use super::{Flusher, SINK_REFUSED};
use crate::clickhouse::ClickHouseSink;
use crate::dead_letter::{DeadLetter, Parked};
use crate::error::SinkError;
use crate::metrics::SINK_REFUSED_EVENTS;

/// An event a database refused: its offset and the database's error.
#[derive(Debug, Clone)]
pub(super) struct Refused {
    pub(super) offset: i64,
    pub(super) error: SinkError,
}

/// Events ClickHouse refused, by the index of their batch in the flush.
pub(super) type Refusals = HashMap<usize, Vec<Refused>>;

/// What a probe of a subset found.
enum Probe {
    Taken,
    Refused(SinkError),
    Aborted,
}

/// Finds the items of `0..n` a sink refuses, given `probe` (does the sink take this subset?) and the
/// data error the whole set failed with. Returns the refused items with the error that refused each;
/// empty when the whole set passes a probe (the error did not come from these items' content); `None`
/// when aborted. The search keeps an accepted set the sink takes and finds, by binary search, the
/// shortest prefix of the remaining items that makes it fail: its last item is refused (together with
/// what was accepted before it — this also catches errors of a combination, such as an overflowing
/// sum), the prefix before it is accepted, and the search goes on with the items after it. About
/// log2(n) probes per refused item.
async fn isolate<F, Fut>(
    n: usize,
    mut probe: F,
) -> Result<Option<Vec<(usize, SinkError)>>, SinkError>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Probe, SinkError>>,
{
    let candidate = |accepted: &[usize], from: usize, to: usize| -> Vec<usize> {
        accepted.iter().copied().chain(from..to).collect()
    };
    let mut accepted: Vec<usize> = Vec::new();
    let mut refused = Vec::new();
    let mut start = 0;
    // Invariant: `accepted` is taken; `accepted` + `start..n` is refused with `failing`.
    let mut failing = match probe(candidate(&accepted, 0, n)).await? {
        Probe::Taken => return Ok(Some(refused)),
        Probe::Aborted => return Ok(None),
        Probe::Refused(e) => e,
    };
    loop {
        let (mut lo, mut hi) = (start, n);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match probe(candidate(&accepted, start, mid)).await? {
                Probe::Taken => lo = mid,
                Probe::Refused(e) => {
                    hi = mid;
                    failing = e;
                }
                Probe::Aborted => return Ok(None),
            }
        }
        accepted.extend(start..hi - 1);
        refused.push((hi - 1, failing.clone()));
        start = hi;
        if start == n {
            return Ok(Some(refused));
        }
        match probe(candidate(&accepted, start, n)).await? {
            Probe::Taken => return Ok(Some(refused)),
            Probe::Aborted => return Ok(None),
            Probe::Refused(e) => failing = e,
        }
    }
}

/// A probe's result as [`isolate`] wants it: a data error refuses, any other error ends the search.
fn probe_result(result: Result<Option<()>, SinkError>) -> Result<Probe, SinkError> {
    match result {
        Ok(Some(())) => Ok(Probe::Taken),
        Ok(None) => Ok(Probe::Aborted),
        Err(e) if e.is_data() => Ok(Probe::Refused(e)),
        Err(e) => Err(e),
    }
}

impl Flusher {
    /// Takes the `refused` events out of the partition's batch (`trimmed`: what is left of `batch` after
    /// earlier refusals, if any) and publishes their dead letters — or adds them to `parked` when the
    /// topic cannot take them. False when aborted.
    pub(super) async fn take_out_refused(
        &self,
        batch: &PartitionBatch,
        trimmed: &mut Option<PartitionBatch>,
        refused: &[Refused],
        note: &str,
        abort: watch::Receiver<bool>,
        parked: &mut Vec<Parked>,
    ) -> bool {
        let (next, letters) =
            self.without_refused(trimmed.as_ref().unwrap_or(batch), refused, note);
        match self.publish_refused(batch, letters, abort).await {
            Some(letters) => {
                parked.extend(letters);
                *trimmed = Some(next);
                true
            }
            None => false,
        }
    }

    /// `batch` without the `refused` events, and their dead letters (reason `sink_refused`, the value
    /// the event re-encoded as JSON, the key the producer's `"{tenant_id}/{entity}"`, the detail the
    /// database's code and message plus `note`).
    pub(super) fn without_refused(
        &self,
        batch: &PartitionBatch,
        refused: &[Refused],
        note: &str,
    ) -> (PartitionBatch, Vec<DeadLetter>) {
        let offsets: HashSet<i64> = refused.iter().map(|r| r.offset).collect();
        let mut letters = Vec::with_capacity(refused.len());
        for r in refused {
            let Some(event) = batch.event_at(r.offset) else {
                continue;
            };
            metrics::counter!(SINK_REFUSED_EVENTS, "sink" => r.error.sink).increment(1);
            tracing::warn!(
                topic = %batch.topic,
                partition = batch.partition,
                offset = r.offset,
                event_id = event.event_id(),
                error = %r.error,
                "a database refused an event; it is dead-lettered (sink_refused) and the rest commits"
            );
            letters.push(DeadLetter {
                offset: r.offset,
                key: Some(event.partition_key().into_bytes()),
                value: sluice_schemas::codec::encode(&event, sluice_schemas::Encoding::Json),
                headers: Vec::new(),
                timestamp_ms: None,
                reason: SINK_REFUSED,
                detail: format!("{}{note}", r.error.detail()),
            });
        }
        (batch.retain_events(|o| !offsets.contains(&o)), letters)
    }

    /// Finds the events of the flush's batches ClickHouse refuses, by inserting subsets (see
    /// [`isolate`]). `None` when aborted.
    pub(super) async fn isolate_clickhouse(
        &self,
        ch: &ClickHouseSink,
        batches: &[(usize, &PartitionBatch)],
        abort: watch::Receiver<bool>,
    ) -> Result<Option<Refusals>, SinkError> {
        // Every raw event of the flush, as (batch index, offset), batch after batch.
        let events: Vec<(usize, i64)> = batches
            .iter()
            .flat_map(|(i, b)| b.event_offsets().into_iter().map(move |o| (*i, o)))
            .collect();
        tracing::warn!(
            events = events.len(),
            "clickhouse refused the flush's rows; isolating the events it refuses"
        );
        let probe = |subset: Vec<usize>| {
            let mut keep: HashMap<usize, HashSet<i64>> = HashMap::new();
            for item in subset {
                let (i, offset) = events[item];
                keep.entry(i).or_default().insert(offset);
            }
            let subsets: Vec<PartitionBatch> = batches
                .iter()
                .filter_map(|(i, b)| {
                    let keep = keep.get(i)?;
                    Some(b.retain_events(|o| keep.contains(&o)))
                })
                .collect();
            let abort = abort.clone();
            async move {
                let refs: Vec<&PartitionBatch> = subsets.iter().collect();
                let write = || async { ch.write_all(&refs).await.map(|_| ()) };
                probe_result(self.retrying("clickhouse", abort, write).await)
            }
        };
        let Some(refused) = isolate(events.len(), probe).await? else {
            return Ok(None);
        };
        let mut refusals = Refusals::new();
        for (item, error) in refused {
            let (i, offset) = events[item];
            refusals
                .entry(i)
                .or_default()
                .push(Refused { offset, error });
        }
        Ok(Some(refusals))
    }

    /// Finds the events of `batch` whose aggregates PostgreSQL refuses, by probing subsets in
    /// transactions that roll back (see [`isolate`]). `None` when aborted.
    pub(super) async fn isolate_postgres(
        &self,
        batch: &PartitionBatch,
        abort: watch::Receiver<bool>,
    ) -> Result<Option<Vec<Refused>>, SinkError> {
        let offsets = batch.aggregated_offsets();
        tracing::warn!(
            topic = %batch.topic,
            partition = batch.partition,
            events = offsets.len(),
            "postgres refused the batch's aggregates; isolating the events it refuses"
        );
        let pg = &self.sinks.postgres;
        let probe = |subset: Vec<usize>| {
            let keep: HashSet<i64> = subset.into_iter().map(|i| offsets[i]).collect();
            let probe_batch = batch.retain_events(|o| keep.contains(&o));
            let abort = abort.clone();
            async move {
                let attempt = || pg.probe_aggregates(&probe_batch);
                probe_result(self.retrying("postgres", abort, attempt).await)
            }
        };
        let Some(refused) = isolate(offsets.len(), probe).await? else {
            return Ok(None);
        };
        Ok(Some(
            refused
                .into_iter()
                .map(|(i, error)| Refused {
                    offset: offsets[i],
                    error,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    fn data(message: &str) -> SinkError {
        SinkError::new("postgres", ErrorClass::Data, Some("23514".into()), message)
    }

    /// Runs [`isolate`] over `n` items with a sink that refuses a subset when `refuses` says so;
    /// returns the refused items and the number of probes.
    async fn run(n: usize, refuses: impl Fn(&[usize]) -> bool) -> (Vec<usize>, usize) {
        let probes = std::cell::Cell::new(0);
        let probe = |subset: Vec<usize>| {
            probes.set(probes.get() + 1);
            let refused = refuses(&subset);
            async move {
                Ok(if refused {
                    Probe::Refused(data(&format!("{subset:?}")))
                } else {
                    Probe::Taken
                })
            }
        };
        let refused = isolate(n, probe).await.unwrap().unwrap();
        (refused.into_iter().map(|(i, _)| i).collect(), probes.get())
    }

    #[tokio::test]
    async fn isolates_the_events_a_sink_refuses() {
        let poison = [3, 4, 17, 999];
        let (refused, probes) = run(1000, |s| s.iter().any(|i| poison.contains(i))).await;
        assert_eq!(refused, poison);
        // About log2(1000) = 10 probes per refused item, plus one per round.
        assert!(probes <= 4 * 11 + 1, "{probes} probes");

        // Nothing refused when the whole set goes in: one probe.
        assert_eq!(run(50, |_| false).await, (vec![], 1));
        // Everything refused.
        assert_eq!(run(3, |s| !s.is_empty()).await.0, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn a_combination_is_cut_where_it_starts_to_fail() {
        // Values 0..10 whose sum must stay <= 20: 0+1+…+6 = 21 is the first prefix too large, so 6 is
        // refused; then 0..=5 (15) plus 7 is 22: refused too; and so on — every item above 5.
        let (refused, _) = run(10, |s| s.iter().sum::<usize>() > 20).await;
        assert_eq!(refused, vec![6, 7, 8, 9]);
    }

    #[tokio::test]
    async fn a_non_data_error_ends_the_search() {
        let probe = |subset: Vec<usize>| async move {
            if subset.len() < 4 {
                Err(SinkError::permanent("postgres", "relation does not exist"))
            } else {
                Ok(Probe::Refused(data("check")))
            }
        };
        let e = isolate(8, probe).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        let aborted = isolate(8, |_| async { Ok(Probe::Aborted) }).await.unwrap();
        assert!(aborted.is_none());
    }
}
