//! The PostgreSQL sink: the exactly-once commit point. For each partition batch, one transaction
//! (1) moves the partition's stored offset from the batch's `expected_offset` to its `end_offset` with a
//! compare-and-swap, and (2) merges the batch's partial aggregates into `click_daily`, `rank_daily` and
//! `crawl_hourly` with set-based `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` statements (one
//! per table, not one per row). If the swap finds another offset, another consumer has moved the
//! partition (rebalance, zombie): the transaction is rolled back and the caller is told where it stands.
//! The aggregate tables are partitioned by month; [`PostgresSink::ensure_partitions`] keeps partitions
//! ready ahead of time (`monthly`). The same swap clears a partition's replay fence once the offset
//! reaches it; the operator's rewind that sets the fence is in `rewind`. Schema, roles and row-level
//! security: `docs/postgres.md`. Through a transaction-pooling PgBouncer ([`Pooling::Transaction`]) every
//! statement is unnamed and runs inside an explicit transaction, and migrations run in one transaction of
//! their own (`pooled`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Transaction};

use crate::dead_letter::Parked;
use crate::error::{postgres_class, redact, ErrorClass, Result, SinkError};
use sluice_aggregator::dedup::EventKey;
use sluice_aggregator::PartitionBatch;

mod dedup;
mod known;
mod monthly;
mod pooled;
mod rewind;
mod upsert;

use known::KnownKeys;

pub use monthly::{PartitionMaintenance, PARTITION_MONTHS_AHEAD};
pub use pooled::Pooling;
pub use rewind::{Rewind, RewindError};
pub use upsert::{
    click_daily_arguments, crawl_hourly_arguments, rank_daily_arguments, CLICK_DAILY_INSERT,
    CLICK_DAILY_UPSERT, CRAWL_HOURLY_INSERT, CRAWL_HOURLY_UPSERT, RANK_DAILY_INSERT,
    RANK_DAILY_UPSERT,
};

const SINK: &str = "postgres";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The advisory lock key of [`PostgresSink::exclusively`] (start-up work done by one instance at a
/// time): the bytes of "sluiceCH" as a big-endian integer.
const EXCLUSIVE_LOCK_KEY: i64 = i64::from_be_bytes(*b"sluiceCH");

/// What happened to a batch at the commit point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Aggregates merged; the stored offset is now `next_offset`.
    Committed { next_offset: i64 },
    /// The stored offset was not the one the batch continues from: nothing was written.
    Fenced { stored: Option<i64> },
}

/// What is stored for a partition: where to resume, its dedup watermark, and its replay fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub next_offset: i64,
    pub watermark_ms: Option<i64>,
    /// Set while a replay is in progress: records below this offset were applied before the rewind.
    pub replay_until: Option<i64>,
}

/// Connection pool plus the consumer group whose offsets it stores.
#[derive(Debug, Clone)]
pub struct PostgresSink {
    pool: PgPool,
    group: String,
    /// Merge aggregates at commit. Off for an OLAP-only consumer group, which still keeps its offsets
    /// and dedup window here (tiered ingestion: docs/operations.md).
    aggregates: bool,
    pooling: Pooling,
    /// The aggregate keys this process has written, shared by its partitions' commits: `None`, every
    /// row goes by `ON CONFLICT` ([`remembering_keys`](Self::remembering_keys)).
    known: Option<Arc<Mutex<KnownKeys>>>,
}

impl PostgresSink {
    /// Connects lazily (the first use opens connections), so a down database does not fail start-up.
    /// `password`, when given, replaces the URL's (so it can come from a secret file).
    pub fn connect(
        url: &str,
        password: Option<&str>,
        group: &str,
        max_connections: u32,
    ) -> Result<Self> {
        Self::connect_pooled(url, password, group, max_connections, Pooling::Session)
    }

    /// [`connect`](Self::connect) for a URL that reaches PostgreSQL as `pooling` says (a
    /// transaction-pooling PgBouncer: [`Pooling::Transaction`]).
    pub fn connect_pooled(
        url: &str,
        password: Option<&str>,
        group: &str,
        max_connections: u32,
        pooling: Pooling,
    ) -> Result<Self> {
        let mut options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            SinkError::permanent(
                SINK,
                format!("invalid postgres URL: {}", redact(&e.to_string())),
            )
        })?;
        if let Some(password) = password {
            options = options.password(password);
        }
        options = pooling.connect_options(options);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(PostgresSink {
            pool,
            group: group.to_owned(),
            aggregates: true,
            pooling,
            known: None,
        })
    }

    /// Remembers the aggregate keys this sink's commits write, in at most `bytes`, so that rows with
    /// keys not seen before go in by plain `INSERT` (`known`). A share of ingest's memory budget.
    pub fn remembering_keys(mut self, bytes: usize) -> Self {
        self.known = Some(Arc::new(Mutex::new(KnownKeys::with_memory(bytes))));
        self
    }

    /// Plain inserts of rows believed new that met an existing key (each merged by `ON CONFLICT`
    /// instead), since start; `None` without [`remembering_keys`](Self::remembering_keys).
    pub fn insert_fallbacks(&self) -> Option<u64> {
        let known = self.known.as_ref()?;
        Some(known.lock().unwrap_or_else(|p| p.into_inner()).fallbacks())
    }

    /// Keeps offsets (and the dedup window) only, without merging aggregates.
    pub fn without_aggregates(mut self) -> Self {
        self.aggregates = false;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How this sink reaches PostgreSQL.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether statements may be named prepared statements, cached per connection (`Query::persistent`):
    /// not through a transaction pooler, where the next transaction runs on another server connection.
    fn persistent(&self) -> bool {
        self.pooling.named_statements()
    }

    /// Applies the embedded migrations (idempotent; sqlx records what ran in `_sqlx_migrations`).
    /// Through a transaction pooler the whole run is one transaction (see `pooled::migrate`).
    pub async fn migrate(&self) -> Result<()> {
        let result = match self.pooling {
            Pooling::Session => MIGRATOR.run(&self.pool).await,
            Pooling::Transaction => pooled::migrate(&MIGRATOR, &self.pool).await,
        };
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            other => SinkError::permanent(SINK, other.to_string()),
        })
    }

    /// Runs `work` while holding a transaction-level advisory lock in this database
    /// (`EXCLUSIVE_LOCK_KEY`), so that instances starting together do it one at a time: ClickHouse has
    /// no lock of its own for its migrations (two instances applying them at once on an empty database
    /// interleaved one's `DROP TABLE` with the other's DDL on the same table). A transaction lock, not a
    /// session lock, so that it holds through a transaction pooler too. `work`'s own result is returned
    /// (the transaction only carries the lock and is rolled back).
    pub async fn exclusively<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EXCLUSIVE_LOCK_KEY)
            .persistent(self.persistent())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let result = work.await;
        tx.rollback().await.map_err(classify)?;
        result
    }

    /// Versions of the embedded migrations the database has not applied, for a process that does not
    /// migrate (`migrate_on_start = false`, e.g. logged in as a member of `sluice_writer`): it only reads
    /// sqlx's `_sqlx_migrations`. Empty when the schema is current (or newer: expand-then-contract keeps
    /// an older binary working against a newer schema).
    pub async fn missing_migrations(&self) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let applied: Vec<(i64,)> =
            match sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
                .persistent(self.persistent())
                .fetch_all(&mut *tx)
                .await
            {
                Ok(rows) => rows,
                // Never migrated: the table does not exist yet.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                    Vec::new()
                }
                Err(e) => return Err(classify(e)),
            };
        // Read-only: rolled back when dropped (also after the error above, which aborted it).
        drop(tx);
        let applied: std::collections::HashSet<i64> = applied.into_iter().map(|(v,)| v).collect();
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        conn.ping().await.map_err(classify)
    }

    /// Stored offsets of the given partitions of one topic (absent: never committed). Like every read
    /// here, in a transaction of its own: through a transaction pooler, a statement outside one can
    /// have its Parse and its Execute sent to two different server connections.
    pub async fn load_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Stored>> {
        let rows: Vec<(i32, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT partition, next_offset, watermark_ms, replay_until FROM sluice_offsets
             WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)",
        )
        .bind(&self.group)
        .bind(topic)
        .bind(partitions)
        .persistent(self.persistent())
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(partition, next_offset, watermark_ms, replay_until)| {
                (
                    partition,
                    Stored {
                        next_offset,
                        watermark_ms,
                        replay_until,
                    },
                )
            })
            .collect())
    }

    /// The live entries of a partition's dedup window at `watermark_ms`, in acceptance order.
    pub async fn load_dedup(
        &self,
        topic: &str,
        partition: i32,
        watermark_ms: i64,
    ) -> Result<Vec<(EventKey, i64)>> {
        let mut tx = self.read().await?;
        let persistent = self.persistent();
        dedup::load(
            &mut tx,
            persistent,
            &self.group,
            topic,
            partition,
            watermark_ms,
        )
        .await
    }

    /// Dead letters parked in `sluice_dead_letters` (the dead-letter topic could not take them) for this
    /// consumer group, counted by (reason, source topic).
    pub async fn parked_dead_letters(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query_as(
            "SELECT reason, source_topic, count(*) FROM sluice_dead_letters
             WHERE consumer_group = $1 GROUP BY reason, source_topic ORDER BY reason, source_topic",
        )
        .bind(&self.group)
        .persistent(self.persistent())
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(classify)
    }

    /// A transaction for reads (rolled back when dropped: it wrote nothing).
    async fn read(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(classify)
    }

    /// Merges a batch's aggregates and moves its partition's offset, atomically.
    pub async fn commit(&self, batch: &PartitionBatch) -> Result<Commit> {
        let (commit, _) = self.commit_when(batch, std::future::ready(true)).await?;
        Ok(commit.expect("an immediate release always commits"))
    }

    /// Like [`commit`](Self::commit), but does all the transaction's work (offset swap, dedup rows,
    /// upserts) and then waits for `release` before `COMMIT`: `true` commits, `false` rolls back and
    /// returns `None` (nothing written; the batch can be committed again later). The flusher releases
    /// once the batch's rows are durable in ClickHouse, so the two sinks' writes overlap while nothing
    /// becomes visible in PostgreSQL before it is in ClickHouse. Also returns how long it waited for
    /// the release (time that is not PostgreSQL's). A fenced batch does not wait.
    pub async fn commit_when(
        &self,
        batch: &PartitionBatch,
        release: impl std::future::Future<Output = bool>,
    ) -> Result<(Option<Commit>, std::time::Duration)> {
        self.commit_parking(batch, &[], release).await
    }

    /// [`commit_when`](Self::commit_when) that also stores `parked` — dead letters the dead-letter
    /// topic could not take — in `sluice_dead_letters`, in the same transaction (so each is stored
    /// exactly once, with the offset that passes it).
    pub async fn commit_parking(
        &self,
        batch: &PartitionBatch,
        parked: &[Parked],
        release: impl std::future::Future<Output = bool>,
    ) -> Result<(Option<Commit>, std::time::Duration)> {
        let waited = std::time::Duration::ZERO;
        let Some(end) = batch.end_offset else {
            let next_offset = batch.expected_offset.unwrap_or(0);
            return Ok((Some(Commit::Committed { next_offset }), waited));
        };
        let mut tx = self.pool.begin().await.map_err(classify)?;
        if !self.swap_offset(&mut tx, batch, end).await? {
            tx.rollback().await.map_err(classify)?;
            let stored = self.load_offsets(&batch.topic, &[batch.partition]).await?;
            let stored = stored.get(&batch.partition).map(|s| s.next_offset);
            if stored == Some(end) {
                // An earlier attempt of this very commit went through but its acknowledgement was lost
                // (connection dropped after COMMIT): the range is applied exactly once already.
                return Ok((Some(Commit::Committed { next_offset: end }), waited));
            }
            return Ok((Some(Commit::Fenced { stored }), waited));
        }
        dedup::persist(&mut tx, self.persistent(), &self.group, batch, end).await?;
        if !parked.is_empty() {
            self.park(&mut tx, batch, parked).await?;
        }
        if self.aggregates {
            self.upsert_aggregates(&mut tx, batch, self.known.as_deref())
                .await?;
        }
        let started = std::time::Instant::now();
        let released = release.await;
        let waited = started.elapsed();
        if !released {
            tx.rollback().await.map_err(classify)?;
            return Ok((None, waited));
        }
        tx.commit().await.map_err(classify)?;
        Ok((Some(Commit::Committed { next_offset: end }), waited))
    }

    /// Merges the batch's aggregates (set-based statements per table: `upsert::merge`) inside `tx`;
    /// with `known`, rows with keys not written before go in by plain `INSERT`.
    async fn upsert_aggregates(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &PartitionBatch,
        known: Option<&Mutex<KnownKeys>>,
    ) -> Result<()> {
        let persistent = self.persistent();
        upsert::merge(tx, persistent, upsert::click_daily(batch), known).await?;
        upsert::merge(tx, persistent, upsert::rank_daily(batch), known).await?;
        upsert::merge(tx, persistent, upsert::crawl_hourly(batch), known).await
    }

    /// Runs the upserts of `batch`'s aggregates in a transaction that always rolls back: whether
    /// PostgreSQL takes these rows, with nothing written. The flusher probes subsets of a refused
    /// batch's events with it to find the ones PostgreSQL refuses.
    pub async fn probe_aggregates(&self, batch: &PartitionBatch) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let result = self.upsert_aggregates(&mut tx, batch, None).await;
        tx.rollback().await.map_err(classify)?;
        result
    }

    /// Stores dead letters the topic could not take (see [`commit_parking`](Self::commit_parking)).
    /// Text columns cannot hold NUL: it becomes U+FFFD in header names and the detail.
    async fn park(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &PartitionBatch,
        parked: &[Parked],
    ) -> Result<()> {
        let text = |s: &str| s.replace('\0', "\u{FFFD}");
        for p in parked {
            let l = &p.letter;
            let names: Vec<String> = l.headers.iter().map(|(k, _)| text(k)).collect();
            let values: Vec<&[u8]> = l.headers.iter().map(|(_, v)| v.as_slice()).collect();
            sqlx::query(
                "INSERT INTO sluice_dead_letters (consumer_group, source_topic, source_partition,
                        source_offset, reason, detail, publish_error, record_key, record_value,
                        header_names, header_values, record_timestamp_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&self.group)
            .bind(&batch.topic)
            .bind(batch.partition)
            .bind(l.offset)
            .bind(l.reason)
            .bind(text(&l.detail))
            .bind(text(&p.cause))
            .bind(l.key.as_deref())
            .bind(l.value.as_slice())
            .bind(names)
            .bind(values)
            .bind(l.timestamp_ms)
            .persistent(self.persistent())
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
        }
        Ok(())
    }

    async fn swap_offset(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &PartitionBatch,
        end: i64,
    ) -> Result<bool> {
        let result = match batch.expected_offset {
            // A batch that saw no record past a replay fence leaves the dedup watermark as stored; the
            // fence is cleared once the offset reaches it.
            Some(expected) => {
                sqlx::query(
                    "UPDATE sluice_offsets SET next_offset = $4, watermark_ms = coalesce($6, watermark_ms),
                            replay_until = CASE WHEN replay_until > $4 THEN replay_until END,
                            updated_at = now()
                     WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $5",
                )
                .bind(&self.group)
                .bind(&batch.topic)
                .bind(batch.partition)
                .bind(end)
                .bind(expected)
                .bind(batch.watermark_ms)
                .persistent(self.persistent())
                .execute(&mut **tx)
                .await
            }
            None => {
                sqlx::query(
                    "INSERT INTO sluice_offsets (consumer_group, topic, partition, next_offset, watermark_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&self.group)
                .bind(&batch.topic)
                .bind(batch.partition)
                .bind(end)
                .bind(batch.watermark_ms)
                .persistent(self.persistent())
                .execute(&mut **tx)
                .await
            }
        };
        Ok(result.map_err(classify)?.rows_affected() == 1)
    }
}

/// Classifies sqlx errors: I/O and pool trouble is transient; a database error goes by its SQLSTATE
/// ([`postgres_class`]: content refused, transient, or permanent) and keeps it; anything else is
/// permanent.
pub(crate) fn classify(e: sqlx::Error) -> SinkError {
    let (class, code) = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => (ErrorClass::Transient, None),
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => (postgres_class(&code), Some(code.into_owned())),
            None => (ErrorClass::Permanent, None),
        },
        _ => (ErrorClass::Permanent, None),
    };
    SinkError::new(SINK, class, code, redact(&e.to_string()))
}
