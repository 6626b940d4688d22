//! The operator's side of a replay (`sluice-ingest replay`): the stored offsets of one topic are read,
//! and the chosen partitions are moved back in one transaction, each by compare-and-swap on the offset
//! the operator's plan was made from. Each moved partition gets a replay fence (`replay_until`): the
//! offset it stood at before the first of possibly several rewinds. Ingest re-sends the records below
//! the fence to ClickHouse only — their aggregates and dedup keys are already in PostgreSQL — and the
//! commit that reaches the fence clears it (the `UPDATE` in `PostgresSink::commit`).

use std::collections::BTreeMap;

use super::{classify, PostgresSink, Result, SinkError, Stored};

/// One partition to move back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewind {
    pub partition: i32,
    /// The stored offset the plan saw; the move happens only if it is still stored.
    pub from: i64,
    /// The new stored offset (< `from`).
    pub to: i64,
}

/// Why a rewind wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    /// A partition's stored offset is no longer the one planned from: a consumer committed meanwhile.
    #[error("partition {partition}: the stored offset moved from {expected} to {stored:?} while planning (is a consumer running?)")]
    Moved {
        partition: i32,
        expected: i64,
        stored: Option<i64>,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl PostgresSink {
    /// Everything stored for every partition of `topic` under this group.
    pub async fn topic_offsets(&self, topic: &str) -> Result<BTreeMap<i32, Stored>> {
        let rows: Vec<(i32, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT partition, next_offset, watermark_ms, replay_until FROM sluice_offsets
             WHERE consumer_group = $1 AND topic = $2",
        )
        .bind(&self.group)
        .bind(topic)
        .persistent(self.persistent())
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(partition, next_offset, watermark_ms, replay_until)| {
                let stored = Stored {
                    next_offset,
                    watermark_ms,
                    replay_until,
                };
                (partition, stored)
            })
            .collect())
    }

    /// Moves the given partitions of `topic` back, all or none, and returns each one's fence. A fence
    /// already set (a replay still in progress) is kept: it marks where the first rewind started.
    pub async fn rewind(
        &self,
        topic: &str,
        rewinds: &[Rewind],
    ) -> Result<BTreeMap<i32, i64>, RewindError> {
        let mut tx = self.pool().begin().await.map_err(classify)?;
        let mut fences = BTreeMap::new();
        for r in rewinds {
            if r.to >= r.from || r.to < 0 {
                return Err(SinkError::permanent(
                    super::SINK,
                    format!(
                        "partition {}: a rewind goes back, to an offset >= 0 (asked {} -> {})",
                        r.partition, r.from, r.to
                    ),
                )
                .into());
            }
            let fence: Option<(Option<i64>,)> = sqlx::query_as(
                "UPDATE sluice_offsets
                    SET next_offset = $4,
                        replay_until = greatest(coalesce(replay_until, next_offset), next_offset),
                        updated_at = now()
                  WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $5
                 RETURNING replay_until",
            )
            .bind(&self.group)
            .bind(topic)
            .bind(r.partition)
            .bind(r.to)
            .bind(r.from)
            .persistent(self.persistent())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
            match fence {
                Some((Some(fence),)) => {
                    fences.insert(r.partition, fence);
                }
                _ => {
                    tx.rollback().await.map_err(classify)?;
                    let stored = self.topic_offsets(topic).await?;
                    return Err(RewindError::Moved {
                        partition: r.partition,
                        expected: r.from,
                        stored: stored.get(&r.partition).map(|s| s.next_offset),
                    });
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(fences)
    }
}
