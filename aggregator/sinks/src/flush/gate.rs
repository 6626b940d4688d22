//! The gate between a flush's ClickHouse insert and its partitions' PostgreSQL transactions: each
//! transaction does its work while the insert runs, but commits only once the gate says ClickHouse has
//! its rows, so nothing is visible in PostgreSQL before it is in ClickHouse.

use std::sync::Arc;

use tokio::sync::watch;

use super::isolate::Refusals;

/// Where a flush's ClickHouse insert stands, as its partitions' PostgreSQL transactions see it.
#[derive(Debug, Clone)]
pub(super) enum Gate {
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
pub(super) async fn released(mut gate: watch::Receiver<Gate>, index: usize, trimmed: bool) -> bool {
    match gate.wait_for(|g| !matches!(g, Gate::Pending)).await {
        Ok(state) => match &*state {
            Gate::Open(refusals) => trimmed || !refusals.contains_key(&index),
            _ => false,
        },
        Err(_) => false,
    }
}
