//! `pg-read-bench`: latency of the product API's PostgreSQL reads at production-like volume, through
//! the read-only role with row-level security on.
//!
//! It builds (once; reused while its spec matches) a dedicated database with the real migrations and
//! 12M+ aggregate rows made by `generate_series`: 2000 tenants whose sizes fall off as `1/rank^0.9`
//! (the largest ~1000× the smallest) — rank series checked daily for 180 days, short links with clicks
//! on about two days in three over 90 days, and domains crawled hourly for 45 days by two campaigns
//! each. Then, connected as a login that is a member of `sluice_reader`, it times four reads, each
//! request being what a pooled API does: `BEGIN; SELECT set_config('app.current_tenant', $1, true);
//! <query>; COMMIT` — the tenant filter comes from the RLS policy, not from the query text:
//!
//! - rank history: one keyword/geo/engine/device of a campaign over the last 90 days;
//! - campaign day: every keyword of a campaign on one day (a random day in the last 90);
//! - link clicks: a short link's daily clicks over the last 30 days;
//! - crawl health: a domain's hourly status mix and fetch times over the last 48 hours.
//!
//! Entities are sampled uniformly from the data (so large tenants are asked about more often, as in
//! production); every request must return rows, or the run fails (an empty answer would be fast and
//! meaningless). "Now" is the dataset's anchor day, so a reused dataset gives comparable figures.
//! Prints p50/p95/p99/max per query, for the whole request and for the query statement alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::NaiveDate;
use clap::Parser;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions};
use sqlx::{Arguments, Connection, PgConnection};

mod dataset;

use dataset::{ensure_database, ensure_dataset, TENANTS};

const READER_LOGIN: &str = "sluice_bench_reader";

#[derive(Debug, Parser)]
#[command(about = "Read latency of the product API's PostgreSQL queries (RLS on, read-only role)")]
struct Cli {
    /// A role that may create databases and roles (the ingest role of the local stack).
    #[arg(
        long,
        env = "SLUICE_POSTGRES_URL",
        default_value = "postgres://sluice:sluice@127.0.0.1:5432/sluice"
    )]
    url: String,
    /// The benchmark's own database (created if absent).
    #[arg(long, default_value = "sluice_bench_read")]
    database: String,
    /// Multiplies the number of series per tenant (1.0: about 12.4M rows).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Timed requests per query.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Untimed requests per query before timing.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Drop and rebuild the dataset even if it matches.
    #[arg(long)]
    rebuild: bool,
    /// Print EXPLAIN (ANALYZE, BUFFERS) of one request of each query, as the reader.
    #[arg(long)]
    explain: bool,
}

/// One product read: its SQL and how to bind a sampled key.
#[derive(Debug)]
struct Read {
    name: &'static str,
    sql: &'static str,
    /// Owner-side SQL returning (tenant, key text[]) samples; `$1` is the anchor day, `$2` the count.
    sample_sql: &'static str,
}

const READS: [Read; 4] = [
    Read {
        name: "rank history (1 series, 90 d)",
        sql: "SELECT day, last_position, best_position, worst_position, checks FROM rank_daily
              WHERE campaign_id = $1 AND keyword = $2 AND geo = $3 AND engine = $4 AND device = $5
                AND day > $6::date - 90 AND day <= $6::date
              ORDER BY day",
        sample_sql: "SELECT tenant_id, ARRAY[campaign_id, keyword, geo, engine, device, $1::date::text]
                     FROM rank_daily WHERE day = $1 ORDER BY random() LIMIT $2",
    },
    Read {
        name: "campaign keywords (1 day)",
        sql: "SELECT keyword, geo, engine, device, last_position, best_position, checks FROM rank_daily
              WHERE campaign_id = $1 AND day = $2::date
              ORDER BY keyword, geo, engine, device",
        sample_sql: "SELECT tenant_id, ARRAY[campaign_id, ($1::date - (random() * 89)::int)::text]
                     FROM (SELECT DISTINCT tenant_id, campaign_id FROM rank_daily WHERE day = $1) c
                     ORDER BY random() LIMIT $2",
    },
    Read {
        name: "link clicks (30 d)",
        sql: "SELECT day, clicks FROM click_daily
              WHERE short_code = $1 AND day > $2::date - 30 AND day <= $2::date
              ORDER BY day",
        sample_sql: "SELECT tenant_id, ARRAY[short_code, $1::date::text]
                     FROM click_daily WHERE day = $1 ORDER BY random() LIMIT $2",
    },
    Read {
        name: "domain crawl health (48 h)",
        sql: "SELECT hour, sum(pages) AS pages, sum(status_2xx) AS s2xx, sum(status_3xx) AS s3xx,
                     sum(status_4xx) AS s4xx, sum(status_5xx) AS s5xx,
                     sum(fetch_ms_sum) / nullif(sum(pages), 0) AS fetch_ms_avg, max(fetch_ms_max) AS fetch_ms_max
              FROM crawl_hourly
              WHERE domain = $1 AND hour > $2::timestamptz - interval '48 hours' AND hour <= $2::timestamptz
              GROUP BY hour ORDER BY hour",
        sample_sql: "SELECT tenant_id, ARRAY[domain, (($1::date + 1)::timestamp AT TIME ZONE 'UTC'
                                                     - interval '1 hour')::text]
                     FROM (SELECT DISTINCT tenant_id, domain FROM crawl_hourly
                           WHERE hour = ($1::date + 1)::timestamp AT TIME ZONE 'UTC' - interval '1 hour') d
                     ORDER BY random() LIMIT $2",
    },
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.scale > 0.0 && cli.queries > 0,
        "scale and queries must be positive"
    );
    ensure!(
        cli.database
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "--database: lowercase letters, digits and _ only"
    );
    let admin_options: PgConnectOptions = cli.url.parse().context("--url")?;
    ensure_database(&admin_options, &cli.database).await?;
    let owner_options = admin_options.clone().database(&cli.database);
    let mut owner = PgConnection::connect_with(&owner_options)
        .await
        .context("connecting to the benchmark database")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../aggregator/sinks/migrations");
    Migrator::new(dir.as_path())
        .await?
        .run(&mut owner)
        .await
        .context("applying migrations")?;

    let dataset = ensure_dataset(&mut owner, &owner_options, cli.scale, cli.rebuild).await?;
    println!(
        "dataset: database {}, {} aggregate rows (rank_daily {}, click_daily {}, crawl_hourly {}), \
         {TENANTS} tenants, anchor day {}, built {} in {:.0} s",
        cli.database,
        dataset.rank_rows + dataset.click_rows + dataset.crawl_rows,
        dataset.rank_rows,
        dataset.click_rows,
        dataset.crawl_rows,
        dataset.anchor,
        dataset.built_at.format("%Y-%m-%d %H:%M UTC"),
        dataset.build_seconds
    );

    let password = reader_login(&mut owner).await?;
    let mut reader = PgConnection::connect_with(
        &owner_options
            .clone()
            .username(READER_LOGIN)
            .password(&password),
    )
    .await
    .context("connecting as the reader login")?;
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut reader)
        .await?;
    println!(
        "reader: {READER_LOGIN} (member of sluice_reader), row-level security on; PostgreSQL {server}; \
         1 connection, sequential; {} timed requests per query after {} warm-up",
        cli.queries, cli.warmup
    );

    let load_before = load_average();
    let mut results = Vec::new();
    for read in &READS {
        let samples = sample(&mut owner, read, dataset.anchor, cli.queries + cli.warmup).await?;
        if cli.explain {
            explain(&mut reader, read, &samples[0]).await?;
        }
        results.push(run(&mut reader, read, &samples, cli.warmup, cli.queries).await?);
    }
    print_table(&results);
    println!(
        "machine load average (1/5/15 min) before: {load_before}, after: {}",
        load_average()
    );
    Ok(())
}

/// The host's load average, when readable (Linux): other work on the machine skews the tail.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Creates (or re-passwords) the benchmark's login, a member of `sluice_reader`, and returns its new
/// password. Needs CREATEROLE, as the migrations do to create `sluice_reader`.
async fn reader_login(owner: &mut PgConnection) -> anyhow::Result<String> {
    let reader_role: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader')",
    )
    .fetch_one(&mut *owner)
    .await?;
    if !reader_role {
        bail!("role sluice_reader does not exist (see docs/postgres.md, \"Roles\")");
    }
    let password: String =
        sqlx::query_scalar("SELECT md5(random()::text || clock_timestamp()::text)")
            .fetch_one(&mut *owner)
            .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(READER_LOGIN)
            .fetch_one(&mut *owner)
            .await?;
    let sql = if exists {
        format!("ALTER ROLE {READER_LOGIN} LOGIN PASSWORD '{password}'")
    } else {
        format!("CREATE ROLE {READER_LOGIN} LOGIN PASSWORD '{password}' IN ROLE sluice_reader")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *owner)
        .await
        .context("creating the benchmark's reader login (needs CREATEROLE)")?;
    Ok(password)
}

/// A sampled request: the tenant to set and the query's text parameters.
#[derive(Debug, Clone)]
struct Sample {
    tenant: String,
    params: Vec<String>,
}

async fn sample(
    owner: &mut PgConnection,
    read: &Read,
    anchor: NaiveDate,
    n: usize,
) -> anyhow::Result<Vec<Sample>> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(read.sample_sql)
        .bind(anchor)
        .bind(n as i64)
        .fetch_all(&mut *owner)
        .await
        .with_context(|| format!("sampling keys for {}", read.name))?;
    ensure!(!rows.is_empty(), "no keys to sample for {}", read.name);
    // Fewer distinct keys than requests (small scales): cycle through them.
    Ok((0..n)
        .map(|i| {
            let (tenant, params) = &rows[i % rows.len()];
            Sample {
                tenant: tenant.clone(),
                params: params.clone(),
            }
        })
        .collect())
}

fn arguments(sample: &Sample) -> anyhow::Result<PgArguments> {
    let mut args = PgArguments::default();
    for p in &sample.params {
        args.add(p.as_str())
            .map_err(|e| anyhow::anyhow!("binding {p}: {e}"))?;
    }
    Ok(args)
}

/// Latencies of one query, in request and statement form, plus rows returned.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    request: Vec<Duration>,
    statement: Vec<Duration>,
    rows: usize,
}

async fn run(
    reader: &mut PgConnection,
    read: &Read,
    samples: &[Sample],
    warmup: usize,
    queries: usize,
) -> anyhow::Result<Measured> {
    let mut measured = Measured {
        name: read.name,
        request: Vec::with_capacity(queries),
        statement: Vec::with_capacity(queries),
        rows: 0,
    };
    for (i, sample) in samples.iter().enumerate() {
        let args = arguments(sample)?;
        let started = Instant::now();
        let mut tx = reader.begin().await?;
        sqlx::query("SELECT set_config('app.current_tenant', $1, true)")
            .bind(&sample.tenant)
            .execute(&mut *tx)
            .await?;
        let statement_started = Instant::now();
        let rows = sqlx::query_with(read.sql, args).fetch_all(&mut *tx).await?;
        let statement = statement_started.elapsed();
        tx.commit().await?;
        let request = started.elapsed();
        if rows.is_empty() {
            bail!(
                "{}: no rows for tenant {} {:?} (RLS or data problem)",
                read.name,
                sample.tenant,
                sample.params
            );
        }
        if i >= warmup {
            measured.request.push(request);
            measured.statement.push(statement);
            measured.rows += rows.len();
        }
    }
    Ok(measured)
}

async fn explain(reader: &mut PgConnection, read: &Read, sample: &Sample) -> anyhow::Result<()> {
    let mut tx = reader.begin().await?;
    sqlx::query("SELECT set_config('app.current_tenant', $1, true)")
        .bind(&sample.tenant)
        .execute(&mut *tx)
        .await?;
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}", read.sql);
    let lines: Vec<String> = sqlx::query_scalar_with(sqlx::AssertSqlSafe(sql), arguments(sample)?)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    println!(
        "\n-- {} (tenant {}, {:?})",
        read.name, sample.tenant, sample.params
    );
    for line in lines {
        println!("   {line}");
    }
    Ok(())
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn print_table(results: &[Measured]) {
    println!(
        "\n{:<30} {:>8} | {:>36} | {:>36}",
        "query",
        "rows/req",
        "request ms: p50 / p95 / p99 / max",
        "statement ms: p50 / p95 / p99 / max"
    );
    for m in results {
        let mut request = m.request.clone();
        let mut statement = m.statement.clone();
        request.sort_unstable();
        statement.sort_unstable();
        let row = |d: &[Duration]| {
            let max = d.last().map_or(0.0, |x| x.as_secs_f64() * 1000.0);
            format!(
                "{:>7.3} / {:>6.3} / {:>6.3} / {:>7.3}",
                percentile(d, 50.0),
                percentile(d, 95.0),
                percentile(d, 99.0),
                max
            )
        };
        println!(
            "{:<30} {:>8.1} | {:>36} | {:>36}",
            m.name,
            m.rows as f64 / m.request.len().max(1) as f64,
            row(&request),
            row(&statement)
        );
    }
    println!(
        "\nrequest = BEGIN; set_config('app.current_tenant', …, true); query; COMMIT (4 round trips)"
    );
}
