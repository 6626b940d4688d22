//! # The ingest service
//!
//! [`run`] is one process of the consumer group: it builds the sinks and migrates them ([`setup`]),
//! starts the background tasks ([`tasks`]), and hands the Kafka consumer to the poll thread ([`poll`]),
//! which does all per-record work. One event's way, all in this folder but the two calls out:
//!
//! 1. [`poll`]: the poll loop reads a record, decodes and validates it (`sluice_schemas::decode`) and
//!    offers it to its partition's batch (`sluice_aggregator::PartitionBatch::offer`).
//! 2. [`schedule`]: once per turn, the flush schedule says whether a flush is due (lag-adaptive
//!    interval, memory budget) and whether fetching must pause.
//! 3. [`inflight`]: a flush takes the batches and runs `sluice_sinks::Flusher::flush` on the runtime;
//!    between polls the loop collects its outcomes and applies them (Kafka commit, fencing, fatal error).
//! 4. [`assignment`]: on a rebalance, partitions are installed from their stored offsets and windows,
//!    or drained; [`context`] is the rdkafka context that forwards rebalances and statistics.
//!
//! [`partitions`] holds what the poll loop and the rebalance callback share, [`state`] the per-partition
//! state, and [`shutdown`] the one signal everything stops on.

pub mod assignment;
pub mod context;
pub mod inflight;
pub mod partitions;
pub mod poll;
pub mod schedule;
pub mod setup;
pub mod shutdown;
pub mod state;
pub mod tasks;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_sinks::{Flusher, RetryPolicy};
use tokio::task::JoinSet;

pub use setup::{check_schema, migrate, sinks};

use crate::config::{is_secret_key, Config};
use crate::telemetry::{self, Health};
use context::IngestContext;
use partitions::Partitions;
use poll::PollLoop;
use schedule::FlushSchedule;
use state::Topics;

/// Runs ingest until `shutdown` resolves (then drains and returns) or a permanent error stops it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let props: Vec<String> = config
        .kafka_properties
        .keys()
        .map(|k| {
            if is_secret_key(k) {
                format!("{k}=***")
            } else {
                k.clone()
            }
        })
        .collect();
    tracing::info!(brokers = %config.kafka_brokers, group = %config.group_id, instance = ?config.instance_id(), ?props, "starting ingest");
    let sinks = setup::sinks(&config)?;
    if config.sinks_enabled {
        if config.migrate_on_start {
            setup::migrate(&sinks, Duration::from_secs(60)).await?;
        } else {
            setup::check_schema(&sinks.postgres, Duration::from_secs(60)).await?;
        }
    }
    let mut flusher = Flusher::new(
        sinks.clone(),
        RetryPolicy::default(),
        config.flush_concurrency,
    );
    if !config.sinks_enabled {
        tracing::warn!("sinks disabled (sinks_enabled=false): nothing will be stored");
        flusher = flusher.without_sinks();
    }
    let stored = config.sinks_enabled.then(|| sinks.postgres.clone());
    let health = Arc::new(Health::default());
    let topics = Topics::new(
        config
            .event_kinds()?
            .iter()
            .map(|&k| (config.topic_of(k).to_owned(), k))
            .collect(),
    );
    let dead_letters = sinks.dead_letters.is_some();
    let partitions = Arc::new(Partitions::new(
        topics.clone(),
        flusher,
        stored,
        tokio::runtime::Handle::current(),
        config.start_from,
        config.shutdown_timeout(),
        config.dedup_window_ms(),
        health.clone(),
    ));
    partitions.health.stall_timeout_ms.store(
        config.ready_stall_timeout().as_millis() as u64,
        Ordering::Relaxed,
    );
    // The metrics and health endpoints, served until the very end (through the drain).
    let mut server = JoinSet::new();
    if !config.metrics_addr.is_empty() {
        let prometheus = telemetry::init_metrics()?;
        crate::metrics::register(
            &config.event_kinds()?,
            sinks.clickhouse.is_some(),
            dead_letters,
        );
        telemetry::serve(
            &config.metrics_addr,
            prometheus,
            partitions.health.clone(),
            &mut server,
        )
        .await?;
    }
    let mut tasks = JoinSet::new();
    tasks::sink_checks(&mut tasks, sinks.clone(), health.clone());
    tasks::partition_maintenance(
        &mut tasks,
        health.shutdown.clone(),
        sinks.postgres,
        config.sinks_enabled && !config.migrate_on_start,
    );
    let consumer: BaseConsumer<IngestContext> = setup::consumer_config(&config)?
        .create_with_context(IngestContext {
            partitions: partitions.clone(),
        })
        .context("cannot create the kafka consumer")?;
    consumer
        .subscribe(&topics.names())
        .context("cannot subscribe")?;

    let poll_loop = PollLoop {
        consumer,
        partitions,
        dead_letters,
        limits: config.limits(),
        schedule: FlushSchedule::new(
            config.flush_controller(),
            config.batch_budget_bytes(),
            config.max_buffered_keys,
        ),
        shutdown_timeout: config.shutdown_timeout(),
        shutdown: health.shutdown.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("sluice-poll".into())
        .spawn(move || poll_loop.run())
        .context("cannot start the poll thread")?;
    let mut joined = tokio::task::spawn_blocking(move || thread.join());
    let result = tokio::select! {
        result = &mut joined => result,
        () = shutdown => {
            tracing::info!("shutdown requested: stop fetching, flush, commit");
            health.shutdown.trigger();
            joined.await
        }
    };
    // The poll loop is done (drained, or stopped by an error): the background tasks end too.
    health.shutdown.trigger();
    while tasks.join_next().await.is_some() {}
    server.shutdown().await;
    flatten(result)
}

fn flatten(
    joined: Result<std::thread::Result<anyhow::Result<()>>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match joined {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => anyhow::bail!("the poll thread panicked"),
        Err(e) => anyhow::bail!("the poll thread could not be joined: {e}"),
    }
}
