//! One flush: a set of partition batches goes to the sinks, and one [`FlushOutcome`] per partition comes
//! back. ClickHouse gets the raw events of all the batches, one INSERT per table; at the same time, for
//! each partition concurrently, refused records go to the dead-letter topic and a PostgreSQL transaction
//! merges the aggregates, appends the dedup window and moves the offset — but it commits only once the
//! ClickHouse insert is durable (a [`Gate`]), so nothing is visible in PostgreSQL before it is in
//! ClickHouse, and a crash at any point leaves at most idempotent ClickHouse rows to be written again.
//! The two databases work in parallel instead of one after the other. If a ClickHouse attempt fails, the
//! waiting transactions roll back (none stays open through the retries) and run again once it is through.
//! Transient sink errors are retried with exponential backoff and full jitter until they succeed or the
//! flush is aborted; a permanent error ends that partition's flush with [`FlushOutcome::Failed`].
//!
//! A data error — the database refused the content of some rows ([`crate::ErrorClass::Data`]: PostgreSQL
//! SQLSTATE classes 22, 23, 54; ClickHouse parse, range and constraint codes) — does not stop ingest:
//! the flush finds the refused events ([`isolate`]: the longest prefix of the events the database takes,
//! by binary search, then the next event is refused and the search goes on after it), dead-letters
//! them with reason `sink_refused` and the database's code and message, and commits the rest, its
//! aggregates recomputed without them; the offset moves past them like past any rejected record.
//! ClickHouse is probed by inserting subsets of the flush's rows (inserts are idempotent, so rows
//! written by a probe are simply there already); PostgreSQL by running a subset's upserts in a
//! transaction that always rolls back. Decisions (docs/guarantees.md, "Poison input"):
//! - the dead letter's value is the event re-encoded as JSON (accepted records' bytes are not kept);
//! - an isolated event's key stays in the dedup window (a re-delivery is a duplicate, as it would
//!   have been had the event been stored);
//! - an event PostgreSQL refused after ClickHouse stored it stays in ClickHouse's raw table (and its
//!   rollups): the PostgreSQL commit waits for ClickHouse, so ClickHouse has it before PostgreSQL can
//!   refuse it; the dead letter's detail says so. An event ClickHouse refused is in neither aggregate,
//!   though its raw row may be there when a view refused it after the table took it.
//!
//! Dead letters never block a partition: a publish error that retrying cannot fix parks the letter,
//! and transient ones are retried for at most [`RetryPolicy::dead_letter_bound`]; parked letters are
//! stored in PostgreSQL's `sluice_dead_letters` in the transaction that moves the offset.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::clickhouse::ClickHouseSink;
use crate::dead_letter::{DeadLetter, DeadLetterSink, Parked};
use crate::error::SinkError;
use crate::metrics::{
    DEAD_LETTERS_PARKED, SINK_ERRORS, SINK_REFUSED_EVENTS, SINK_RETRIES, SINK_WRITE_SECONDS,
};
use crate::postgres::{Commit, PostgresSink};
use crate::retry::{retry_transient, Backoff};
use sluice_aggregator::PartitionBatch;

/// The dead-letter reason of an event a database refused after validation (D4).
pub const SINK_REFUSED: &str = "sink_refused";

/// The sinks a flush writes to. PostgreSQL is the commit point and always present.
#[derive(Debug, Clone)]
pub struct SinkSet {
    pub postgres: PostgresSink,
    pub clickhouse: Option<ClickHouseSink>,
    pub dead_letters: Option<DeadLetterSink>,
}

/// Backoff for transient errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// How long transient dead-letter publish errors are retried before the letters are parked in
    /// PostgreSQL instead: the longest a dead letter can hold its partition's flush.
    pub dead_letter_bound: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            dead_letter_bound: Duration::from_secs(20),
        }
    }
}

/// The result of flushing one partition's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Durable in both sinks; the stored offset is `next_offset`.
    Committed {
        topic: String,
        partition: i32,
        next_offset: i64,
    },
    /// Another consumer moved the partition's stored offset: nothing was committed by this batch.
    Fenced {
        topic: String,
        partition: i32,
        stored: Option<i64>,
    },
    /// Given up because the flush was aborted (shutdown deadline) while retrying.
    Aborted { topic: String, partition: i32 },
    /// A permanent sink error: retrying cannot help.
    Failed {
        topic: String,
        partition: i32,
        error: String,
    },
}

/// An event a database refused: its offset and the database's error.
#[derive(Debug, Clone)]
struct Refused {
    offset: i64,
    error: SinkError,
}

/// Events ClickHouse refused, by the index of their batch in the flush.
type Refusals = HashMap<usize, Vec<Refused>>;

/// Where a flush's ClickHouse insert stands, as its partitions' PostgreSQL transactions see it.
#[derive(Debug, Clone)]
enum Gate {
    /// Being written: a transaction may do its work, but waits before `COMMIT`.
    Pending,
    /// An attempt failed and is being retried (or its refused rows are being isolated): no
    /// transaction stays open meanwhile.
    Retrying,
    /// Durable in ClickHouse, except the events it refused: commit without them.
    Open(Arc<Refusals>),
    /// Given up: aborted (`None`) or failed permanently (the error).
    Closed(Option<String>),
}

/// Resolves once the gate leaves `Pending`: true if ClickHouse has the rows of batch `index` (commit),
/// false otherwise (roll back) — also when ClickHouse refused some of its events and the transaction
/// was not made without them (`trimmed` false): it must not commit their aggregates.
async fn released(mut gate: watch::Receiver<Gate>, index: usize, trimmed: bool) -> bool {
    match gate.wait_for(|g| !matches!(g, Gate::Pending)).await {
        Ok(state) => match &*state {
            Gate::Open(refusals) => trimmed || !refusals.contains_key(&index),
            _ => false,
        },
        Err(_) => false,
    }
}

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

impl FlushOutcome {
    fn failed(topic: String, partition: i32, error: impl std::fmt::Display) -> Self {
        FlushOutcome::Failed {
            topic,
            partition,
            error: error.to_string(),
        }
    }
}

/// Runs flushes against a [`SinkSet`].
#[derive(Debug, Clone)]
pub struct Flusher {
    sinks: SinkSet,
    retry: RetryPolicy,
    concurrency: Arc<Semaphore>,
    /// Benchmark mode: write nothing, report every batch committed (measures the pipeline without
    /// its sinks; nothing is durable and no offset is stored).
    noop: bool,
}

impl Flusher {
    pub fn new(sinks: SinkSet, retry: RetryPolicy, max_concurrent_partitions: usize) -> Self {
        Flusher {
            sinks,
            retry,
            concurrency: Arc::new(Semaphore::new(max_concurrent_partitions.max(1))),
            noop: false,
        }
    }

    /// A flusher that writes nothing (see the `noop` field): for measuring ingest without sinks.
    pub fn without_sinks(mut self) -> Self {
        self.noop = true;
        self
    }

    pub fn is_noop(&self) -> bool {
        self.noop
    }

    pub fn sinks(&self) -> &SinkSet {
        &self.sinks
    }

    /// Flushes every batch; returns one outcome per batch (in no particular order). `abort` turning true
    /// stops retrying.
    pub async fn flush(
        &self,
        batches: Vec<PartitionBatch>,
        abort: watch::Receiver<bool>,
    ) -> Vec<FlushOutcome> {
        let started = Instant::now();
        let batches: Vec<Arc<PartitionBatch>> = batches.into_iter().map(Arc::new).collect();
        let clickhouse = match (&self.sinks.clickhouse, self.noop) {
            (Some(ch), false) if batches.iter().any(|b| b.events() > 0) => Some(ch),
            _ => None,
        };
        // Without ClickHouse rows to write, the gate is open from the start.
        let (gate_tx, gate) = watch::channel(match clickhouse {
            Some(_) => Gate::Pending,
            None => Gate::Open(Arc::default()),
        });
        let mut tasks = JoinSet::new();
        for (index, batch) in batches.iter().enumerate() {
            let (this, batch) = (self.clone(), Arc::clone(batch));
            let (abort, gate) = (abort.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = this.concurrency.acquire().await;
                this.flush_partition(index, &batch, abort, gate).await
            });
        }
        // Meanwhile ClickHouse, for every partition at once: one INSERT per table makes fewer, larger
        // blocks (fewer parts, one pass through the rollup views). It is idempotent, so writing it
        // while the partitions' transactions do their work is safe; they commit only once it is done.
        if let Some(ch) = clickhouse {
            let with_events: Vec<&PartitionBatch> = batches
                .iter()
                .map(|b| b.as_ref())
                .filter(|b| b.events() > 0)
                .collect();
            let indexed: Vec<(usize, &PartitionBatch)> = batches
                .iter()
                .enumerate()
                .map(|(i, b)| (i, b.as_ref()))
                .filter(|(_, b)| b.events() > 0)
                .collect();
            let attempt = || async {
                let result = ch.write_all(&with_events).await;
                if result.is_err() {
                    // Transactions waiting for this insert roll back rather than stay open while it
                    // is retried; they start again once it is through.
                    gate_tx.send_replace(Gate::Retrying);
                }
                result
            };
            let verdict = match self.retrying("clickhouse", abort.clone(), attempt).await {
                Ok(Some(_rows)) => Gate::Open(Arc::default()),
                Ok(None) => Gate::Closed(None),
                Err(e) if e.is_data() => {
                    match self.isolate_clickhouse(ch, &indexed, abort.clone()).await {
                        Ok(Some(refusals)) if !refusals.is_empty() => {
                            Gate::Open(Arc::new(refusals))
                        }
                        // The whole set went in on a second try: the error was not these rows'.
                        Ok(Some(_)) => Gate::Open(Arc::default()),
                        Ok(None) => Gate::Closed(None),
                        Err(e) => Gate::Closed(Some(e.to_string())),
                    }
                }
                Err(e) => Gate::Closed(Some(e.to_string())),
            };
            gate_tx.send_replace(verdict);
        }
        let clickhouse_done = started.elapsed();
        let mut outcomes = Vec::with_capacity(batches.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                // A panic inside a sink is a bug; the batch's offset did not move, so nothing is lost.
                Err(e) => tracing::error!(error = %e, "flush task panicked"),
            }
        }
        tracing::debug!(
            partitions = batches.len(),
            events = batches.iter().map(|b| b.events()).sum::<usize>(),
            clickhouse_ms = clickhouse_done.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "flush done"
        );
        outcomes
    }

    async fn flush_partition(
        &self,
        index: usize,
        batch: &PartitionBatch,
        abort: watch::Receiver<bool>,
        mut gate: watch::Receiver<Gate>,
    ) -> FlushOutcome {
        let topic = batch.topic.clone();
        let partition = batch.partition;
        if self.noop {
            return FlushOutcome::Committed {
                next_offset: batch.end_offset.or(batch.expected_offset).unwrap_or(0),
                topic,
                partition,
            };
        }
        // Dead letters the topic cannot take, to store with the commit.
        let mut parked = Vec::new();
        if let Some(dlq) = &self.sinks.dead_letters {
            if !batch.dead_letters.is_empty() {
                match self
                    .publish_letters(dlq, batch, &batch.dead_letters, abort.clone())
                    .await
                {
                    Some(p) => parked.extend(p),
                    None => return FlushOutcome::Aborted { topic, partition },
                }
            }
        }
        // The batch without the events a database refused, once there are any.
        let mut trimmed: Option<PartitionBatch> = None;
        let mut clickhouse_refusals_applied = false;
        let pg = &self.sinks.postgres;
        let committed = loop {
            // While ClickHouse is being retried, hold no transaction open.
            let state = match gate.wait_for(|g| !matches!(g, Gate::Retrying)).await {
                Ok(state) => state.clone(),
                Err(_) => return FlushOutcome::Aborted { topic, partition },
            };
            match state {
                Gate::Closed(None) => return FlushOutcome::Aborted { topic, partition },
                Gate::Closed(Some(error)) => return FlushOutcome::failed(topic, partition, error),
                Gate::Open(refusals) if !clickhouse_refusals_applied => {
                    clickhouse_refusals_applied = true;
                    if let Some(refused) = refusals.get(&index) {
                        let current = trimmed.as_ref().unwrap_or(batch);
                        let taken_out = self
                            .take_out_refused(
                                batch,
                                current,
                                refused,
                                "",
                                abort.clone(),
                                &mut parked,
                            )
                            .await;
                        match taken_out {
                            Some(next) => trimmed = Some(next),
                            None => return FlushOutcome::Aborted { topic, partition },
                        }
                    }
                }
                Gate::Pending | Gate::Open(_) | Gate::Retrying => {}
            }
            let current = trimmed.as_ref().unwrap_or(batch);
            let release = || released(gate.clone(), index, clickhouse_refusals_applied);
            let attempt = || pg.commit_parking(current, &parked, release());
            let waited = |(_, waited): &(Option<Commit>, Duration)| *waited;
            match self
                .retrying_timed("postgres", abort.clone(), attempt, waited)
                .await
            {
                Ok(Some((Some(commit), _waited))) => break commit,
                // Rolled back: ClickHouse failed meanwhile; the loop waits for its verdict.
                Ok(Some((None, _waited))) => continue,
                Ok(None) => return FlushOutcome::Aborted { topic, partition },
                Err(e) if e.is_data() => {
                    let refused = match self.isolate_postgres(current, abort.clone()).await {
                        Ok(Some(refused)) if !refused.is_empty() => refused,
                        // Every event's aggregates go in: the error was not theirs.
                        Ok(Some(_)) => return FlushOutcome::failed(topic, partition, e),
                        Ok(None) => return FlushOutcome::Aborted { topic, partition },
                        Err(e) => return FlushOutcome::failed(topic, partition, e),
                    };
                    let stored = if self.sinks.clickhouse.is_some() {
                        "; its raw row is in ClickHouse, which stored it before PostgreSQL refused it"
                    } else {
                        ""
                    };
                    let taken_out = self
                        .take_out_refused(
                            batch,
                            current,
                            &refused,
                            stored,
                            abort.clone(),
                            &mut parked,
                        )
                        .await;
                    match taken_out {
                        Some(next) => trimmed = Some(next),
                        None => return FlushOutcome::Aborted { topic, partition },
                    }
                }
                Err(e) => return FlushOutcome::failed(topic, partition, e),
            }
        };
        match committed {
            Commit::Committed { next_offset } => {
                for p in &parked {
                    metrics::counter!(DEAD_LETTERS_PARKED, "reason" => p.letter.reason)
                        .increment(1);
                }
                FlushOutcome::Committed {
                    topic,
                    partition,
                    next_offset,
                }
            }
            Commit::Fenced { stored } => {
                metrics::counter!(SINK_ERRORS, "sink" => "postgres", "error_type" => "fenced")
                    .increment(1);
                FlushOutcome::Fenced {
                    topic,
                    partition,
                    stored,
                }
            }
        }
    }

    /// `current` (the partition's batch, or what is left of it) without the `refused` events, whose dead
    /// letters are published — or added to `parked` when the topic cannot take them. `None` when aborted.
    async fn take_out_refused(
        &self,
        batch: &PartitionBatch,
        current: &PartitionBatch,
        refused: &[Refused],
        note: &str,
        abort: watch::Receiver<bool>,
        parked: &mut Vec<Parked>,
    ) -> Option<PartitionBatch> {
        let (next, letters) = self.without_refused(current, refused, note);
        parked.extend(self.publish_refused(batch, letters, abort).await?);
        Some(next)
    }

    /// `batch` without the `refused` events, and their dead letters (reason `sink_refused`, the value
    /// the event re-encoded as JSON, the key the producer's `"{tenant_id}/{entity}"`, the detail the
    /// database's code and message plus `note`).
    fn without_refused(
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

    /// Publishes `sink_refused` letters (parked when no dead-letter topic is configured: a refused
    /// event is never dropped silently). `None` when aborted.
    async fn publish_refused(
        &self,
        batch: &PartitionBatch,
        letters: Vec<DeadLetter>,
        abort: watch::Receiver<bool>,
    ) -> Option<Vec<Parked>> {
        match &self.sinks.dead_letters {
            Some(dlq) => self.publish_letters(dlq, batch, &letters, abort).await,
            None => Some(
                letters
                    .into_iter()
                    .map(|letter| Parked {
                        letter,
                        cause: "no dead-letter topic configured".into(),
                    })
                    .collect(),
            ),
        }
    }

    /// Publishes dead letters, retrying transient errors for at most the policy's
    /// `dead_letter_bound`; returns the letters to park (the topic cannot take them, or the bound ran
    /// out: then all of them). `None` when aborted.
    async fn publish_letters(
        &self,
        dlq: &DeadLetterSink,
        batch: &PartitionBatch,
        letters: &[DeadLetter],
        abort: watch::Receiver<bool>,
    ) -> Option<Vec<Parked>> {
        let publish = || dlq.publish(&batch.topic, batch.partition, letters);
        let bounded = tokio::time::timeout(
            self.retry.dead_letter_bound,
            self.retrying("dead_letter", abort, publish),
        );
        let cause = match bounded.await {
            Ok(Ok(Some(parked))) => return Some(parked),
            Ok(Ok(None)) => return None,
            // `publish` reports only transient errors; anything else parks too.
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "dead-letter topic still failing after {} s (publish bound)",
                self.retry.dead_letter_bound.as_secs()
            ),
        };
        tracing::warn!(
            topic = %batch.topic,
            partition = batch.partition,
            letters = letters.len(),
            %cause,
            "dead letters parked in PostgreSQL (sluice_dead_letters)"
        );
        Some(
            letters
                .iter()
                .map(|letter| Parked {
                    letter: letter.clone(),
                    cause: cause.clone(),
                })
                .collect(),
        )
    }

    /// Finds the events of the flush's batches ClickHouse refuses, by inserting subsets (see
    /// [`isolate`]). `None` when aborted.
    async fn isolate_clickhouse(
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
    async fn isolate_postgres(
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

    /// Runs `op` until it succeeds (`Ok(Some)`), fails permanently (`Err`), or `abort` fires (`Ok(None)`).
    async fn retrying<T, F, Fut>(
        &self,
        sink: &'static str,
        abort: watch::Receiver<bool>,
        op: F,
    ) -> Result<Option<T>, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>>,
    {
        self.retrying_timed(sink, abort, op, |_| Duration::ZERO)
            .await
    }

    /// [`retrying`](Self::retrying), where a successful write's duration in the sink's histogram leaves
    /// out the time `waited` says it spent waiting for something else.
    async fn retrying_timed<T, F, Fut>(
        &self,
        sink: &'static str,
        abort: watch::Receiver<bool>,
        mut op: F,
        waited: fn(&T) -> Duration,
    ) -> Result<Option<T>, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>>,
    {
        let mut backoff = Backoff::new(self.retry.initial, self.retry.max);
        let timed = || {
            let attempt = op();
            async move {
                let started = Instant::now();
                let value = attempt.await?;
                Ok((value, started.elapsed()))
            }
        };
        let on_retry = |e: &SinkError, delay: Duration| {
            metrics::counter!(SINK_ERRORS, "sink" => sink, "error_type" => "transient")
                .increment(1);
            metrics::counter!(SINK_RETRIES, "sink" => sink).increment(1);
            tracing::warn!(sink, error = %e, retry_in_ms = delay.as_millis() as u64, "sink write failed, retrying");
        };
        match retry_transient(&mut backoff, abort, timed, on_retry).await {
            Ok(Some((value, took))) => {
                let busy = took.saturating_sub(waited(&value));
                metrics::histogram!(SINK_WRITE_SECONDS, "sink" => sink).record(busy.as_secs_f64());
                Ok(Some(value))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                metrics::counter!(SINK_ERRORS, "sink" => sink, "error_type" => e.class.label())
                    .increment(1);
                Err(e)
            }
        }
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
