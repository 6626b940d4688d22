//! The retention command: drops whole expired monthly partitions on every server and sets a TTL where
//! the server is modern (`clickhouse/retention_ttl.sql`).

use chrono::{Datelike, Months, NaiveDate, Utc};

use super::migrations::{quote_ident, quote_literal, statements};
use super::{classify, ClickHouseSink, SINK};
use crate::error::{Result, SinkError};

/// The TTL statement retention sets on modern servers (placeholders `{table}`, `{column}`, `{months}`).
const TTL_TEMPLATE: &str = include_str!("../../../../clickhouse/retention_ttl.sql");

/// One monthly partition removed by [`ClickHouseSink::apply_retention`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DroppedPartition {
    pub table: String,
    /// The partition value, `YYYYMM`.
    pub partition: String,
}

/// What [`ClickHouseSink::apply_retention`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub server_version: String,
    /// Partitions before this month (`YYYYMM`) held only rows older than the retention and were dropped.
    pub cutoff: u32,
    /// Dropped partitions, sorted by table then partition.
    pub dropped: Vec<DroppedPartition>,
    /// Tables whose TTL was set or changed by this call (modern servers only; empty when already set).
    pub ttl_set: Vec<String>,
}

impl ClickHouseSink {
    /// The rows of a query on the server's `system` tables about this database (bound to its `?`).
    async fn system_rows<T>(&self, sql: &str) -> Result<Vec<T>>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.replica()
            .admin
            .query(sql)
            .bind(self.database.as_str())
            .fetch_all()
            .await
            .map_err(classify)
    }

    /// Applies a retention of `months` months (at least 1) to every month-partitioned table of the
    /// database, as of today (UTC). See [`ClickHouseSink::apply_retention_at`].
    pub async fn apply_retention(&self, months: u32) -> Result<RetentionReport> {
        self.apply_retention_at(months, Utc::now().date_naive())
            .await
    }

    /// Applies a retention of `months` months as of `today`: on a modern server, sets (or changes) a TTL
    /// of `months` months on the time column of each `toYYYYMM(...)`-partitioned table, so rows expire
    /// as merges go; on every server, drops each partition whose month ended before the day `months`
    /// months before `today` (every row in it is older than the retention). Idempotent. A partition
    /// larger than the server's `max_partition_size_to_drop` (default 50 GB) fails the call.
    pub async fn apply_retention_at(
        &self,
        months: u32,
        today: NaiveDate,
    ) -> Result<RetentionReport> {
        let cutoff = retention_cutoff(months, today)?;
        let version = self.server_version().await?;
        // (name, partition_key, engine_full) of the month-partitioned tables.
        let tables: Vec<(String, String, String)> = self
            .system_rows(
                "SELECT name, partition_key, engine_full FROM system.tables \
                 WHERE database = ? AND partition_key LIKE 'toYYYYMM(%' ORDER BY name",
            )
            .await?;
        let mut ttl_set = Vec::new();
        let mut partitioned = Vec::new();
        for (name, partition_key, engine_full) in &tables {
            let Some(column) = month_partition_column(partition_key) else {
                continue;
            };
            partitioned.push(name.as_str());
            if !version.is_modern() {
                continue;
            }
            let ttl = ttl_statement(&quote_ident(name), column, months);
            let expression = format!("TTL {column} + toIntervalMonth({months})");
            let already = engine_full.ends_with(&expression)
                || engine_full.contains(&format!("{expression} "));
            if already {
                continue;
            }
            self.replica()
                .client
                .query_raw(&ttl)
                .execute()
                .await
                .map_err(classify)?;
            ttl_set.push(name.clone());
        }
        // (table, partition, partition_id) of the active parts.
        let parts: Vec<(String, String, String)> = self
            .system_rows(
                "SELECT table, partition, partition_id FROM system.parts \
                 WHERE database = ? AND active GROUP BY table, partition, partition_id \
                 ORDER BY table, partition",
            )
            .await?;
        let mut dropped = Vec::new();
        for (table, partition, partition_id) in parts {
            let expired =
                partition.len() == 6 && partition.parse::<u32>().is_ok_and(|month| month < cutoff);
            if !expired || !partitioned.contains(&table.as_str()) {
                continue;
            }
            self.replica()
                .client
                .query_raw(&format!(
                    "ALTER TABLE {} DROP PARTITION ID {}",
                    quote_ident(&table),
                    quote_literal(&partition_id)
                ))
                .execute()
                .await
                .map_err(classify)?;
            dropped.push(DroppedPartition { table, partition });
        }
        dropped.sort();
        Ok(RetentionReport {
            server_version: version.text,
            cutoff,
            dropped,
            ttl_set,
        })
    }
}

/// The first month (`YYYYMM`) retention keeps: the month of the day `months` months before `today`.
fn retention_cutoff(months: u32, today: NaiveDate) -> Result<u32> {
    let invalid = |message: String| SinkError::permanent(SINK, message);
    if months == 0 {
        return Err(invalid(
            "retention must be at least one month (0 would drop the current month)".to_owned(),
        ));
    }
    let edge = today
        .checked_sub_months(Months::new(months))
        .ok_or_else(|| {
            invalid(format!(
                "retention of {months} months reaches before year 0"
            ))
        })?;
    Ok(u32::try_from(edge.year()).unwrap_or(0) * 100 + edge.month())
}

/// The column of a `toYYYYMM(column)` partition key, when it is a plain identifier.
fn month_partition_column(partition_key: &str) -> Option<&str> {
    let column = partition_key
        .trim()
        .strip_prefix("toYYYYMM(")?
        .strip_suffix(')')?
        .trim();
    let plain = !column.is_empty()
        && column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then_some(column)
}

/// The TTL statement of `clickhouse/retention_ttl.sql` for one table.
fn ttl_statement(table: &str, column: &str, months: u32) -> String {
    statements(TTL_TEMPLATE)
        .concat()
        .replace("{table}", table)
        .replace("{column}", column)
        .replace("{months}", &months.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_cutoff_is_the_month_of_the_edge_day() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(retention_cutoff(3, day(2026, 11, 24)).unwrap(), 202608);
        assert_eq!(retention_cutoff(1, day(2026, 1, 31)).unwrap(), 202512);
        assert_eq!(retention_cutoff(12, day(2026, 3, 1)).unwrap(), 202503);
        // Month ends clamp: 31 May minus three months is 28 February.
        assert_eq!(retention_cutoff(3, day(2026, 5, 31)).unwrap(), 202602);
        assert!(retention_cutoff(0, day(2026, 5, 31)).is_err());
    }

    #[test]
    fn finds_the_partition_column_and_builds_the_ttl() {
        assert_eq!(
            month_partition_column("toYYYYMM(occurred_at)"),
            Some("occurred_at")
        );
        assert_eq!(month_partition_column("toYYYYMM(hour)"), Some("hour"));
        assert_eq!(month_partition_column("toYYYYMMDD(day)"), None);
        assert_eq!(month_partition_column("toYYYYMM(toDate(x))"), None);
        assert_eq!(
            ttl_statement("`rank_day`", "day", 6),
            "ALTER TABLE `rank_day` MODIFY TTL day + toIntervalMonth(6)"
        );
    }
}
