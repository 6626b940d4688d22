//! Partition maintenance for the monthly-partitioned aggregate tables (migration 0002). Ingest calls
//! [`PostgresSink::ensure_partitions`] at start-up and periodically; it runs the SQL function
//! `sluice_ensure_partitions`, which creates the partitions of the months around now (13 back, `n` ahead)
//! and of every month found in a table's DEFAULT partition, moving those rows into their month. Upserts
//! never wait for it to run — a row with no month partition lands in DEFAULT — so a missed run costs a
//! later move, not a failed commit. It holds its locks under a `lock_timeout`: if a long transaction is in
//! the way it gives up with a transient error instead of queueing ingest behind it.

use super::{classify, PostgresSink, Result, SinkError, SINK};

/// Months of partitions to keep ready after the current UTC month.
pub const PARTITION_MONTHS_AHEAD: u32 = 3;

/// How long partition maintenance waits for a lock before giving up (transiently).
const LOCK_TIMEOUT: &str = "5s";

/// What one maintenance run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionMaintenance {
    /// Month partitions created (over the three tables).
    pub created: u32,
    /// Rows moved out of DEFAULT partitions into the month partitions created for them.
    pub moved_rows: u64,
}

impl PostgresSink {
    /// Creates the missing month partitions of `click_daily`, `rank_daily` and `crawl_hourly`: from 13
    /// months before the current UTC month to `months_ahead` after it, plus every month that has rows in
    /// a DEFAULT partition. Idempotent; concurrent callers (several ingest instances) serialise on an
    /// advisory lock. Runs as the tables' owner or a member of `sluice_writer` (the SQL function is
    /// `SECURITY DEFINER`: the partitions are created by, and belong to, the owner).
    pub async fn ensure_partitions(&self, months_ahead: u32) -> Result<PartitionMaintenance> {
        let months_ahead = i32::try_from(months_ahead).map_err(|_| {
            SinkError::permanent(SINK, format!("months_ahead {months_ahead} is out of range"))
        })?;
        let mut tx = self.pool().begin().await.map_err(classify)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        )))
        .persistent(self.persistent())
        .execute(&mut *tx)
        .await
        .map_err(classify_maintenance)?;
        let (created, moved_rows): (i32, i64) =
            sqlx::query_as("SELECT created, moved_rows FROM sluice_ensure_partitions($1)")
                .bind(months_ahead)
                .persistent(self.persistent())
                .fetch_one(&mut *tx)
                .await
                .map_err(classify_maintenance)?;
        tx.commit().await.map_err(classify)?;
        let done = PartitionMaintenance {
            created: u32::try_from(created).unwrap_or(0),
            moved_rows: u64::try_from(moved_rows).unwrap_or(0),
        };
        if done.created > 0 {
            tracing::info!(
                created = done.created,
                moved_rows = done.moved_rows,
                "postgres: created aggregate partitions"
            );
        }
        Ok(done)
    }
}

/// A lock timeout (55P03) is transient here: the next run will find the lock free.
fn classify_maintenance(e: sqlx::Error) -> SinkError {
    let lock_timeout =
        matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"));
    let mut error = classify(e);
    if lock_timeout {
        error.class = super::super::ErrorClass::Transient;
    }
    error
}
