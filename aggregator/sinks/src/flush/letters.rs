//! Dead letters of a partition's flush: refused records (and events a database refused) go to the
//! dead-letter topic; transient publish errors are retried for at most
//! [`RetryPolicy::dead_letter_bound`](super::RetryPolicy::dead_letter_bound), and letters the topic cannot
//! take come back to be parked in PostgreSQL with the offset.

use sluice_aggregator::PartitionBatch;
use tokio::sync::watch;

use super::Flusher;
use crate::dead_letter::{DeadLetter, DeadLetterSink, Parked};

impl Flusher {
    /// Publishes `sink_refused` letters (parked when no dead-letter topic is configured: a refused
    /// event is never dropped silently). `None` when aborted.
    pub(super) async fn publish_refused(
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
    pub(super) async fn publish_letters(
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
}
