//! The ClickHouse sink: raw events, one row per event, written in RowBinary (per flush, each table's
//! rows in one `INSERT`, or a few concurrent ones when there are many), plus the migration runner for the DDL under `clickhouse/migrations/` and the
//! retention command. Writes are idempotent by construction: the raw tables are ReplacingMergeTree with
//! `event_id` closing the sort key, so a batch written again after a crash or rebalance collapses onto the
//! rows already there, and the rollups that materialized views derive from them hold duplicate-proof
//! aggregate states only (docs/analytics.md).
//!
//! Portability: every migration has a base file that runs on ClickHouse 18.16 (Debian 12's server) and on
//! current releases, and may have a sibling `NNNN_name.modern.sql` overlay (ALTERs only: LowCardinality,
//! codecs, DateTime64 columns) that the runner applies after the base on servers at least
//! [`MODERN_SINCE`] — detected with `SELECT version()`. Base and overlay are recorded separately in
//! `sluice_schema_migrations` (the overlay as `name.modern`), so a server upgraded later gets its overlays
//! at the next `migrate`. Retention uses TTL where the server is modern and drops whole expired monthly
//! partitions everywhere.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Datelike, Months, NaiveDate, Utc};
use clickhouse::{Client, Row};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use crate::error::{clickhouse_class, clickhouse_code, ErrorClass, Result, SinkError};
use sluice_aggregator::batch::{CrawlRecord, PartitionBatch};
use sluice_schemas::{ClickEvent, RankEvent};

const SINK: &str = "clickhouse";

/// One schema migration: a base SQL file for every supported server and an optional overlay for modern
/// ones. Statements are separated by `;` at line ends; comment lines start with `--`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub base: &'static str,
    pub modern: Option<&'static str>,
}

/// The migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "raw_events",
        base: include_str!("../../../../clickhouse/migrations/0001_raw_events.sql"),
        modern: Some(include_str!(
            "../../../../clickhouse/migrations/0001_raw_events.modern.sql"
        )),
    },
    Migration {
        version: 2,
        name: "rollups",
        base: include_str!("../../../../clickhouse/migrations/0002_rollups.sql"),
        modern: None,
    },
    Migration {
        version: 3,
        name: "click_hour_view",
        base: include_str!("../../../../clickhouse/migrations/0003_click_hour_view.sql"),
        modern: None,
    },
];

/// The first server version (major, minor) that gets the modern overlays and TTL retention. Every
/// feature they use (LowCardinality, codecs, DateTime64, `MODIFY TTL`) is in 21.8 LTS; verified on 26.x.
pub const MODERN_SINCE: (u32, u32) = (21, 8);

/// The TTL statement retention sets on modern servers (placeholders `{table}`, `{column}`, `{months}`).
const TTL_TEMPLATE: &str = include_str!("../../../../clickhouse/retention_ttl.sql");

/// A server's `version()`, e.g. `18.16.1` or `26.9.2.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub text: String,
}

impl ServerVersion {
    /// Parses `major.minor[.…]`; `None` when it does not start that way.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion {
            major,
            minor,
            text: text.trim().to_owned(),
        })
    }

    /// Whether the server gets the modern overlays and TTL.
    pub fn is_modern(&self) -> bool {
        (self.major, self.minor) >= MODERN_SINCE
    }
}

/// A migration step the runner applied: `name` is the migration's name, or `name.modern` for an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
}

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

/// Endpoint and credentials of the ClickHouse sink.
#[derive(Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Concurrent `INSERT`s per table and flush, at most (see [`ClickHouseSink::write_all`]).
    pub insert_streams: usize,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("insert_streams", &self.insert_streams)
            .finish()
    }
}

#[derive(Clone)]
pub struct ClickHouseSink {
    client: Client,
    admin: Client,
    database: String,
    insert_streams: usize,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// One row of `rank_events` (`clickhouse/migrations/0001_raw_events.sql`), borrowing the event's strings.
#[derive(Debug, Row, Serialize)]
pub struct RankRow<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    occurred_at: u32,
    occurred_at_micros: u32,
    campaign_id: &'a str,
    keyword: &'a str,
    geo: &'a str,
    engine: &'a str,
    device: &'a str,
    url: Option<&'a str>,
    position: Option<u8>,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// One row of `crawl_events` (`clickhouse/migrations/0001_raw_events.sql`), borrowing the event's strings.
#[derive(Debug, Row, Serialize)]
pub struct CrawlRow<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    occurred_at: u32,
    occurred_at_micros: u32,
    campaign_id: &'a str,
    url: &'a str,
    domain: &'a str,
    status_code: u16,
    fetch_ms: u32,
    bytes: u64,
    content_hash: Option<&'a str>,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// One row of `click_events` (`clickhouse/migrations/0001_raw_events.sql`), borrowing the event's strings.
#[derive(Debug, Row, Serialize)]
pub struct ClickRow<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    occurred_at: u32,
    occurred_at_micros: u32,
    short_code: &'a str,
    referrer: Option<&'a str>,
    country: Option<&'a str>,
    user_agent: Option<&'a str>,
    visitor_id: Option<&'a str>,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// Seconds and sub-second microseconds of an event time, as the raw tables store them (`DateTime` is a
/// `UInt32` of seconds: 1970-01-01 to 2106-02-07). Validation refuses event times outside that range.
fn split_time(ts: chrono::DateTime<chrono::Utc>, event_id: &str) -> Result<(u32, u32)> {
    let micros = ts.timestamp_micros();
    let secs = fits(
        micros.div_euclid(1_000_000),
        "occurred_at (DateTime)",
        event_id,
    )?;
    let sub = fits(micros.rem_euclid(1_000_000), "occurred_at_micros", event_id)?;
    Ok((secs, sub))
}

/// A validated value converted to its column's type. Validation keeps every value in range
/// (docs/events.md, schemas/src/validate.rs), so this never fails; if it did, the row is refused with
/// the column named rather than clamped or wrapped into another value.
fn fits<T, S>(value: S, column: &str, event_id: &str) -> Result<T>
where
    T: TryFrom<S>,
    S: Copy + std::fmt::Display,
{
    // A data error: the flush isolates the event and dead-letters it (`sink_refused`).
    T::try_from(value).map_err(|_| {
        SinkError::new(
            SINK,
            ErrorClass::Data,
            None,
            format!(
                "event {event_id:?}: {column}={value} does not fit its ClickHouse column (a validation gap)"
            ),
        )
    })
}

impl ClickHouseSink {
    pub fn new(config: &ClickHouseConfig) -> Self {
        let mut admin = Client::default()
            .with_url(&config.url)
            .with_validation(false);
        if let Some(user) = &config.user {
            admin = admin.with_user(user);
        }
        if let Some(password) = &config.password {
            admin = admin.with_password(password);
        }
        let client = admin.clone().with_database(&config.database);
        ClickHouseSink {
            client,
            admin,
            database: config.database.clone(),
            insert_streams: config.insert_streams.max(1),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub async fn ping(&self) -> Result<()> {
        self.admin
            .query("SELECT 1")
            .execute()
            .await
            .map_err(classify)
    }

    /// The server's version, from `SELECT version()`.
    pub async fn server_version(&self) -> Result<ServerVersion> {
        let text: String = self
            .admin
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(classify)?;
        ServerVersion::parse(&text).ok_or_else(|| {
            SinkError::permanent(SINK, format!("unrecognised server version {text:?}"))
        })
    }

    /// Creates the database if needed and applies, in version order, each base migration not yet
    /// recorded in `sluice_schema_migrations` and, on a modern server, each overlay not yet recorded.
    /// Idempotent; returns the steps it applied.
    pub async fn migrate(&self) -> Result<Vec<AppliedMigration>> {
        let create_db = format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            quote_ident(&self.database)
        );
        self.admin
            .query_raw(&create_db)
            .execute()
            .await
            .map_err(classify)?;
        self.client
            .query_raw(
                "CREATE TABLE IF NOT EXISTS sluice_schema_migrations \
                 (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version",
            )
            .execute()
            .await
            .map_err(classify)?;
        let modern = self.server_version().await?.is_modern();
        #[derive(Row, Deserialize)]
        struct Recorded {
            version: u32,
            name: String,
        }
        let recorded: Vec<(u32, String)> = self
            .client
            .query_raw("SELECT version, name FROM sluice_schema_migrations")
            .fetch_all::<Recorded>()
            .await
            .map_err(classify)?
            .into_iter()
            .map(|r| (r.version, r.name))
            .collect();
        let is_overlay = |name: &str| name.ends_with(".modern");
        let mut ran = Vec::new();
        for migration in MIGRATIONS {
            let base_done = recorded
                .iter()
                .any(|(v, name)| *v == migration.version && !is_overlay(name));
            if !base_done {
                self.apply(migration.version, migration.name, migration.base)
                    .await?;
                ran.push(AppliedMigration {
                    version: migration.version,
                    name: migration.name.to_owned(),
                });
            }
            let Some(overlay) = migration.modern.filter(|_| modern) else {
                continue;
            };
            let overlay_name = format!("{}.modern", migration.name);
            let overlay_done = recorded
                .iter()
                .any(|(v, name)| *v == migration.version && *name == overlay_name);
            if !overlay_done {
                self.apply(migration.version, &overlay_name, overlay)
                    .await?;
                ran.push(AppliedMigration {
                    version: migration.version,
                    name: overlay_name,
                });
            }
        }
        Ok(ran)
    }

    /// Runs one migration file's statements, then records it.
    async fn apply(&self, version: u32, name: &str, sql: &str) -> Result<()> {
        for statement in statements(sql) {
            self.client
                .query_raw(&statement)
                .execute()
                .await
                .map_err(classify)?;
        }
        self.client
            .query_raw(&format!(
                "INSERT INTO sluice_schema_migrations (version, name, applied_at) VALUES ({version}, {}, now())",
                quote_literal(name)
            ))
            .execute()
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
        #[derive(Row, Deserialize)]
        struct Table {
            name: String,
            partition_key: String,
            engine_full: String,
        }
        let tables: Vec<Table> = self
            .admin
            .query(
                "SELECT name, partition_key, engine_full FROM system.tables \
                 WHERE database = ? AND partition_key LIKE 'toYYYYMM(%' ORDER BY name",
            )
            .bind(self.database.as_str())
            .fetch_all()
            .await
            .map_err(classify)?;
        let mut ttl_set = Vec::new();
        let mut partitioned = Vec::new();
        for table in &tables {
            let Some(column) = month_partition_column(&table.partition_key) else {
                continue;
            };
            partitioned.push(table.name.as_str());
            if !version.is_modern() {
                continue;
            }
            let ttl = ttl_statement(&quote_ident(&table.name), column, months);
            let expression = format!("TTL {column} + toIntervalMonth({months})");
            let already = table.engine_full.ends_with(&expression)
                || table.engine_full.contains(&format!("{expression} "));
            if already {
                continue;
            }
            self.client
                .query_raw(&ttl)
                .execute()
                .await
                .map_err(classify)?;
            ttl_set.push(table.name.clone());
        }
        #[derive(Row, Deserialize)]
        struct Part {
            table: String,
            partition: String,
            partition_id: String,
        }
        let parts: Vec<Part> = self
            .admin
            .query(
                "SELECT table, partition, partition_id FROM system.parts \
                 WHERE database = ? AND active GROUP BY table, partition, partition_id \
                 ORDER BY table, partition",
            )
            .bind(self.database.as_str())
            .fetch_all()
            .await
            .map_err(classify)?;
        let mut dropped = Vec::new();
        for part in parts {
            let expired = part.partition.len() == 6
                && part
                    .partition
                    .parse::<u32>()
                    .is_ok_and(|month| month < cutoff);
            if !expired || !partitioned.contains(&part.table.as_str()) {
                continue;
            }
            self.client
                .query_raw(&format!(
                    "ALTER TABLE {} DROP PARTITION ID {}",
                    quote_ident(&part.table),
                    quote_literal(&part.partition_id)
                ))
                .execute()
                .await
                .map_err(classify)?;
            dropped.push(DroppedPartition {
                table: part.table,
                partition: part.partition,
            });
        }
        dropped.sort();
        Ok(RetentionReport {
            server_version: version.text,
            cutoff,
            dropped,
            ttl_set,
        })
    }

    /// Writes a batch's raw events to the three tables. Returns the number of rows written.
    pub async fn write(&self, batch: &PartitionBatch) -> Result<u64> {
        self.write_all(&[batch]).await
    }

    /// Writes the raw events of several partition batches: the three tables concurrently, and a table's
    /// rows in up to [`ClickHouseConfig::insert_streams`] concurrent `INSERT`s (whole partition batches
    /// each, at least [`MIN_STREAM_ROWS`] rows apiece). The server runs one insert — its parts and its
    /// materialized views — on one thread, so a single stream leaves the other cores to PostgreSQL and
    /// ingest at best; fewer, larger blocks still mean fewer parts to merge. Returns the rows written.
    pub async fn write_all(&self, batches: &[&PartitionBatch]) -> Result<u64> {
        let ingested_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut inserts = Vec::new();
        for group in streams(batches, self.insert_streams, |b| b.rank_events.len()) {
            let insert = self.insert_rows::<RankRow<'static>, _>(
                "rank_events",
                group,
                rank_events,
                rank_row,
                ingested_at,
            );
            inserts.push(insert.boxed());
        }
        for group in streams(batches, self.insert_streams, |b| b.crawl_events.len()) {
            let insert = self.insert_rows::<CrawlRow<'static>, _>(
                "crawl_events",
                group,
                crawl_events,
                crawl_row,
                ingested_at,
            );
            inserts.push(insert.boxed());
        }
        for group in streams(batches, self.insert_streams, |b| b.click_events.len()) {
            let insert = self.insert_rows::<ClickRow<'static>, _>(
                "click_events",
                group,
                click_events,
                click_row,
                ingested_at,
            );
            inserts.push(insert.boxed());
        }
        let written = futures_util::future::try_join_all(inserts).await?;
        Ok(written.into_iter().sum())
    }

    /// One `INSERT` into `table` of the rows `row` makes of each batch's `events`, in RowBinary;
    /// returns (and counts) the rows written.
    async fn insert_rows<T, E: Sync>(
        &self,
        table: &'static str,
        batches: Vec<&PartitionBatch>,
        events: fn(&PartitionBatch) -> &[E],
        row: for<'a> fn(&'a PartitionBatch, &'a E, u32) -> Result<T::Value<'a>>,
        ingested_at: u32,
    ) -> Result<u64>
    where
        T: clickhouse::RowWrite + Send,
    {
        let mut insert = self.client.insert::<T>(table).await.map_err(classify)?;
        let mut written = 0_usize;
        for batch in batches {
            for event in events(batch) {
                insert
                    .write(&row(batch, event, ingested_at)?)
                    .await
                    .map_err(classify)?;
                written += 1;
            }
        }
        insert.end().await.map_err(classify)?;
        count_rows(table, written);
        Ok(written as u64)
    }
}

/// The rows one batch writes to the three raw tables, exactly as [`ClickHouseSink::write_all`] hands
/// them to the `clickhouse` crate's RowBinary serializer, or the first value that does not fit its
/// column. Public for the fuzz target (`aggregator/fuzz`), which checks every value against the
/// columns' types.
pub fn raw_rows(batch: &PartitionBatch, ingested_at: u32) -> Result<RawRows<'_>> {
    Ok(RawRows {
        rank: rank_events(batch)
            .iter()
            .map(|e| rank_row(batch, e, ingested_at))
            .collect::<Result<_>>()?,
        crawl: crawl_events(batch)
            .iter()
            .map(|e| crawl_row(batch, e, ingested_at))
            .collect::<Result<_>>()?,
        click: click_events(batch)
            .iter()
            .map(|e| click_row(batch, e, ingested_at))
            .collect::<Result<_>>()?,
    })
}

/// A batch's rows for `rank_events`, `crawl_events` and `click_events` (see [`raw_rows`]).
#[derive(Debug)]
pub struct RawRows<'a> {
    pub rank: Vec<RankRow<'a>>,
    pub crawl: Vec<CrawlRow<'a>>,
    pub click: Vec<ClickRow<'a>>,
}

fn rank_events(batch: &PartitionBatch) -> &[(i64, RankEvent)] {
    &batch.rank_events
}

fn crawl_events(batch: &PartitionBatch) -> &[CrawlRecord] {
    &batch.crawl_events
}

fn click_events(batch: &PartitionBatch) -> &[(i64, ClickEvent)] {
    &batch.click_events
}

fn rank_row<'a>(
    batch: &'a PartitionBatch,
    (offset, e): &'a (i64, RankEvent),
    ingested_at: u32,
) -> Result<RankRow<'a>> {
    let (secs, micros) = split_time(e.occurred_at, &e.event_id)?;
    Ok(RankRow {
        event_id: &e.event_id,
        tenant_id: &e.tenant_id,
        occurred_at: secs,
        occurred_at_micros: micros,
        campaign_id: &e.campaign_id,
        keyword: &e.keyword,
        geo: &e.geo,
        engine: &e.engine,
        device: &e.device,
        url: e.url.as_deref(),
        position: e
            .position
            .map(|p| fits(p, "position (UInt8)", &e.event_id))
            .transpose()?,
        kafka_topic: &batch.topic,
        kafka_partition: kafka_partition(batch)?,
        kafka_offset: fits(*offset, "kafka_offset (UInt64)", &e.event_id)?,
        ingested_at,
    })
}

fn crawl_row<'a>(
    batch: &'a PartitionBatch,
    r: &'a CrawlRecord,
    ingested_at: u32,
) -> Result<CrawlRow<'a>> {
    let e = &r.event;
    let (secs, micros) = split_time(e.occurred_at, &e.event_id)?;
    Ok(CrawlRow {
        event_id: &e.event_id,
        tenant_id: &e.tenant_id,
        occurred_at: secs,
        occurred_at_micros: micros,
        campaign_id: &e.campaign_id,
        url: &e.url,
        domain: &r.domain,
        status_code: fits(e.status_code, "status_code (UInt16)", &e.event_id)?,
        fetch_ms: fits(e.fetch_ms, "fetch_ms (UInt32)", &e.event_id)?,
        bytes: fits(e.bytes, "bytes (UInt64)", &e.event_id)?,
        content_hash: e.content_hash.as_deref(),
        kafka_topic: &batch.topic,
        kafka_partition: kafka_partition(batch)?,
        kafka_offset: fits(r.offset, "kafka_offset (UInt64)", &e.event_id)?,
        ingested_at,
    })
}

fn click_row<'a>(
    batch: &'a PartitionBatch,
    (offset, e): &'a (i64, ClickEvent),
    ingested_at: u32,
) -> Result<ClickRow<'a>> {
    let (secs, micros) = split_time(e.occurred_at, &e.event_id)?;
    Ok(ClickRow {
        event_id: &e.event_id,
        tenant_id: &e.tenant_id,
        occurred_at: secs,
        occurred_at_micros: micros,
        short_code: &e.short_code,
        referrer: e.referrer.as_deref(),
        country: e.country.as_deref(),
        user_agent: e.user_agent.as_deref(),
        visitor_id: e.visitor_id.as_deref(),
        kafka_topic: &batch.topic,
        kafka_partition: kafka_partition(batch)?,
        kafka_offset: fits(*offset, "kafka_offset (UInt64)", &e.event_id)?,
        ingested_at,
    })
}

/// A table's rows below this many are not split into another concurrent `INSERT`: each one is a part
/// for the server to merge later.
pub const MIN_STREAM_ROWS: usize = 50_000;

/// Splits the batches that have rows for a table (`rows` of each) into at most `max` groups of whole
/// batches with about equal rows, none below [`MIN_STREAM_ROWS`] unless there is only one. Empty when
/// no batch has rows.
fn streams<'a>(
    batches: &[&'a PartitionBatch],
    max: usize,
    rows: fn(&PartitionBatch) -> usize,
) -> Vec<Vec<&'a PartitionBatch>> {
    let with_rows: Vec<&PartitionBatch> = batches.iter().copied().filter(|b| rows(b) > 0).collect();
    let total: usize = with_rows.iter().map(|b| rows(b)).sum();
    if total == 0 {
        return Vec::new();
    }
    let n = (total / MIN_STREAM_ROWS)
        .clamp(1, max.max(1))
        .min(with_rows.len());
    // Largest first, each to the group with the fewest rows so far (longest-processing-time order).
    let mut sorted = with_rows;
    sorted.sort_by_key(|b| std::cmp::Reverse(rows(b)));
    let mut groups: Vec<(usize, Vec<&PartitionBatch>)> = vec![(0, Vec::new()); n];
    for batch in sorted {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(sum, _)| *sum)
            .expect("n >= 1");
        lightest.0 += rows(batch);
        lightest.1.push(batch);
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// The partition number for the `UInt16` column: a topic with more than 65,536 partitions is a
/// configuration the raw tables cannot record, refused rather than clamped onto partition 65535.
fn kafka_partition(batch: &PartitionBatch) -> Result<u16> {
    u16::try_from(batch.partition).map_err(|_| {
        SinkError::permanent(
            SINK,
            format!(
                "{}/{}: kafka_partition does not fit the raw tables' UInt16 column (0..=65535)",
                batch.topic, batch.partition
            ),
        )
    })
}

fn count_rows(table: &'static str, n: usize) {
    metrics::counter!(crate::metrics::SINK_ROWS, "sink" => SINK, "table" => table)
        .increment(n as u64);
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The statements of a migration file: split on `;` at line ends, comment lines dropped.
pub fn statements(sql: &str) -> Vec<String> {
    sql.split(";\n")
        .map(strip_comments)
        .filter(|s| !s.is_empty())
        .collect()
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

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .trim_end_matches(';')
        .to_owned()
}

/// Network trouble is transient; a server exception goes by its code ([`clickhouse_class`]: content
/// refused, transient such as overload, or permanent) and keeps it; anything else (schema mismatch,
/// encoding) is permanent.
fn classify(e: clickhouse::error::Error) -> SinkError {
    use clickhouse::error::Error as E;
    let message = crate::error::redact(&e.to_string());
    let (class, code) = match &e {
        E::Network(_) | E::TimedOut => (ErrorClass::Transient, None),
        E::BadResponse(text) => match clickhouse_code(text) {
            Some(code) => (clickhouse_class(code), Some(code.to_string())),
            None => (ErrorClass::Permanent, None),
        },
        _ => (ErrorClass::Permanent, None),
    };
    SinkError::new(SINK, class, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `partition` holding `n` click events (their contents do not matter here).
    fn clicks(partition: i32, n: usize) -> PartitionBatch {
        let event = sluice_schemas::ClickEvent {
            schema_version: 1,
            event_id: "e".into(),
            tenant_id: "t".into(),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            short_code: "s".into(),
            referrer: None,
            country: None,
            user_agent: None,
            visitor_id: None,
        };
        let mut batch = PartitionBatch::new("click-events", partition, None);
        batch.click_events = vec![(0, event); n];
        batch
    }

    /// The partitions of each group, and each group's rows, sorted for comparison.
    fn shape(groups: &[Vec<&PartitionBatch>]) -> Vec<(usize, Vec<i32>)> {
        let mut shape: Vec<(usize, Vec<i32>)> = groups
            .iter()
            .map(|g| {
                let mut parts: Vec<i32> = g.iter().map(|b| b.partition).collect();
                parts.sort();
                (g.iter().map(|b| b.click_events.len()).sum(), parts)
            })
            .collect();
        shape.sort();
        shape
    }

    #[test]
    fn splits_a_table_into_balanced_streams_of_whole_batches() {
        let rows = |b: &PartitionBatch| b.click_events.len();
        let sizes = [90_000, 70_000, 60_000, 40_000, 30_000, 0];
        let batches: Vec<PartitionBatch> = (0..).zip(sizes).map(|(p, n)| clicks(p, n)).collect();
        let refs: Vec<&PartitionBatch> = batches.iter().collect();
        // 290,000 rows in two streams, largest first to the lighter group: 90k+40k+30k / 70k+60k.
        assert_eq!(
            shape(&streams(&refs, 2, rows)),
            vec![(130_000, vec![1, 2]), (160_000, vec![0, 3, 4])]
        );
        // Three streams: 90k / 70k+30k / 60k+40k; the empty batch is in none.
        assert_eq!(
            shape(&streams(&refs, 3, rows)),
            vec![
                (90_000, vec![0]),
                (100_000, vec![1, 4]),
                (100_000, vec![2, 3])
            ]
        );
        // 290,000 rows allow at most five streams of 50,000; one per batch with rows is the limit.
        assert_eq!(streams(&refs, 64, rows).len(), 5);
        // Below 2 × 50,000 rows: one stream, whatever the maximum.
        let small = [clicks(0, 60_000), clicks(1, 39_999)];
        let small: Vec<&PartitionBatch> = small.iter().collect();
        assert_eq!(shape(&streams(&small, 4, rows)), vec![(99_999, vec![0, 1])]);
        // No rows: no insert at all.
        assert!(streams(&refs[5..], 2, rows).is_empty());
    }

    #[test]
    fn splits_time_into_seconds_and_micros() {
        let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(split_time(ts, "e").unwrap(), (1_767_323_045, 123_456));
        // Before 1970 or after 2106 the DateTime column cannot hold it: an error naming the column,
        // never 0 or a wrapped value.
        let early = chrono::DateTime::parse_from_rfc3339("1969-12-31T23:59:59.5Z")
            .unwrap()
            .to_utc();
        let err = split_time(early, "e").unwrap_err().to_string();
        assert!(err.contains("occurred_at (DateTime)=-1"), "{err}");
        let last = chrono::DateTime::from_timestamp(i64::from(u32::MAX), 999_999_000).unwrap();
        assert_eq!(split_time(last, "e").unwrap(), (u32::MAX, 999_999));
        assert!(split_time(last + chrono::TimeDelta::seconds(1), "e").is_err());
    }

    #[test]
    fn row_values_that_do_not_fit_are_errors_not_clamped() {
        let mut batch = PartitionBatch::new("t", 65_536, Some(0));
        assert!(kafka_partition(&batch)
            .unwrap_err()
            .to_string()
            .contains("t/65536"));
        batch.partition = 65_535;
        assert_eq!(kafka_partition(&batch).unwrap(), 65_535);
        assert_eq!(
            fits::<u32, i64>(4_294_967_295, "fetch_ms", "e").unwrap(),
            u32::MAX
        );
        let err = fits::<u32, i64>(4_294_967_296, "fetch_ms (UInt32)", "e").unwrap_err();
        assert!(
            err.to_string().contains("fetch_ms (UInt32)=4294967296"),
            "{err}"
        );
        assert!(fits::<u64, i64>(-1, "bytes (UInt64)", "e").is_err());
        assert!(fits::<u16, i32>(65_536, "status_code (UInt16)", "e").is_err());
    }

    #[test]
    fn migrations_split_into_statements() {
        let statements = statements(MIGRATIONS[0].base);
        assert_eq!(statements.len(), 3);
        assert!(statements
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        let rollups = super::statements(MIGRATIONS[1].base);
        assert!(rollups
            .iter()
            .all(|s| s.starts_with("CREATE ") || s.starts_with("INSERT INTO ")));
        assert!(rollups.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn every_migration_file_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clickhouse/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let mut listed = Vec::new();
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are 1, 2, 3, …");
            let stem = format!("{:04}_{}", m.version, m.name);
            let base = format!("{stem}.sql");
            assert_eq!(
                std::fs::read_to_string(format!("{dir}/{base}")).unwrap(),
                m.base
            );
            listed.push(base);
            if let Some(overlay) = m.modern {
                let file = format!("{stem}.modern.sql");
                assert_eq!(
                    std::fs::read_to_string(format!("{dir}/{file}")).unwrap(),
                    overlay
                );
                listed.push(file);
            }
        }
        listed.sort();
        assert_eq!(files, listed);
    }

    #[test]
    fn parses_server_versions() {
        let old = ServerVersion::parse("18.16.1").unwrap();
        assert_eq!((old.major, old.minor), (18, 16));
        assert!(!old.is_modern());
        assert!(ServerVersion::parse("26.9.2.1\n").unwrap().is_modern());
        assert!(ServerVersion::parse("21.8.15.7").unwrap().is_modern());
        assert!(!ServerVersion::parse("21.7.1").unwrap().is_modern());
        assert_eq!(ServerVersion::parse("nightly"), None);
    }

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
