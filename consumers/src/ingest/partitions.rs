//! The partitions this process owns, as one value shared by the poll loop and the rebalance callback
//! (both on the poll thread; the state mutex is never contended and never held across `poll` or
//! `.await`). Its behaviour is in three files: `assignment` (assign and revoke: load stored offsets and
//! windows, drain), `inflight` (start a flush, poll for its outcome, apply it) and `context` (what the
//! Kafka client reports). The flush schedule (when to start one) is the poll loop's (`schedule`).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_sinks::postgres::PostgresSink;
use sluice_sinks::Flusher;
use tokio::runtime::Handle;

use super::state::{State, Topics};
use crate::config::StartFrom;
use crate::telemetry::Health;

/// Everything the poll loop and the rebalance callback share.
#[derive(Debug)]
pub struct Partitions {
    state: Mutex<State>,
    pub topics: Topics,
    /// Runs the flushes (`inflight`).
    pub(super) flusher: Flusher,
    /// Where stored offsets and idempotency windows are read from (`assignment`); `None` when the sinks
    /// are disabled (benchmark mode: nothing is stored).
    pub(super) stored: Option<PostgresSink>,
    pub(super) handle: Handle,
    pub(super) start_from: StartFrom,
    pub(super) drain_timeout: Duration,
    pub(super) dedup_window_ms: Option<i64>,
    /// Total fetch lag of the assigned partitions, from the last statistics callback.
    pub fetch_lag: AtomicU64,
    /// Duration of the last completed flush, in microseconds.
    pub last_flush_micros: AtomicU64,
    /// Liveness and readiness, for the health endpoints.
    pub health: Arc<Health>,
}

impl Partitions {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topics: Topics,
        flusher: Flusher,
        stored: Option<PostgresSink>,
        handle: Handle,
        start_from: StartFrom,
        drain_timeout: Duration,
        dedup_window_ms: Option<i64>,
        health: Arc<Health>,
    ) -> Self {
        Partitions {
            state: Mutex::new(State::default()),
            topics,
            flusher,
            stored,
            handle,
            start_from,
            drain_timeout,
            dedup_window_ms,
            fetch_lag: AtomicU64::new(0),
            last_flush_micros: AtomicU64::new(0),
            health,
        }
    }

    /// Locks the state. A poisoned lock means a panic on the poll thread, which already ended ingest.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
