//! The benchmark's dataset: a database of its own with the real migrations and 12M+ aggregate rows made
//! by `generate_series` in tenant chunks (retried across dropped connections), built once and reused
//! while its spec (generator version, scale) matches.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

/// Bump when the generator changes: a stored dataset with another spec is rebuilt.
const GENERATOR_VERSION: u32 = 1;
pub(crate) const TENANTS: i64 = 2000;
/// Per-tenant sizes at scale 1: tenant k (0-based) gets max(1, floor(N / (k+1)^0.9)).
const RANK_SERIES_TOP: f64 = 3200.0;
const LINKS_TOP: f64 = 4000.0;
const CRAWL_SERIES_TOP: f64 = 80.0;
const RANK_DAYS: i64 = 180;
const CLICK_DAYS: i64 = 90;
const CRAWL_HOURS: i64 = 45 * 24;

pub(crate) async fn ensure_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(admin)
        .await
        .context("connecting (is the stack up? run `make up`)")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) struct Dataset {
    pub(crate) anchor: NaiveDate,
    pub(crate) built_at: DateTime<Utc>,
    pub(crate) build_seconds: f64,
    pub(crate) rank_rows: i64,
    pub(crate) click_rows: i64,
    pub(crate) crawl_rows: i64,
}

/// The dataset matching `scale`, built first if absent (or if `rebuild`).
pub(crate) async fn ensure_dataset(
    conn: &mut PgConnection,
    options: &PgConnectOptions,
    scale: f64,
    rebuild: bool,
) -> anyhow::Result<Dataset> {
    let spec = format!("v{GENERATOR_VERSION} tenants={TENANTS} scale={scale}");
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS bench_meta (
             spec text PRIMARY KEY, anchor date NOT NULL, built_at timestamptz NOT NULL,
             build_seconds double precision NOT NULL,
             rank_rows bigint NOT NULL, click_rows bigint NOT NULL, crawl_rows bigint NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    if !rebuild {
        let row = sqlx::query(
            "SELECT anchor, built_at, build_seconds, rank_rows, click_rows, crawl_rows
             FROM bench_meta WHERE spec = $1",
        )
        .bind(&spec)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            println!("dataset: reusing ({spec}); --rebuild to build it again");
            return Ok(Dataset {
                anchor: row.try_get(0)?,
                built_at: row.try_get(1)?,
                build_seconds: row.try_get(2)?,
                rank_rows: row.try_get(3)?,
                click_rows: row.try_get(4)?,
                crawl_rows: row.try_get(5)?,
            });
        }
    }
    build(conn, options, &spec, scale).await
}

/// Session settings for bulk generation.
const BUILD_SESSION: &str = "SET synchronous_commit = off; SET maintenance_work_mem = '512MB'; \
                             SET TimeZone = 'UTC';";

/// The server went away (restart, admin shutdown, network): worth reconnecting and retrying.
fn is_disconnect(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

/// Replaces `conn` with a new session (waiting up to two minutes for the server).
async fn reconnect(conn: &mut PgConnection, options: &PgConnectOptions) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match PgConnection::connect_with(options).await {
            Ok(mut fresh) => {
                sqlx::raw_sql(BUILD_SESSION).execute(&mut fresh).await?;
                *conn = fresh;
                return Ok(());
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("dataset: reconnecting: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e).context("reconnecting to the benchmark database"),
        }
    }
}

/// Runs one generation chunk (its own transaction), retrying it after a disconnect: the build survives
/// a database restart by other work on the same server.
async fn exec_chunk(
    conn: &mut PgConnection,
    options: &PgConnectOptions,
    sql: &str,
    (lo, hi): (i64, i64),
    anchor: NaiveDate,
) -> anyhow::Result<u64> {
    for _ in 0..30 {
        let result = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(lo as i32)
            .bind(hi as i32)
            .bind(anchor)
            .execute(&mut *conn)
            .await;
        match result {
            Ok(done) => return Ok(done.rows_affected()),
            Err(e) if is_disconnect(&e) => {
                eprintln!("dataset: tenants {lo}..{hi}: {e}; retrying");
                reconnect(conn, options).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("tenants {lo}..{hi}: too many disconnects")
}

/// Runs a parameterless statement, retrying it after a disconnect.
async fn exec_retry(
    conn: &mut PgConnection,
    options: &PgConnectOptions,
    sql: &'static str,
) -> anyhow::Result<()> {
    for _ in 0..30 {
        match sqlx::raw_sql(sql).execute(&mut *conn).await {
            Ok(_) => return Ok(()),
            Err(e) if is_disconnect(&e) => {
                eprintln!("dataset: {e}; retrying");
                reconnect(conn, options).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("too many disconnects running {sql}")
}

/// Tenant ranges of roughly equal volume (sizes fall off as 1/k^0.9: powers of two balance them).
fn tenant_chunks() -> Vec<(i64, i64)> {
    let mut chunks = Vec::new();
    let mut lo = 0;
    while lo < TENANTS {
        let hi = (lo * 2).max(lo + 1).min(TENANTS);
        chunks.push((lo, hi));
        lo = hi;
    }
    chunks
}

async fn build(
    conn: &mut PgConnection,
    options: &PgConnectOptions,
    spec: &str,
    scale: f64,
) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    println!("dataset: building ({spec}); this takes minutes");
    sqlx::raw_sql("DELETE FROM bench_meta; TRUNCATE click_daily, rank_daily, crawl_hourly;")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(BUILD_SESSION).execute(&mut *conn).await?;
    let anchor: NaiveDate = sqlx::query_scalar("SELECT (now() AT TIME ZONE 'UTC')::date")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("SELECT * FROM sluice_ensure_partitions(3)")
        .execute(&mut *conn)
        .await?;
    let size = |top: f64| {
        format!(
            "greatest(1, floor({} / power(t + 1, 0.9)))::int",
            top * scale
        )
    };
    let tenant = "'tenant-' || lpad(t::text, 4, '0')";
    let rank = format!(
        "INSERT INTO rank_daily (tenant_id, campaign_id, keyword, geo, engine, device, day, last_position,
                                 last_occurred_at, last_event_id, best_position, worst_position, checks)
         SELECT {tenant}, 'campaign-' || lpad((i / 50)::text, 3, '0'), 'keyword ' || (i / 2),
                (ARRAY['us', 'gb', 'de', 'fr'])[(i / 50) % 4 + 1], 'google',
                CASE WHEN i % 2 = 0 THEN 'desktop' ELSE 'mobile' END,
                $3::date - d,
                CASE WHEN r < 0.05 THEN NULL ELSE x END::smallint,
                ($3::date - d + time '06:00')::timestamp AT TIME ZONE 'UTC' + (i % 3600) * interval '1 second',
                'ev-' || t || '-' || i || '-' || d,
                greatest(1, x - 3)::smallint, least(100, x + 4)::smallint, 1 + (i + d) % 3
         FROM (SELECT t, i, d, 1 + floor(random() * 100)::int AS x, random() AS r
               FROM generate_series($1::int, $2::int - 1) t
               CROSS JOIN LATERAL generate_series(0, {} - 1) i
               CROSS JOIN generate_series(0, {RANK_DAYS} - 1) d) g",
        size(RANK_SERIES_TOP)
    );
    let click = format!(
        "INSERT INTO click_daily (tenant_id, short_code, day, clicks)
         SELECT {tenant}, 'l' || t || 'x' || i, $3::date - d, 1 + floor(random() * random() * 300)::int
         FROM generate_series($1::int, $2::int - 1) t
         CROSS JOIN LATERAL generate_series(0, {} - 1) i
         CROSS JOIN generate_series(0, {CLICK_DAYS} - 1) d
         WHERE random() < 0.67",
        size(LINKS_TOP)
    );
    // Series j: campaign j % 3, domain j / 2 — each domain is crawled by two campaigns.
    let crawl = format!(
        "INSERT INTO crawl_hourly (tenant_id, campaign_id, domain, hour, pages, status_2xx, status_3xx,
                                   status_4xx, status_5xx, fetch_ms_sum, fetch_ms_max, bytes_sum)
         SELECT {tenant}, 'campaign-' || lpad((j % 3)::text, 3, '0'),
                'site-' || (j / 2) || '.t' || t || '.example',
                ($3::date + 1)::timestamp AT TIME ZONE 'UTC' - h * interval '1 hour',
                p, p - s3 - s4 - s5, s3, s4, s5, p * f, f * 3, p * 48000
         FROM (SELECT t, j, h, p, floor(p * random() * 0.2)::int AS s3, floor(p * random() * 0.1)::int AS s4,
                      floor(p * random() * random() * 0.1)::int AS s5, 80 + floor(random() * 400)::int AS f
               FROM (SELECT t, j, h, 1 + floor(random() * 60)::int AS p
                     FROM generate_series($1::int, $2::int - 1) t
                     CROSS JOIN LATERAL generate_series(0, {} - 1) j
                     CROSS JOIN generate_series(1, {CRAWL_HOURS}) h) a) g",
        size(CRAWL_SERIES_TOP)
    );
    for (table, sql) in [
        ("rank_daily", &rank),
        ("click_daily", &click),
        ("crawl_hourly", &crawl),
    ] {
        let table_started = Instant::now();
        let mut rows = 0;
        for chunk in tenant_chunks() {
            rows += exec_chunk(conn, options, sql, chunk, anchor)
                .await
                .with_context(|| format!("generating {table}"))?;
        }
        println!(
            "dataset: {table}: {rows} rows in {:.0} s",
            table_started.elapsed().as_secs_f64()
        );
    }
    let vacuum_started = Instant::now();
    exec_retry(
        conn,
        options,
        "VACUUM (ANALYZE) click_daily, rank_daily, crawl_hourly",
    )
    .await?;
    println!(
        "dataset: VACUUM ANALYZE in {:.0} s",
        vacuum_started.elapsed().as_secs_f64()
    );
    let default_rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM click_daily_default) + (SELECT count(*) FROM rank_daily_default)
                + (SELECT count(*) FROM crawl_hourly_default)",
    )
    .fetch_one(&mut *conn)
    .await?;
    ensure!(
        default_rows == 0,
        "{default_rows} rows fell in DEFAULT partitions"
    );
    let mut counts = [0i64; 3];
    for (n, table) in counts
        .iter_mut()
        .zip(["rank_daily", "click_daily", "crawl_hourly"])
    {
        *n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *conn)
            .await?;
    }
    let dataset = Dataset {
        anchor,
        built_at: Utc::now(),
        build_seconds: started.elapsed().as_secs_f64(),
        rank_rows: counts[0],
        click_rows: counts[1],
        crawl_rows: counts[2],
    };
    sqlx::query("INSERT INTO bench_meta VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(spec)
        .bind(dataset.anchor)
        .bind(dataset.built_at)
        .bind(dataset.build_seconds)
        .bind(dataset.rank_rows)
        .bind(dataset.click_rows)
        .bind(dataset.crawl_rows)
        .execute(&mut *conn)
        .await?;
    Ok(dataset)
}
