//! The one shutdown signal of an ingest process. `run` triggers it when asked to stop (SIGINT/SIGTERM),
//! and everything that must end waits on it: the poll thread checks it every turn, the background tasks
//! (sink checks, partition maintenance) select on it and are joined before `run` returns, readiness
//! reports not ready once it is set, and reads of stored state stop retrying. A flush in flight is not
//! cut by it: the poll loop drains, and only a flush that outlives its deadline is aborted (each flush
//! has its own abort switch for that, see `inflight`).

use tokio::sync::watch;

/// A cloneable handle on the process's shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: std::sync::Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// Asks everything to stop (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the signal is triggered (at once if it already is).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// A receiver for code that takes a stop switch (`sluice_sinks::retry::retry_transient`).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_waiter_wakes_when_triggered() {
        let shutdown = Shutdown::default();
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let s = shutdown.clone();
            waiters.spawn(async move { s.wait().await });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!shutdown.is_triggered());
        assert_eq!(waiters.len(), 3);
        assert!(
            waiters.try_join_next().is_none(),
            "a waiter woke before the signal"
        );
        shutdown.trigger();
        let mut woke = 0;
        while let Some(joined) = waiters.join_next().await {
            joined.expect("waiter ran");
            woke += 1;
        }
        assert_eq!(woke, 3);
        assert!(shutdown.is_triggered());
        // A late waiter returns at once.
        tokio::time::timeout(Duration::from_millis(1), shutdown.wait())
            .await
            .expect("already triggered");
    }
}
