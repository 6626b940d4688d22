//! The PostgreSQL sink: the exactly-once commit point. For each partition batch, one transaction
//! (1) moves the partition's stored offset from the batch's `expected_offset` to its `end_offset` with a
//! compare-and-swap, and (2) merges the batch's partial aggregates into `click_daily`, `rank_daily` and
//! `crawl_hourly` with set-based `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` statements (one
//! per table, not one per row). If the swap finds another offset, another consumer has moved the
//! partition (rebalance, zombie): the transaction is rolled back and the caller is told where it stands.
//! The aggregate tables are partitioned by month; [`PostgresSink::ensure_partitions`] keeps partitions
//! ready ahead of time (`monthly`). The same swap clears a partition's replay fence once the offset
//! reaches it; the operator's rewind that sets the fence is in `rewind`. Schema, roles and row-level
//! security: `docs/postgres.md`.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::Arguments;
use sqlx::{Connection, PgPool, Postgres, Transaction};

use crate::dead_letter::Parked;
use crate::error::{postgres_class, redact, ErrorClass, Result, SinkError};
use sluice_aggregator::dedup::EventKey;
use sluice_aggregator::PartitionBatch;

mod dedup;
mod monthly;
mod rewind;

pub use monthly::{PartitionMaintenance, PARTITION_MONTHS_AHEAD};
pub use rewind::{Rewind, RewindError};

const SINK: &str = "postgres";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
        let mut options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            SinkError::permanent(
                SINK,
                format!("invalid postgres URL: {}", redact(&e.to_string())),
            )
        })?;
        if let Some(password) = password {
            options = options.password(password);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(PostgresSink {
            pool,
            group: group.to_owned(),
            aggregates: true,
        })
    }

    /// Keeps offsets (and the dedup window) only, without merging aggregates.
    pub fn without_aggregates(mut self) -> Self {
        self.aggregates = false;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations (idempotent; sqlx records what ran in `_sqlx_migrations`).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            other => SinkError::permanent(SINK, other.to_string()),
        })
    }

    /// Versions of the embedded migrations the database has not applied, for a process that does not
    /// migrate (`migrate_on_start = false`, e.g. logged in as a member of `sluice_writer`): it only reads
    /// sqlx's `_sqlx_migrations`. Empty when the schema is current (or newer: expand-then-contract keeps
    /// an older binary working against a newer schema).
    pub async fn missing_migrations(&self) -> Result<Vec<i64>> {
        let applied: Vec<(i64,)> =
            match sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => rows,
                // Never migrated: the table does not exist yet.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                    Vec::new()
                }
                Err(e) => return Err(classify(e)),
            };
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

    /// Stored offsets of the given partitions of one topic (absent: never committed).
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
        .fetch_all(&self.pool)
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
        dedup::load(&self.pool, &self.group, topic, partition, watermark_ms).await
    }

    /// Dead letters parked in `sluice_dead_letters` (the dead-letter topic could not take them) for this
    /// consumer group, counted by (reason, source topic).
    pub async fn parked_dead_letters(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query_as(
            "SELECT reason, source_topic, count(*) FROM sluice_dead_letters
             WHERE consumer_group = $1 GROUP BY reason, source_topic ORDER BY reason, source_topic",
        )
        .bind(&self.group)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
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
        dedup::persist(&mut tx, &self.group, batch, end).await?;
        if !parked.is_empty() {
            self.park(&mut tx, batch, parked).await?;
        }
        if self.aggregates {
            self.upsert_aggregates(&mut tx, batch).await?;
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

    /// Merges the batch's aggregates (one set-based upsert per table) inside `tx`.
    async fn upsert_aggregates(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &PartitionBatch,
    ) -> Result<()> {
        type Arguments = fn(&PartitionBatch) -> Result<PgArguments>;
        let upserts: [(&'static str, usize, &'static str, Arguments); 3] = [
            (
                "click_daily",
                batch.clicks.len(),
                CLICK_DAILY_UPSERT,
                click_daily_arguments,
            ),
            (
                "rank_daily",
                batch.ranks.len(),
                RANK_DAILY_UPSERT,
                rank_daily_arguments,
            ),
            (
                "crawl_hourly",
                batch.crawls.len(),
                CRAWL_HOURLY_UPSERT,
                crawl_hourly_arguments,
            ),
        ];
        for (table, rows, sql, arguments) in upserts {
            if rows > 0 {
                upsert(tx, table, rows, sql, arguments(batch)?).await?;
            }
        }
        Ok(())
    }

    /// Runs the upserts of `batch`'s aggregates in a transaction that always rolls back: whether
    /// PostgreSQL takes these rows, with nothing written. The flusher probes subsets of a refused
    /// batch's events with it to find the ones PostgreSQL refuses.
    pub async fn probe_aggregates(&self, batch: &PartitionBatch) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let result = self.upsert_aggregates(&mut tx, batch).await;
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
                .execute(&mut **tx)
                .await
            }
        };
        Ok(result.map_err(classify)?.rows_affected() == 1)
    }
}

/// The batch's `click_daily` rows as the bind parameters of [`CLICK_DAILY_UPSERT`]: the `unnest`
/// column arrays, sorted by key (concurrent transactions then lock rows in one order, which avoids
/// deadlocks), encoded in PostgreSQL's binary format — everything the statement sends but its text.
/// Public for the encoder benchmark (`benches/aggregate.rs`).
pub fn click_daily_arguments(batch: &PartitionBatch) -> Result<PgArguments> {
    let mut rows: Vec<_> = batch.clicks.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let n = rows.len();
    let (mut tenant, mut code) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut day, mut clicks) = (Vec::<NaiveDate>::with_capacity(n), Vec::with_capacity(n));
    for (k, v) in rows {
        tenant.push(k.tenant_id.as_str());
        code.push(k.short_code.as_str());
        day.push(k.day);
        clicks.push(*v);
    }
    let mut args = PgArguments::default();
    bind(&mut args, tenant)?;
    bind(&mut args, code)?;
    bind(&mut args, day)?;
    bind(&mut args, clicks)?;
    Ok(args)
}

pub const CLICK_DAILY_UPSERT: &str = "INSERT INTO click_daily (tenant_id, short_code, day, clicks)
         SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
         ON CONFLICT (tenant_id, short_code, day) DO UPDATE SET clicks = click_daily.clicks + EXCLUDED.clicks";

/// The batch's `rank_daily` rows as the bind parameters of [`RANK_DAILY_UPSERT`] (see
/// [`click_daily_arguments`]).
pub fn rank_daily_arguments(batch: &PartitionBatch) -> Result<PgArguments> {
    let mut rows: Vec<_> = batch.ranks.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let n = rows.len();
    let mut cols: [Vec<&str>; 6] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut day = Vec::<NaiveDate>::with_capacity(n);
    let (mut last, mut last_at, mut last_id) = (
        Vec::<Option<i16>>::with_capacity(n),
        Vec::<DateTime<Utc>>::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut best, mut worst, mut checks) = (
        Vec::<Option<i16>>::with_capacity(n),
        Vec::<Option<i16>>::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (k, v) in rows {
        for (col, value) in cols.iter_mut().zip([
            &k.tenant_id,
            &k.campaign_id,
            &k.keyword,
            &k.geo,
            &k.engine,
            &k.device,
        ]) {
            col.push(value.as_str());
        }
        day.push(k.day);
        last.push(v.last_position);
        last_at.push(v.last_occurred_at);
        last_id.push(v.last_event_id.as_str());
        best.push(v.best_position);
        worst.push(v.worst_position);
        checks.push(v.checks);
    }
    let mut args = PgArguments::default();
    for col in cols {
        bind(&mut args, col)?;
    }
    bind(&mut args, day)?;
    bind(&mut args, last)?;
    bind(&mut args, last_at)?;
    bind(&mut args, last_id)?;
    bind(&mut args, best)?;
    bind(&mut args, worst)?;
    bind(&mut args, checks)?;
    Ok(args)
}

// PostgreSQL's LEAST/GREATEST ignore NULLs: exactly "min/max of non-null positions".
pub const RANK_DAILY_UPSERT: &str = r#"INSERT INTO rank_daily AS r (tenant_id, campaign_id, keyword, geo, engine, device, day,
                last_position, last_occurred_at, last_event_id, best_position, worst_position, checks)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::date[], $8::smallint[], $9::timestamptz[], $10::text[], $11::smallint[], $12::smallint[],
                $13::bigint[])
         ON CONFLICT (tenant_id, campaign_id, keyword, geo, engine, device, day) DO UPDATE SET
            checks = r.checks + EXCLUDED.checks,
            best_position = LEAST(r.best_position, EXCLUDED.best_position),
            worst_position = GREATEST(r.worst_position, EXCLUDED.worst_position),
            last_position = CASE WHEN (EXCLUDED.last_occurred_at, EXCLUDED.last_event_id COLLATE "C")
                                      > (r.last_occurred_at, r.last_event_id)
                                 THEN EXCLUDED.last_position ELSE r.last_position END,
            last_event_id = CASE WHEN (EXCLUDED.last_occurred_at, EXCLUDED.last_event_id COLLATE "C")
                                      > (r.last_occurred_at, r.last_event_id)
                                 THEN EXCLUDED.last_event_id ELSE r.last_event_id END,
            last_occurred_at = GREATEST(r.last_occurred_at, EXCLUDED.last_occurred_at)"#;

/// The batch's `crawl_hourly` rows as the bind parameters of [`CRAWL_HOURLY_UPSERT`] (see
/// [`click_daily_arguments`]).
pub fn crawl_hourly_arguments(batch: &PartitionBatch) -> Result<PgArguments> {
    let mut rows: Vec<_> = batch.crawls.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let n = rows.len();
    let (mut tenant, mut campaign, mut domain) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut hour = Vec::<DateTime<Utc>>::with_capacity(n);
    let mut nums: [Vec<i64>; 8] = std::array::from_fn(|_| Vec::with_capacity(n));
    for (k, v) in rows {
        tenant.push(k.tenant_id.as_str());
        campaign.push(k.campaign_id.as_str());
        domain.push(k.domain.as_str());
        hour.push(k.hour);
        for (col, value) in nums.iter_mut().zip(v.columns()) {
            col.push(value);
        }
    }
    let mut args = PgArguments::default();
    bind(&mut args, tenant)?;
    bind(&mut args, campaign)?;
    bind(&mut args, domain)?;
    bind(&mut args, hour)?;
    for col in nums {
        bind(&mut args, col)?;
    }
    Ok(args)
}

pub const CRAWL_HOURLY_UPSERT: &str = "INSERT INTO crawl_hourly AS c (tenant_id, campaign_id, domain, hour, pages, status_2xx, status_3xx,
                status_4xx, status_5xx, fetch_ms_sum, fetch_ms_max, bytes_sum)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[],
                $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[])
         ON CONFLICT (tenant_id, campaign_id, domain, hour) DO UPDATE SET
            pages = c.pages + EXCLUDED.pages,
            status_2xx = c.status_2xx + EXCLUDED.status_2xx,
            status_3xx = c.status_3xx + EXCLUDED.status_3xx,
            status_4xx = c.status_4xx + EXCLUDED.status_4xx,
            status_5xx = c.status_5xx + EXCLUDED.status_5xx,
            fetch_ms_sum = c.fetch_ms_sum + EXCLUDED.fetch_ms_sum,
            fetch_ms_max = GREATEST(c.fetch_ms_max, EXCLUDED.fetch_ms_max),
            bytes_sum = c.bytes_sum + EXCLUDED.bytes_sum";

/// Encodes one bind parameter; an encoding failure is a bug (permanent).
fn bind<'t, T>(args: &mut PgArguments, value: T) -> Result<()>
where
    T: sqlx::Encode<'t, Postgres> + sqlx::Type<Postgres>,
{
    args.add(value)
        .map_err(|e| SinkError::permanent(SINK, format!("encoding a bind parameter: {e}")))
}

/// Runs one upsert with its encoded parameters and counts its rows.
async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    table: &'static str,
    rows: usize,
    sql: &'static str,
    args: PgArguments,
) -> Result<()> {
    sqlx::query_with(sql, args)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    metrics::counter!(crate::metrics::SINK_ROWS, "sink" => SINK, "table" => table)
        .increment(rows as u64);
    Ok(())
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
