//! The background tasks of an ingest process, spawned into the `JoinSet` that `run` joins before it
//! returns: each ends when the shutdown signal is triggered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_sinks::postgres::{PostgresSink, PARTITION_MONTHS_AHEAD};
use sluice_sinks::SinkSet;
use tokio::task::JoinSet;

use super::shutdown::Shutdown;
use crate::metrics::READY;
use crate::telemetry::Health;

/// Every hour, creates the monthly PostgreSQL partitions ahead of need (a failure only warns: the
/// default partition catches rows until the next try). `now`: also once right away (when start-up did
/// not migrate, which does it too).
pub(super) fn partition_maintenance(
    tasks: &mut JoinSet<()>,
    shutdown: Shutdown,
    postgres: PostgresSink,
    now: bool,
) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        if !now {
            tick.tick().await;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            match postgres.ensure_partitions(PARTITION_MONTHS_AHEAD).await {
                Ok(done) => tracing::info!(
                    created = done.created,
                    moved_rows = done.moved_rows,
                    "partition maintenance"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "partition maintenance failed; retrying in an hour")
                }
            }
        }
    });
}

/// Every 5 s, checks that PostgreSQL (and ClickHouse when enabled) answer, for readiness.
pub(super) fn sink_checks(tasks: &mut JoinSet<()>, sinks: SinkSet, health: Arc<Health>) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = health.shutdown.wait() => return,
            }
            let pg = sinks.postgres.ping().await;
            let ch = match &sinks.clickhouse {
                Some(ch) => ch.ping().await,
                None => Ok(()),
            };
            let ok = pg.is_ok() && ch.is_ok();
            health.postgres_down.store(pg.is_err(), Ordering::Relaxed);
            health.clickhouse_down.store(ch.is_err(), Ordering::Relaxed);
            if let Err(e) = pg.and(ch) {
                tracing::debug!(error = %e, "sink check failed");
            }
            health.sinks_ok.store(ok, Ordering::Relaxed);
            metrics::gauge!(READY).set(if health.ready() { 1.0 } else { 0.0 });
        }
    });
}
