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
//!
//! Replicas and TLS: `url` may list several replica URLs (comma-separated, the first preferred); writes
//! and queries go to one replica at a time and move to the next on a transient error, re-sending the
//! very same blocks (`replicas.rs`). With a `cluster`, migrations run `ON CLUSTER` with `Replicated*`
//! engines (`cluster.rs`). A `ca_file` adds a PEM CA to the roots of the HTTPS client.

mod cluster;
mod insert;
mod migrations;
mod replicas;
mod retention;
mod rows;

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use clickhouse::Client;

use crate::error::{clickhouse_class, clickhouse_code, ErrorClass, Result, SinkError};

pub use cluster::{create_database, on_cluster};
pub use insert::{sorted_rows, MIN_STREAM_ROWS};
pub use migrations::{
    statements, AppliedMigration, Migration, ServerVersion, MIGRATIONS, MODERN_SINCE,
};
pub use replicas::{parse_urls, tables_behind};
pub use retention::{DroppedPartition, RetentionReport};
pub use rows::{raw_rows, ClickRow, CrawlRow, DecodedRows, RankRow};

const SINK: &str = "clickhouse";

/// Endpoint and credentials of the ClickHouse sink.
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// One URL, or several replicas' URLs separated by commas (the first preferred): [`parse_urls`].
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Concurrent `INSERT`s per table and flush, at most (see [`ClickHouseSink::write_all`]).
    pub insert_streams: usize,
    /// The cluster (a `remote_servers` name) whose hosts run the migrations, with `Replicated*` engines;
    /// `None`: a single server.
    pub cluster: Option<String>,
    /// A PEM file of CA certificates added to the HTTPS client's roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &crate::error::redact(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("insert_streams", &self.insert_streams)
            .field("cluster", &self.cluster)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// One server: a client without a database (for `CREATE DATABASE`, `system` queries) and one with it.
#[derive(Clone, Debug)]
struct Replica {
    admin: Client,
    client: Client,
}

/// The sink. `Debug` shows the clients as the `clickhouse` crate prints them: credentials redacted.
#[derive(Clone, Debug)]
pub struct ClickHouseSink {
    replicas: Arc<[Replica]>,
    /// The replica tried first: the last one that answered (shared by the sink's clones).
    preferred: Arc<AtomicUsize>,
    database: String,
    cluster: Option<String>,
    insert_streams: usize,
}

impl ClickHouseSink {
    /// The sink for `config`; fails on a URL list [`parse_urls`] refuses or a CA file that cannot be
    /// read or holds no certificate.
    pub fn new(config: &ClickHouseConfig) -> Result<Self> {
        let urls = parse_urls(&config.url).map_err(|e| SinkError::permanent(SINK, e))?;
        let base = match &config.ca_file {
            Some(path) => replicas::https_client(path)?,
            None => Client::default(),
        };
        let replicas: Vec<Replica> = urls
            .iter()
            .map(|url| {
                let mut admin = base.clone().with_url(url).with_validation(false);
                if let Some(user) = &config.user {
                    admin = admin.with_user(user);
                }
                if let Some(password) = &config.password {
                    admin = admin.with_password(password);
                }
                let client = admin.clone().with_database(&config.database);
                Replica { admin, client }
            })
            .collect();
        Ok(ClickHouseSink {
            replicas: replicas.into(),
            preferred: Arc::default(),
            database: config.database.clone(),
            cluster: config.cluster.clone(),
            insert_streams: config.insert_streams.max(1),
        })
    }

    /// The client (with the database) of the replica tried first.
    pub fn client(&self) -> &Client {
        &self.replica().client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The cluster the migrations run on, if any.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    pub async fn ping(&self) -> Result<()> {
        self.on_replicas(
            |r| async move { r.admin.query("SELECT 1").execute().await.map_err(classify) },
        )
        .await
    }

    /// The server's version, from `SELECT version()`.
    pub async fn server_version(&self) -> Result<ServerVersion> {
        self.on_replicas(migrations::replica_version).await
    }
}

/// Network trouble is transient; a server exception goes by its code ([`clickhouse_class`]: content
/// refused, transient such as overload, or permanent) and keeps it; anything else (schema mismatch,
/// encoding) is permanent.
fn classify(e: clickhouse::error::Error) -> SinkError {
    use clickhouse::error::Error as E;
    // The causes too: a network error's own text is only "client error (Connect)"; the refused
    // connection or the certificate the server sent is in its sources.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let message = crate::error::redact(&message);
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
