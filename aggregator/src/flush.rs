//! One flush: a set of partition batches goes to the sinks, and one [`FlushOutcome`] per partition comes
//! back. First ClickHouse gets the raw events of all the batches, one INSERT per table (idempotent, so
//! writing them before the commit point is safe); then for each partition, concurrently: refused records
//! go to the dead-letter topic, and PostgreSQL commits aggregates, dedup window and offset together. Partitions
//! are flushed concurrently, each in its own transaction. Transient sink errors are retried with
//! exponential backoff and full jitter until they succeed or the flush is aborted; a permanent error ends
//! that partition's flush with [`FlushOutcome::Failed`].

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
        // ClickHouse first, for every partition at once: one INSERT per table makes fewer, larger
        // blocks (fewer parts, one pass through the rollup views). It is idempotent, so writing before
        // the per-partition commits below is safe.
        if let (Some(ch), false) = (&self.sinks.clickhouse, self.noop) {
            let with_events: Vec<&PartitionBatch> =
                batches.iter().filter(|b| b.events() > 0).collect();
            if !with_events.is_empty() {
                let result = self
                    .retrying("clickhouse", abort.clone(), || ch.write_all(&with_events))
                    .await;
                let failed = match result {
                    Ok(Some(_rows)) => None,
                    Ok(None) => Some(None),
                    Err(e) => Some(Some(e.to_string())),
                };
                if let Some(error) = failed {
                    return batches
                        .iter()
                        .map(|b| {
                            let (topic, partition) = (b.topic.clone(), b.partition);
                            match &error {
                                None => FlushOutcome::Aborted { topic, partition },
                                Some(error) => FlushOutcome::Failed {
                                    topic,
                                    partition,
                                    error: error.clone(),
                                },
                            }
                        })
                        .collect();
                }
            }
        }
        let mut tasks = JoinSet::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            let this = self.clone();
            let abort = abort.clone();
            tasks.spawn(async move {
                let _permit = this.concurrency.acquire().await;
                this.flush_partition(&batch, abort).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                // A panic inside a sink is a bug; the batch's offset did not move, so nothing is lost.
                Err(e) => tracing::error!(error = %e, "flush task panicked"),
            }
        }
        outcomes
    }

    async fn flush_partition(
        &self,
        batch: &PartitionBatch,
        abort: watch::Receiver<bool>,
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
                Err(e) => {
                    return FlushOutcome::Failed {
                        topic,
                        partition,
                        error: e.to_string(),
                    }
                }
            }
        }
        let pg = &self.sinks.postgres;
        match self.retrying("postgres", abort, || pg.commit(batch)).await {
            Ok(Some(Commit::Committed { next_offset })) => FlushOutcome::Committed {
                topic,
                partition,
                next_offset,
            },
            Ok(Some(Commit::Fenced { stored })) => {
                metrics::counter!(SINK_ERRORS, "sink" => "postgres", "error_type" => "fenced")
                    .increment(1);
                FlushOutcome::Fenced {
                    topic,
                    partition,
                    stored,
                }
            }
            Ok(None) => FlushOutcome::Aborted { topic, partition },
            Err(e) => FlushOutcome::Failed {
                topic,
                partition,
                error: e.to_string(),
            },
        }
    }

    /// Runs `op` until it succeeds (`Ok(Some)`), fails permanently (`Err`), or `abort` fires (`Ok(None)`).
    async fn retrying<T, F, Fut>(
        &self,
        sink: &'static str,
        mut abort: watch::Receiver<bool>,
        mut op: F,
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
                    metrics::histogram!(SINK_WRITE_SECONDS, "sink" => sink)
                        .record(started.elapsed().as_secs_f64());
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
