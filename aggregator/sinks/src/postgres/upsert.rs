//! The aggregate upserts: a batch's rows as the bind parameters of one set-based
//! `INSERT … SELECT unnest($1), unnest($2), … ON CONFLICT DO UPDATE` per table (column arrays sorted by
//! key, in PostgreSQL's binary encoding), and the statements that merge them into `click_daily`,
//! `rank_daily` and `crawl_hourly` with the model's rules.
//!
//! The arrays are unnested in the select list, not with `FROM unnest(a, b, …)`: the `FROM` form is a
//! function scan, which first copies every array's elements into a tuple store of its own and then reads
//! them back; in the select list the arrays are walked in step, one row at a time (a `ProjectSet`). All
//! arrays of a statement have the batch's row count, so both forms give the same rows in the same order.
//!
//! Rows whose keys this process has not written yet ([`KnownKeys`]) go first, as a plain `INSERT` of the
//! same form inside a savepoint; if one of them exists after all, the savepoint is rolled back and the
//! table's rows are merged by the one `ON CONFLICT` statement as before ([`merge`]).

use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgArguments;
use sqlx::{Acquire, Arguments};
use sqlx::{Postgres, Transaction};

use super::known::{KnownKeys, Seen, Table};
use super::{classify, SINK};
use crate::error::{Result, SinkError};
use sluice_aggregator::model::{
    ClickDailyKey, CrawlHourly, CrawlHourlyKey, RankDaily, RankDailyKey,
};
use sluice_aggregator::PartitionBatch;

/// A batch's rows of one table, as (key, partial aggregate).
type Rows<'b, K, V> = [(&'b K, &'b V)];

/// `rows` sorted by key: concurrent transactions then lock rows in one order, which avoids deadlocks.
fn sorted<'b, K: Ord, V>(rows: impl Iterator<Item = (&'b K, &'b V)>) -> Vec<(&'b K, &'b V)> {
    let mut rows: Vec<_> = rows.collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    rows
}

/// The batch's `click_daily` rows as the bind parameters of [`CLICK_DAILY_UPSERT`]: the `unnest`
/// column arrays, sorted by key (concurrent transactions then lock rows in one order, which avoids
/// deadlocks), encoded in PostgreSQL's binary format — everything the statement sends but its text.
/// Public for the encoder benchmark (`benches/encode.rs`).
pub fn click_daily_arguments(batch: &PartitionBatch) -> Result<PgArguments> {
    click_daily(batch).arguments()
}

fn click_daily_rows(rows: &Rows<'_, ClickDailyKey, i64>) -> Result<PgArguments> {
    let n = rows.len();
    let (mut tenant, mut code) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut day, mut clicks) = (Vec::<NaiveDate>::with_capacity(n), Vec::with_capacity(n));
    for &(k, v) in rows {
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

macro_rules! click_daily_insert {
    () => {
        "INSERT INTO click_daily (tenant_id, short_code, day, clicks)
         SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::date[]), unnest($4::bigint[])"
    };
}

/// New `click_daily` rows ([`click_daily_arguments`]'s parameters).
pub const CLICK_DAILY_INSERT: &str = click_daily_insert!();

pub const CLICK_DAILY_UPSERT: &str = concat!(
    click_daily_insert!(),
    "
         ON CONFLICT (tenant_id, short_code, day) DO UPDATE SET clicks = click_daily.clicks + EXCLUDED.clicks"
);

/// The batch's `rank_daily` rows as the bind parameters of [`RANK_DAILY_UPSERT`] (see
/// [`click_daily_arguments`]).
pub fn rank_daily_arguments(batch: &PartitionBatch) -> Result<PgArguments> {
    rank_daily(batch).arguments()
}

fn rank_daily_rows(rows: &Rows<'_, RankDailyKey, RankDaily>) -> Result<PgArguments> {
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
    for &(k, v) in rows {
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
macro_rules! rank_daily_insert {
    () => {
        "INSERT INTO rank_daily AS r (tenant_id, campaign_id, keyword, geo, engine, device, day,
                last_position, last_occurred_at, last_event_id, best_position, worst_position, checks)
         SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]),
                unnest($5::text[]), unnest($6::text[]), unnest($7::date[]), unnest($8::smallint[]),
                unnest($9::timestamptz[]), unnest($10::text[]), unnest($11::smallint[]),
                unnest($12::smallint[]), unnest($13::bigint[])"
    };
}

/// New `rank_daily` rows ([`rank_daily_arguments`]'s parameters).
pub const RANK_DAILY_INSERT: &str = rank_daily_insert!();

pub const RANK_DAILY_UPSERT: &str = concat!(
    rank_daily_insert!(),
    r#"
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
            last_occurred_at = GREATEST(r.last_occurred_at, EXCLUDED.last_occurred_at)"#
);

/// The batch's `crawl_hourly` rows as the bind parameters of [`CRAWL_HOURLY_UPSERT`] (see
/// [`click_daily_arguments`]).
pub fn crawl_hourly_arguments(batch: &PartitionBatch) -> Result<PgArguments> {
    crawl_hourly(batch).arguments()
}

fn crawl_hourly_rows(rows: &Rows<'_, CrawlHourlyKey, CrawlHourly>) -> Result<PgArguments> {
    let n = rows.len();
    let (mut tenant, mut campaign, mut domain) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut hour = Vec::<DateTime<Utc>>::with_capacity(n);
    let mut nums: [Vec<i64>; 8] = std::array::from_fn(|_| Vec::with_capacity(n));
    for &(k, v) in rows {
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

macro_rules! crawl_hourly_insert {
    () => {
        "INSERT INTO crawl_hourly AS c (tenant_id, campaign_id, domain, hour, pages, status_2xx, status_3xx,
                status_4xx, status_5xx, fetch_ms_sum, fetch_ms_max, bytes_sum)
         SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::timestamptz[]),
                unnest($5::bigint[]), unnest($6::bigint[]), unnest($7::bigint[]), unnest($8::bigint[]),
                unnest($9::bigint[]), unnest($10::bigint[]), unnest($11::bigint[]), unnest($12::bigint[])"
    };
}

/// New `crawl_hourly` rows ([`crawl_hourly_arguments`]'s parameters).
pub const CRAWL_HOURLY_INSERT: &str = crawl_hourly_insert!();

pub const CRAWL_HOURLY_UPSERT: &str = concat!(
    crawl_hourly_insert!(),
    "
         ON CONFLICT (tenant_id, campaign_id, domain, hour) DO UPDATE SET
            pages = c.pages + EXCLUDED.pages,
            status_2xx = c.status_2xx + EXCLUDED.status_2xx,
            status_3xx = c.status_3xx + EXCLUDED.status_3xx,
            status_4xx = c.status_4xx + EXCLUDED.status_4xx,
            status_5xx = c.status_5xx + EXCLUDED.status_5xx,
            fetch_ms_sum = c.fetch_ms_sum + EXCLUDED.fetch_ms_sum,
            fetch_ms_max = GREATEST(c.fetch_ms_max, EXCLUDED.fetch_ms_max),
            bytes_sum = c.bytes_sum + EXCLUDED.bytes_sum"
);

/// Encodes one bind parameter; an encoding failure is a bug (permanent).
fn bind<'t, T>(args: &mut PgArguments, value: T) -> Result<()>
where
    T: sqlx::Encode<'t, Postgres> + sqlx::Type<Postgres>,
{
    args.add(value)
        .map_err(|e| SinkError::permanent(SINK, format!("encoding a bind parameter: {e}")))
}

/// One table's rows of a batch and how to write them.
pub(super) struct Aggregate<'b, K, V> {
    table: Table,
    insert: &'static str,
    upsert: &'static str,
    /// Sorted by key.
    rows: Vec<(&'b K, &'b V)>,
    arguments: fn(&Rows<'_, K, V>) -> Result<PgArguments>,
}

impl<K, V> Aggregate<'_, K, V> {
    /// All the rows as the bind parameters of `insert` or `upsert`.
    fn arguments(&self) -> Result<PgArguments> {
        (self.arguments)(&self.rows)
    }
}

pub(super) fn click_daily(batch: &PartitionBatch) -> Aggregate<'_, ClickDailyKey, i64> {
    Aggregate {
        table: Table::ClickDaily,
        insert: CLICK_DAILY_INSERT,
        upsert: CLICK_DAILY_UPSERT,
        rows: sorted(batch.clicks.iter()),
        arguments: click_daily_rows,
    }
}

pub(super) fn rank_daily(batch: &PartitionBatch) -> Aggregate<'_, RankDailyKey, RankDaily> {
    Aggregate {
        table: Table::RankDaily,
        insert: RANK_DAILY_INSERT,
        upsert: RANK_DAILY_UPSERT,
        rows: sorted(batch.ranks.iter()),
        arguments: rank_daily_rows,
    }
}

pub(super) fn crawl_hourly(batch: &PartitionBatch) -> Aggregate<'_, CrawlHourlyKey, CrawlHourly> {
    Aggregate {
        table: Table::CrawlHourly,
        insert: CRAWL_HOURLY_INSERT,
        upsert: CRAWL_HOURLY_UPSERT,
        rows: sorted(batch.crawls.iter()),
        arguments: crawl_hourly_rows,
    }
}

/// Merges one table's rows inside `tx`. Without `known`, one `ON CONFLICT` statement. With it, the
/// rows whose keys it does not know go first as a plain `INSERT` in a savepoint, then the others by
/// `ON CONFLICT`; a unique violation in the plain insert rolls the savepoint back and merges all the
/// rows by `ON CONFLICT` (and pauses plain inserts for the table: [`KnownKeys::fell_back`]). Every key
/// is then remembered.
pub(super) async fn merge<K: Hash, V>(
    tx: &mut Transaction<'_, Postgres>,
    persistent: bool,
    aggregate: Aggregate<'_, K, V>,
    known: Option<&Mutex<KnownKeys>>,
) -> Result<()> {
    let Aggregate {
        table,
        insert,
        upsert,
        rows,
        arguments,
    } = aggregate;
    let name = table.name();
    if rows.is_empty() {
        return Ok(());
    }
    let Some(known) = known else {
        return execute(tx, persistent, name, upsert, arguments, &rows).await;
    };
    let lock = || {
        known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    // Hashed once per row, outside the lock.
    let fingerprints: Vec<u64> = rows
        .iter()
        .map(|(key, _)| KnownKeys::fingerprint(table, key))
        .collect();
    let (seen, plain): (Vec<Seen>, bool) = {
        let mut known = lock();
        let seen = fingerprints.iter().map(|f| known.seen(*f)).collect();
        (seen, known.may_insert(table))
    };
    let is_new = |seen: &Seen| plain && *seen == Seen::Never;
    let pick = |new: bool| -> Vec<_> {
        rows.iter()
            .zip(&seen)
            .filter(|(_, seen)| is_new(seen) == new)
            .map(|(row, _)| *row)
            .collect()
    };
    // Without new rows, every row goes by ON CONFLICT (below) as it is.
    let mut upserted = None;
    if seen.iter().any(is_new) {
        let new = pick(true);
        let mut savepoint = Acquire::begin(&mut **tx).await.map_err(classify)?;
        let inserted = sqlx::query_with(insert, arguments(&new)?)
            .persistent(persistent)
            .execute(&mut *savepoint)
            .await;
        match inserted {
            Ok(_) => {
                savepoint.commit().await.map_err(classify)?;
                lock().inserted(table);
                count(name, new.len());
                upserted = Some(pick(false));
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => {
                savepoint.rollback().await.map_err(classify)?;
                lock().fell_back(table);
                metrics::counter!(crate::metrics::SINK_INSERT_FALLBACKS, "sink" => SINK, "table" => name)
                    .increment(1);
            }
            Err(e) => return Err(classify(e)),
        }
    }
    let upserted = upserted.as_deref().unwrap_or(&rows);
    if !upserted.is_empty() {
        execute(tx, persistent, name, upsert, arguments, upserted).await?;
    }
    let mut known = lock();
    for (fingerprint, seen) in fingerprints.into_iter().zip(seen) {
        if seen != Seen::Current {
            known.remember(fingerprint);
        }
    }
    Ok(())
}

/// SQLSTATE `unique_violation`: a plain insert met a key that exists.
const UNIQUE_VIOLATION: &str = "23505";

/// Runs `sql` with `rows` as its parameters and counts the rows.
async fn execute<K, V>(
    tx: &mut Transaction<'_, Postgres>,
    persistent: bool,
    name: &'static str,
    sql: &'static str,
    arguments: fn(&Rows<'_, K, V>) -> Result<PgArguments>,
    rows: &Rows<'_, K, V>,
) -> Result<()> {
    sqlx::query_with(sql, arguments(rows)?)
        .persistent(persistent)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    count(name, rows.len());
    Ok(())
}

fn count(table: &'static str, rows: usize) {
    metrics::counter!(crate::metrics::SINK_ROWS, "sink" => SINK, "table" => table)
        .increment(rows as u64);
}
