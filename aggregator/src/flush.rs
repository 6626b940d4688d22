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

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::batch::PartitionBatch;
use crate::metrics::{SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS};
use crate::sinks::clickhouse::ClickHouseSink;
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::postgres::{Commit, PostgresSink};
use crate::sinks::SinkError;

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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
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

/// Where a flush's ClickHouse insert stands, as its partitions' PostgreSQL transactions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gate {
    /// Being written: a transaction may do its work, but waits before `COMMIT`.
    Pending,
    /// An attempt failed and is being retried: no transaction stays open meanwhile.
    Retrying,
    /// Durable in ClickHouse: commit.
    Open,
    /// Given up: aborted (`None`) or failed permanently (the error).
    Closed(Option<String>),
}

/// Resolves once the gate leaves `Pending`: true if ClickHouse has the rows (commit), false otherwise
/// (roll back).
async fn released(mut gate: watch::Receiver<Gate>) -> bool {
    match gate.wait_for(|g| *g != Gate::Pending).await {
        Ok(state) => *state == Gate::Open,
        Err(_) => false,
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
            None => Gate::Open,
        });
        let mut tasks = JoinSet::new();
        for batch in &batches {
            let (this, batch) = (self.clone(), Arc::clone(batch));
            let (abort, gate) = (abort.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = this.concurrency.acquire().await;
                this.flush_partition(&batch, abort, gate).await
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
                Ok(Some(_rows)) => Gate::Open,
                Ok(None) => Gate::Closed(None),
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
        if let (Some(dlq), false) = (&self.sinks.dead_letters, batch.dead_letters.is_empty()) {
            let publish = || dlq.publish(&topic, partition, &batch.dead_letters);
            match self.retrying("dead_letter", abort.clone(), publish).await {
                Ok(Some(())) => {}
                Ok(None) => return FlushOutcome::Aborted { topic, partition },
                Err(e) => return FlushOutcome::failed(topic, partition, e),
            }
        }
        let pg = &self.sinks.postgres;
        let committed = loop {
            // While ClickHouse is being retried, hold no transaction open.
            let state = match gate.wait_for(|g| *g != Gate::Retrying).await {
                Ok(state) => state.clone(),
                Err(_) => return FlushOutcome::Aborted { topic, partition },
            };
            match state {
                Gate::Closed(None) => return FlushOutcome::Aborted { topic, partition },
                Gate::Closed(Some(error)) => return FlushOutcome::failed(topic, partition, error),
                Gate::Pending | Gate::Open | Gate::Retrying => {}
            }
            let attempt = || pg.commit_when(batch, released(gate.clone()));
            let waited = |(_, waited): &(Option<Commit>, Duration)| *waited;
            match self
                .retrying_timed("postgres", abort.clone(), attempt, waited)
                .await
            {
                Ok(Some((Some(commit), _waited))) => break commit,
                // Rolled back: ClickHouse failed meanwhile; the loop waits for its verdict.
                Ok(Some((None, _waited))) => continue,
                Ok(None) => return FlushOutcome::Aborted { topic, partition },
                Err(e) => return FlushOutcome::failed(topic, partition, e),
            }
        };
        match committed {
            Commit::Committed { next_offset } => FlushOutcome::Committed {
                topic,
                partition,
                next_offset,
            },
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
        mut abort: watch::Receiver<bool>,
        mut op: F,
        waited: fn(&T) -> Duration,
    ) -> Result<Option<T>, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>>,
    {
        let mut backoff = self.retry.initial;
        loop {
            if *abort.borrow() {
                return Ok(None);
            }
            let started = Instant::now();
            match op().await {
                Ok(v) => {
                    let busy = started.elapsed().saturating_sub(waited(&v));
                    metrics::histogram!(SINK_WRITE_SECONDS, "sink" => sink)
                        .record(busy.as_secs_f64());
                    return Ok(Some(v));
                }
                Err(e) if e.is_transient() => {
                    metrics::counter!(SINK_ERRORS, "sink" => sink, "error_type" => "transient")
                        .increment(1);
                    metrics::counter!(SINK_RETRIES, "sink" => sink).increment(1);
                    let sleep = rand::rng().random_range(Duration::ZERO..=backoff);
                    tracing::warn!(sink, error = %e, retry_in_ms = sleep.as_millis() as u64, "sink write failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = abort.wait_for(|a| *a) => return Ok(None),
                    }
                    backoff = (backoff * 2).min(self.retry.max);
                }
                Err(e) => {
                    metrics::counter!(SINK_ERRORS, "sink" => sink, "error_type" => "permanent")
                        .increment(1);
                    return Err(e);
                }
            }
        }
    }
}
