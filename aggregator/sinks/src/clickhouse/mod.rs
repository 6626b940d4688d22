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

mod insert;
mod migrations;
mod retention;
mod rows;

use clickhouse::Client;

use crate::error::{clickhouse_class, clickhouse_code, ErrorClass, Result, SinkError};

pub use insert::MIN_STREAM_ROWS;
pub use migrations::{
    statements, AppliedMigration, Migration, ServerVersion, MIGRATIONS, MODERN_SINCE,
};
pub use retention::{DroppedPartition, RetentionReport};
pub use rows::{raw_rows, ClickRow, CrawlRow, RankRow, RawRows};

const SINK: &str = "clickhouse";

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

/// The sink. `Debug` shows the clients as the `clickhouse` crate prints them: credentials redacted.
#[derive(Clone, Debug)]
pub struct ClickHouseSink {
    client: Client,
    admin: Client,
    database: String,
    insert_streams: usize,
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
