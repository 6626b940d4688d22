//! Persistence of the per-partition dedup window ([`crate::dedup`]): each commit appends the keys its
//! batch accepted and prunes rows that have wholly expired, inside the commit's transaction; assignment
//! reloads the live entries.

use sqlx::{PgConnection, Postgres, Transaction};

use super::{classify, Result};
use sluice_aggregator::dedup::{decode_entries, encode_entries, EventKey};
use sluice_aggregator::PartitionBatch;

/// Appends the batch's new keys and prunes expired rows. Runs inside the commit transaction.
pub(super) async fn persist(
    tx: &mut Transaction<'_, Postgres>,
    persistent: bool,
    group: &str,
    batch: &PartitionBatch,
    end: i64,
) -> Result<()> {
    let Some(watermark) = batch.watermark_ms else {
        return Ok(());
    };
    if let Some(max_expiry) = batch.dedup_entries.iter().map(|e| e.1).max() {
        sqlx::query(
            "INSERT INTO sluice_dedup (consumer_group, topic, partition, end_offset, max_expiry_ms, ids)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(group)
        .bind(&batch.topic)
        .bind(batch.partition)
        .bind(end)
        .bind(max_expiry)
        .bind(encode_entries(&batch.dedup_entries))
        .persistent(persistent)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    }
    sqlx::query(
        "DELETE FROM sluice_dedup
         WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND max_expiry_ms < $4",
    )
    .bind(group)
    .bind(&batch.topic)
    .bind(batch.partition)
    .bind(watermark)
    .persistent(persistent)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// The live entries of a partition's window (expiry ≥ watermark), in acceptance order.
pub(super) async fn load(
    conn: &mut PgConnection,
    persistent: bool,
    group: &str,
    topic: &str,
    partition: i32,
    watermark: i64,
) -> Result<Vec<(EventKey, i64)>> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
        "SELECT ids FROM sluice_dedup
         WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND max_expiry_ms >= $4
         ORDER BY end_offset",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(watermark)
    .persistent(persistent)
    .fetch_all(conn)
    .await
    .map_err(classify)?;
    Ok(rows
        .iter()
        .flat_map(|(ids,)| decode_entries(ids))
        .filter(|&(_, expiry)| expiry >= watermark)
        .collect())
}
