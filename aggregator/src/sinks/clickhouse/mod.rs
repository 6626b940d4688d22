//! The ClickHouse sink: raw events, one row per event, written in RowBinary (one `INSERT` per table per
//! partition batch), plus the migration runner for the DDL under `clickhouse/migrations/`. Writes are
//! idempotent by construction: the tables are ReplacingMergeTree with `event_id` closing the sort key, so
//! a batch written again after a crash or rebalance collapses onto the rows already there.

use std::time::{SystemTime, UNIX_EPOCH};

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use super::{Result, SinkError};
use crate::batch::PartitionBatch;

const SINK: &str = "clickhouse";

/// The migrations, in order: (version, name, SQL). Statements are separated by `;` at line ends.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[(
    1,
    "raw_events",
    include_str!("../../../../clickhouse/migrations/0001_raw_events.sql"),
)];

/// Endpoint and credentials of the ClickHouse sink.
#[derive(Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Clone)]
pub struct ClickHouseSink {
    client: Client,
    admin: Client,
    database: String,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

#[derive(Row, Serialize)]
struct RankRow<'a> {
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

#[derive(Row, Serialize)]
struct CrawlRow<'a> {
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

#[derive(Row, Serialize)]
struct ClickRow<'a> {
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

/// Seconds and sub-second microseconds of an event time, as the raw tables store them.
fn split_time(ts: chrono::DateTime<chrono::Utc>) -> (u32, u32) {
    let micros = ts.timestamp_micros();
    // Validation keeps event times within about a year of now: inside DateTime's 1970–2106 range.
    (
        u32::try_from(micros.div_euclid(1_000_000)).unwrap_or(0),
        micros.rem_euclid(1_000_000) as u32,
    )
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

    /// Creates the database if needed and applies the migrations not yet recorded in
    /// `sluice_schema_migrations`. Idempotent.
    pub async fn migrate(&self) -> Result<Vec<u32>> {
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
        #[derive(Row, Deserialize)]
        struct Applied {
            version: u32,
        }
        let applied: Vec<u32> = self
            .client
            .query_raw("SELECT version FROM sluice_schema_migrations")
            .fetch_all::<Applied>()
            .await
            .map_err(classify)?
            .into_iter()
            .map(|a| a.version)
            .collect();
        let mut ran = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            for statement in sql
                .split(";\n")
                .map(strip_comments)
                .filter(|s| !s.is_empty())
            {
                self.client
                    .query_raw(&statement)
                    .execute()
                    .await
                    .map_err(classify)?;
            }
            self.client
                .query_raw(&format!(
                    "INSERT INTO sluice_schema_migrations (version, name, applied_at) VALUES ({version}, '{name}', now())"
                ))
                .execute()
                .await
                .map_err(classify)?;
            ran.push(*version);
        }
        Ok(ran)
    }

    /// Writes a batch's raw events to the three tables. Returns the number of rows written.
    pub async fn write(&self, batch: &PartitionBatch) -> Result<u64> {
        let ingested_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let topic = batch.topic.as_str();
        let partition = u16::try_from(batch.partition).unwrap_or(u16::MAX);
        let mut rows = 0;
        if !batch.rank_events.is_empty() {
            let mut insert = self
                .client
                .insert::<RankRow<'_>>("rank_events")
                .await
                .map_err(classify)?;
            for (offset, e) in &batch.rank_events {
                let (secs, micros) = split_time(e.occurred_at);
                let row = RankRow {
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
                    position: e.position.and_then(|p| u8::try_from(p).ok()),
                    kafka_topic: topic,
                    kafka_partition: partition,
                    kafka_offset: *offset as u64,
                    ingested_at,
                };
                insert.write(&row).await.map_err(classify)?;
            }
            insert.end().await.map_err(classify)?;
            rows += batch.rank_events.len() as u64;
            count_rows("rank_events", batch.rank_events.len());
        }
        if !batch.crawl_events.is_empty() {
            let mut insert = self
                .client
                .insert::<CrawlRow<'_>>("crawl_events")
                .await
                .map_err(classify)?;
            for r in &batch.crawl_events {
                let e = &r.event;
                let (secs, micros) = split_time(e.occurred_at);
                let row = CrawlRow {
                    event_id: &e.event_id,
                    tenant_id: &e.tenant_id,
                    occurred_at: secs,
                    occurred_at_micros: micros,
                    campaign_id: &e.campaign_id,
                    url: &e.url,
                    domain: &r.domain,
                    status_code: u16::try_from(e.status_code).unwrap_or(0),
                    fetch_ms: u32::try_from(e.fetch_ms).unwrap_or(u32::MAX),
                    bytes: e.bytes as u64,
                    content_hash: e.content_hash.as_deref(),
                    kafka_topic: topic,
                    kafka_partition: partition,
                    kafka_offset: r.offset as u64,
                    ingested_at,
                };
                insert.write(&row).await.map_err(classify)?;
            }
            insert.end().await.map_err(classify)?;
            rows += batch.crawl_events.len() as u64;
            count_rows("crawl_events", batch.crawl_events.len());
        }
        if !batch.click_events.is_empty() {
            let mut insert = self
                .client
                .insert::<ClickRow<'_>>("click_events")
                .await
                .map_err(classify)?;
            for (offset, e) in &batch.click_events {
                let (secs, micros) = split_time(e.occurred_at);
                let row = ClickRow {
                    event_id: &e.event_id,
                    tenant_id: &e.tenant_id,
                    occurred_at: secs,
                    occurred_at_micros: micros,
                    short_code: &e.short_code,
                    referrer: e.referrer.as_deref(),
                    country: e.country.as_deref(),
                    user_agent: e.user_agent.as_deref(),
                    visitor_id: e.visitor_id.as_deref(),
                    kafka_topic: topic,
                    kafka_partition: partition,
                    kafka_offset: *offset as u64,
                    ingested_at,
                };
                insert.write(&row).await.map_err(classify)?;
            }
            insert.end().await.map_err(classify)?;
            rows += batch.click_events.len() as u64;
            count_rows("click_events", batch.click_events.len());
        }
        Ok(rows)
    }
}

fn count_rows(table: &'static str, n: usize) {
    metrics::counter!(crate::metrics::SINK_ROWS, "sink" => SINK, "table" => table)
        .increment(n as u64);
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
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

/// Network trouble and server overload are transient; anything else (schema mismatch, syntax) is not.
fn classify(e: clickhouse::error::Error) -> SinkError {
    use clickhouse::error::Error as E;
    let transient = match &e {
        E::Network(_) | E::TimedOut => true,
        // Server-side codes worth retrying: memory limit (241), too many parts (252), timeouts (159, 209),
        // network (210), table read-only during restart (242), too many simultaneous queries (202).
        E::BadResponse(msg) => [
            "Code: 241",
            "Code: 252",
            "Code: 159",
            "Code: 209",
            "Code: 210",
            "Code: 242",
            "Code: 202",
        ]
        .iter()
        .any(|c| msg.contains(c)),
        _ => false,
    };
    let message = super::postgres::redact(&e.to_string());
    if transient {
        SinkError::Transient {
            sink: SINK,
            message,
        }
    } else {
        SinkError::Permanent {
            sink: SINK,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_time_into_seconds_and_micros() {
        let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(split_time(ts), (1_767_323_045, 123_456));
    }

    #[test]
    fn migrations_split_into_statements() {
        let statements: Vec<String> = MIGRATIONS[0]
            .2
            .split(";\n")
            .map(strip_comments)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(statements.len(), 3);
        assert!(statements
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
    }
}
