//! One flush: a set of partition batches goes to the sinks, and one [`FlushOutcome`] per partition comes
//! back. ClickHouse gets the raw events of all the batches, one INSERT per table; at the same time, for
//! each partition concurrently, refused records go to the dead-letter topic and a PostgreSQL transaction
//! merges the aggregates, appends the dedup window and moves the offset — but it commits only once the
//! ClickHouse insert is durable (a `Gate`), so nothing is visible in PostgreSQL before it is in
//! ClickHouse, and a crash at any point leaves at most idempotent ClickHouse rows to be written again.
//! The two databases work in parallel instead of one after the other. If a ClickHouse attempt fails, the
//! waiting transactions roll back (none stays open through the retries) and run again once it is through.
//! Transient sink errors are retried with exponential backoff and full jitter until they succeed or the
//! flush is aborted; a permanent error ends that partition's flush with [`FlushOutcome::Failed`].
//!
//! A data error — the database refused the content of some rows ([`crate::ErrorClass::Data`]: PostgreSQL
//! SQLSTATE classes 22, 23, 54; ClickHouse parse, range and constraint codes) — does not stop ingest:
//! the flush finds the refused events (`isolate`: the longest prefix of the events the database takes,
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::clickhouse::ClickHouseSink;
use crate::dead_letter::DeadLetterSink;
use crate::error::SinkError;
use crate::metrics::{DEAD_LETTERS_PARKED, SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS};
use crate::postgres::{Commit, PostgresSink};

mod gate;
mod isolate;
mod letters;

use crate::retry::{retry_transient, Backoff};
use gate::{released, Gate};
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
                        let (trimmed, parked) = (&mut trimmed, &mut parked);
                        let abort = abort.clone();
                        if !self
                            .take_out_refused(batch, trimmed, refused, "", abort, parked)
                            .await
                        {
                            return FlushOutcome::Aborted { topic, partition };
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
                    let (trimmed, parked) = (&mut trimmed, &mut parked);
                    let abort = abort.clone();
                    if !self
                        .take_out_refused(batch, trimmed, &refused, stored, abort, parked)
                        .await
                    {
                        return FlushOutcome::Aborted { topic, partition };
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
