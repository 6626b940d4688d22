//! The PostgreSQL schema on the real server (no Kafka, no ClickHouse): the migration from 0001's plain
//! tables to monthly partitions keeps every row; the sink's compare-and-swap and `ON CONFLICT` upserts
//! work on the partitioned tables, including rows that fall in a DEFAULT partition until
//! `ensure_partitions` moves them; and tenant isolation holds for the read-only role — a login that is
//! a member of `sluice_reader` sees exactly its tenant's rows, nothing without a tenant, and can write
//! nothing — while the owner (ingest) still writes every tenant's rows. Each test has its own database.

use std::path::Path;

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use sluice_aggregator::PartitionBatch;
use sluice_schemas::{ClickEvent, CrawlEvent, Event, RankEvent};
use sluice_sinks::postgres::{Commit, PostgresSink, PARTITION_MONTHS_AHEAD};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

const TABLES: [&str; 3] = ["click_daily", "rank_daily", "crawl_hourly"];

/// The stack's PostgreSQL database, from which each test's own is created.
fn base_url() -> String {
    sluice_loadtest::kit::StackArgs::from_env().postgres_url
}

/// A database of its own on the shared server, dropped by [`TestDb::drop_db`] when the test passes.
struct TestDb {
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDb {
    async fn new(test: &str) -> anyhow::Result<TestDb> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{test}_{suffix}");
        let (url, pool) =
            sluice_loadtest::kit::databases::create_postgres(&base_url(), &name).await?;
        Ok(TestDb { name, url, pool })
    }

    fn sink(&self) -> anyhow::Result<PostgresSink> {
        Ok(PostgresSink::connect(&self.url, None, "schema-test", 4)?)
    }

    /// A new database with every migration applied, and a sink on it.
    async fn migrated(test: &str) -> anyhow::Result<(TestDb, PostgresSink)> {
        let db = TestDb::new(test).await?;
        let sink = db.sink()?;
        sink.migrate().await?;
        Ok((db, sink))
    }

    async fn drop_db(self) -> anyhow::Result<()> {
        self.pool.close().await;
        sluice_loadtest::kit::databases::drop_database(&base_url(), &self.name).await
    }
}

/// The migrations as files (read at run time, so this test always sees the current directory).
async fn migrations() -> anyhow::Result<Migrator> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    Ok(Migrator::new(dir.as_path()).await?)
}

/// Every row of `table` as text, sorted: a snapshot to compare before and after.
async fn rows(pool: &PgPool, table: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT t::text FROM {table} t ORDER BY 1"
    )))
    .fetch_all(pool)
    .await?)
}

async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await?)
}

/// Rows of `table` stored in a partition other than the one named after their UTC month.
async fn misplaced_rows(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    let month = if table == "crawl_hourly" {
        "hour AT TIME ZONE 'UTC'"
    } else {
        "day::timestamp"
    };
    count(
        pool,
        &format!(
            "SELECT count(*) FROM {table}
             WHERE tableoid::regclass::text <> '{table}_p' || to_char({month}, 'YYYY_MM')"
        ),
    )
    .await
}

fn click(tenant: &str, code: &str, id: &str, at: DateTime<Utc>) -> Event {
    Event::Click(ClickEvent {
        schema_version: 1,
        event_id: id.into(),
        tenant_id: tenant.into(),
        occurred_at: at,
        short_code: code.into(),
        referrer: None,
        country: None,
        user_agent: None,
        visitor_id: None,
    })
}

fn rank(tenant: &str, keyword: &str, id: &str, at: DateTime<Utc>, position: Option<i32>) -> Event {
    Event::Rank(RankEvent {
        schema_version: 1,
        event_id: id.into(),
        tenant_id: tenant.into(),
        occurred_at: at,
        campaign_id: "camp".into(),
        keyword: keyword.into(),
        geo: "us".into(),
        engine: "google".into(),
        device: "desktop".into(),
        url: None,
        position,
    })
}

fn crawl(tenant: &str, id: &str, at: DateTime<Utc>, status: i32) -> Event {
    Event::Crawl(CrawlEvent {
        schema_version: 1,
        event_id: id.into(),
        tenant_id: tenant.into(),
        occurred_at: at,
        campaign_id: "camp".into(),
        url: "https://Shop.Example/p".into(),
        status_code: status,
        fetch_ms: 40,
        bytes: 1000,
        content_hash: None,
    })
}

/// One event of each kind per tenant at each instant.
fn batch(
    partition: i32,
    expected: Option<i64>,
    first_offset: i64,
    tenants: &[&str],
    instants: &[DateTime<Utc>],
) -> PartitionBatch {
    let mut batch = PartitionBatch::new("schema-test", partition, expected);
    let mut offset = first_offset;
    for tenant in tenants {
        for (i, at) in instants.iter().enumerate() {
            let id = format!("{tenant}-{offset}");
            for event in [
                click(tenant, "link", &id, *at),
                rank(tenant, "shoes", &id, *at, Some(i as i32 + 1)),
                crawl(tenant, &id, *at, 200 + 100 * (i as i32 % 4)),
            ] {
                batch
                    .add(event, offset)
                    .expect("fits its ClickHouse columns");
                offset += 1;
            }
        }
    }
    batch
}

/// Instants in several months: now, last month, a year ago (inside the pre-created window), and three
/// years ago (outside it: lands in the DEFAULT partitions until `ensure_partitions` runs).
fn instants(now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let hour = now.date_naive().and_hms_opt(10, 30, 0).map(|t| t.and_utc());
    let at = hour.unwrap_or(now);
    vec![
        at,
        at - TimeDelta::days(35),
        at - TimeDelta::days(365),
        at.checked_sub_months(Months::new(36)).unwrap_or(at),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioning_migration_keeps_existing_rows() -> anyhow::Result<()> {
    let db = TestDb::new("pgschema_legacy").await?;
    let migrator = migrations().await?;
    migrator.run_to(1, &db.pool).await?;

    // A database as 0001 left it, with rows in many months (two years back to next month) and every
    // column kind, including NULL positions and microsecond timestamps.
    sqlx::raw_sql(
        "INSERT INTO click_daily
           SELECT 't' || (i % 7), 'code-' || (i % 13), current_date - (i * 3), i
           FROM generate_series(-10, 250) i;
         INSERT INTO rank_daily
           SELECT 't' || (i % 7), 'c' || (i % 3), 'kw ' || i, 'us', 'google', 'mobile', current_date - i,
                  CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 100 + 1)::smallint END,
                  timestamptz '2026-01-02 03:04:05.678901+00' + i * interval '1 day', 'ev-' || i,
                  (i % 100 + 1)::smallint, (i % 100 + 1)::smallint, i + 1
           FROM generate_series(-20, 700) i;
         INSERT INTO crawl_hourly
           SELECT 't' || (i % 7), 'c', 'd' || (i % 4) || '.example',
                  date_trunc('hour', now()) - i * interval '7 hours', 1, 1, 0, 0, 0, i, i, i * 10
           FROM generate_series(-30, 2000) i;",
    )
    .execute(&db.pool)
    .await?;
    let mut before = Vec::new();
    for table in TABLES {
        before.push(rows(&db.pool, table).await?);
    }

    db.sink()?.migrate().await?;

    for (table, before) in TABLES.iter().zip(before) {
        let kind: String =
            sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
                .bind(table)
                .fetch_one(&db.pool)
                .await?;
        ensure!(kind == "p", "{table} is not partitioned (relkind {kind})");
        let after = rows(&db.pool, table).await?;
        ensure!(
            after.len() == before.len() && after == before,
            "{table}: {} rows before the migration, {} after, or different values",
            before.len(),
            after.len()
        );
        ensure!(
            misplaced_rows(&db.pool, table).await? == 0,
            "{table}: rows outside their month partition"
        );
    }
    db.drop_db().await
}

/// Every partition of the aggregate tables — the DEFAULT ones, the months the migrations made and one
/// made later — leaves a fifth of each page free, so updating a row in place is a HOT update (migration
/// 0022).
/// The upserts walk their column arrays in step (a `ProjectSet`), not through a function scan that
/// copies every array into a tuple store first (docs/BENCHMARKS.md, session 13). Checked on the plans
/// PostgreSQL makes for the statements with a real batch's parameters; the rows are
/// `upserts_and_offset_swap_work_on_partitioned_tables`'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_unnest_their_arrays_in_the_select_list() -> anyhow::Result<()> {
    use sluice_sinks::postgres::{
        click_daily_arguments, crawl_hourly_arguments, rank_daily_arguments, CLICK_DAILY_INSERT,
        CLICK_DAILY_UPSERT, CRAWL_HOURLY_INSERT, CRAWL_HOURLY_UPSERT, RANK_DAILY_INSERT,
        RANK_DAILY_UPSERT,
    };
    let (db, _sink) = TestDb::migrated("pgschema_plans").await?;
    let batch = batch(0, None, 0, &["t1", "t2"], &instants(Utc::now()));
    // The upserts, and the plain inserts of new rows (`postgres::known`).
    let statements = [
        (CLICK_DAILY_UPSERT, click_daily_arguments(&batch)?),
        (RANK_DAILY_UPSERT, rank_daily_arguments(&batch)?),
        (CRAWL_HOURLY_UPSERT, crawl_hourly_arguments(&batch)?),
        (CLICK_DAILY_INSERT, click_daily_arguments(&batch)?),
        (RANK_DAILY_INSERT, rank_daily_arguments(&batch)?),
        (CRAWL_HOURLY_INSERT, crawl_hourly_arguments(&batch)?),
    ];
    for (sql, args) in statements {
        // The statement is one of the crate's constants.
        let explain = sqlx::AssertSqlSafe(format!("EXPLAIN (COSTS OFF) {sql}"));
        let plan: Vec<(String,)> = sqlx::query_as_with(explain, args)
            .fetch_all(&db.pool)
            .await?;
        let plan: Vec<&str> = plan.iter().map(|(line,)| line.trim()).collect();
        ensure!(
            plan.iter().any(|line| line.starts_with("->  ProjectSet")),
            "no ProjectSet in {plan:#?}"
        );
        ensure!(
            !plan.iter().any(|line| line.contains("Function Scan")),
            "a function scan in {plan:#?}"
        );
    }
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_partitions_leave_room_for_hot_updates() -> anyhow::Result<()> {
    let (db, _sink) = TestDb::migrated("pgschema_fillfactor").await?;
    sqlx::query("SELECT sluice_create_month_partition('rank_daily', '2001-01-01')")
        .execute(&db.pool)
        .await?;
    let partitions: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT c.relname::text, c.reloptions::text[]
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent IN ('click_daily'::regclass, 'rank_daily'::regclass, 'crawl_hourly'::regclass)
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    let names: Vec<&str> = partitions.iter().map(|(n, _)| n.as_str()).collect();
    for expected in TABLES
        .iter()
        .map(|t| format!("{t}_default"))
        .chain(["rank_daily_p2001_01".to_owned()])
    {
        ensure!(
            names.contains(&expected.as_str()),
            "no partition {expected}: {names:?}"
        );
    }
    ensure!(partitions.len() > 6, "only {names:?}");
    for (name, options) in &partitions {
        ensure!(
            options.as_deref() == Some(&["fillfactor=80".to_owned()][..]),
            "{name}: reloptions {options:?}"
        );
    }
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_and_offset_swap_work_on_partitioned_tables() -> anyhow::Result<()> {
    let (db, sink) = TestDb::migrated("pgschema_upsert").await?;
    let times = instants(Utc::now());
    let tenants = ["acme", "globex"];

    // First batch of partition 0, then its successor with the same keys: counts double.
    let first = batch(0, None, 0, &tenants, &times);
    let end = first.end_offset.context("empty batch")?;
    ensure!(sink.commit(&first).await? == Commit::Committed { next_offset: end });
    let second = batch(0, Some(end), end, &tenants, &times);
    let end2 = second.end_offset.context("empty batch")?;
    ensure!(sink.commit(&second).await? == Commit::Committed { next_offset: end2 });
    // A zombie replaying the first range is fenced and writes nothing.
    let zombie = batch(0, Some(0), 0, &tenants, &times);
    ensure!(sink.commit(&zombie).await? == Commit::Fenced { stored: Some(end2) });

    let keys = (tenants.len() * times.len()) as i64;
    ensure!(count(&db.pool, "SELECT count(*) FROM click_daily").await? == keys);
    ensure!(count(&db.pool, "SELECT sum(clicks)::bigint FROM click_daily").await? == 2 * keys);
    ensure!(count(&db.pool, "SELECT sum(checks)::bigint FROM rank_daily").await? == 2 * keys);
    ensure!(count(&db.pool, "SELECT sum(pages)::bigint FROM crawl_hourly").await? == 2 * keys);
    // The three-year-old rows wait in the DEFAULT partitions (no month partition that far back).
    for table in TABLES {
        let waiting = count(&db.pool, &format!("SELECT count(*) FROM {table}_default")).await?;
        ensure!(
            waiting == tenants.len() as i64,
            "{table}_default holds {waiting} rows"
        );
    }

    let mut snapshot = Vec::new();
    for table in TABLES {
        snapshot.push(rows(&db.pool, table).await?);
    }
    let done = sink.ensure_partitions(PARTITION_MONTHS_AHEAD).await?;
    ensure!(
        done.created == 3 && done.moved_rows == 3 * tenants.len() as u64,
        "ensure_partitions: {done:?}"
    );
    for (table, before) in TABLES.iter().zip(snapshot) {
        ensure!(rows(&db.pool, table).await? == before, "{table} changed");
        ensure!(
            misplaced_rows(&db.pool, table).await? == 0,
            "{table} misplaced"
        );
    }
    let again = sink.ensure_partitions(PARTITION_MONTHS_AHEAD).await?;
    ensure!(again.created == 0 && again.moved_rows == 0, "{again:?}");

    // Months ahead exist; merging into a moved row still works.
    let today = Utc::now().date_naive();
    let ahead = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
        .and_then(|d| d.checked_add_months(Months::new(PARTITION_MONTHS_AHEAD)))
        .context("date arithmetic")?;
    let name = format!("rank_daily_p{}", ahead.format("%Y_%m"));
    ensure!(
        count(
            &db.pool,
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{name}'")
        )
        .await?
            == 1,
        "{name} missing"
    );
    let third = batch(0, Some(end2), end2, &tenants, &times);
    ensure!(matches!(
        sink.commit(&third).await?,
        Commit::Committed { .. }
    ));
    ensure!(count(&db.pool, "SELECT sum(clicks)::bigint FROM click_daily").await? == 3 * keys);
    ensure!(count(&db.pool, "SELECT count(*) FROM click_daily_default").await? == 0);
    db.drop_db().await
}

/// Per tenant, the sums of `clicks`, `checks` and `pages` over its rows (tenant, clicks, checks, pages).
async fn sums_by_tenant(pool: &PgPool) -> anyhow::Result<Vec<(String, i64, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT c.tenant_id, c.n, r.n, w.n FROM
           (SELECT tenant_id, sum(clicks)::bigint n FROM click_daily GROUP BY 1) c
           JOIN (SELECT tenant_id, sum(checks)::bigint n FROM rank_daily GROUP BY 1) r USING (tenant_id)
           JOIN (SELECT tenant_id, sum(pages)::bigint n FROM crawl_hourly GROUP BY 1) w USING (tenant_id)
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// A sink that remembers the keys it wrote puts new rows in by plain INSERT; a key another process
/// wrote (here a second sink, on another partition) makes that insert fail, and the rows are merged by
/// ON CONFLICT instead, in the same transaction: every sum stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_rows_go_in_by_plain_insert_and_an_unknown_existing_key_falls_back(
) -> anyhow::Result<()> {
    let (db, _migrating) = TestDb::migrated("pgschema_known").await?;
    let remembering = db.sink()?.remembering_keys(1 << 20);
    let other = db.sink()?;
    let times = instants(Utc::now());
    // Partition 0 through the remembering sink, partition 1 through the other, in this order.
    let plan: [(i32, &[&str]); 7] = [
        (0, &["acme", "globex"]),
        (1, &["globex", "initech"]),
        // acme known; initech exists but is not known to this sink: a fall-back per table.
        (0, &["acme", "initech", "hooli"]),
        // Two flushes of ON CONFLICT alone after a first fall-back, then plain inserts again.
        (0, &["umbrella"]),
        (0, &["umbrella"]),
        (0, &["initech", "vandelay"]),
        (1, &["wayne"]),
    ];
    let mut next: [Option<i64>; 2] = [None, None];
    let mut fallbacks = Vec::new();
    for (partition, tenants) in plan {
        let slot = &mut next[partition as usize];
        let first = slot.unwrap_or(0);
        let b = batch(partition, *slot, first, tenants, &times);
        let sink = if partition == 0 { &remembering } else { &other };
        let end = b.end_offset.context("empty batch")?;
        ensure!(sink.commit(&b).await? == Commit::Committed { next_offset: end });
        *slot = Some(end);
        fallbacks.push(remembering.insert_fallbacks().context("remembering")?);
    }
    // wayne exists now, written by the other sink; the remembering one tries a plain insert again.
    let b = batch(0, next[0], next[0].unwrap_or(0), &["wayne"], &times);
    ensure!(matches!(
        remembering.commit(&b).await?,
        Commit::Committed { .. }
    ));
    fallbacks.push(remembering.insert_fallbacks().context("remembering")?);
    ensure!(
        fallbacks == [0, 0, 3, 3, 3, 3, 3, 6],
        "fall-backs after each batch: {fallbacks:?}"
    );
    ensure!(other.insert_fallbacks().is_none());

    // Each batch adds one click, one check and one page per instant to each of its tenants.
    let per_batch = times.len() as i64;
    let batches_of = |tenant: &str| {
        let n = plan.iter().filter(|(_, t)| t.contains(&tenant)).count() as i64;
        n + i64::from(tenant == "wayne")
    };
    let mut expected: Vec<(String, i64, i64, i64)> = [
        "acme", "globex", "hooli", "initech", "umbrella", "vandelay", "wayne",
    ]
    .iter()
    .map(|t| {
        let n = batches_of(t) * per_batch;
        (t.to_string(), n, n, n)
    })
    .collect();
    expected.sort();
    let got = sums_by_tenant(&db.pool).await?;
    ensure!(got == expected, "{got:?}\n!= {expected:?}");
    // One row per tenant, instant and table: nothing inserted twice.
    for table in TABLES {
        let rows = count(&db.pool, &format!("SELECT count(*) FROM {table}")).await?;
        ensure!(rows == 7 * per_batch, "{table}: {rows} rows");
    }
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_role_sees_only_its_tenant_and_cannot_write() -> anyhow::Result<()> {
    let (db, sink) = TestDb::migrated("pgschema_rls").await?;
    let reader_exists = count(
        &db.pool,
        "SELECT count(*) FROM pg_roles WHERE rolname = 'sluice_reader'",
    )
    .await?;
    if reader_exists != 1 {
        bail!(
            "role sluice_reader does not exist: the migrating role needs CREATEROLE to create it \
             (`make up` grants it to the local `sluice` role), or an admin creates it"
        );
    }

    // Three tenants of different sizes, written by the owner (ingest).
    let now = Utc::now();
    let times = instants(now);
    let mut next = 0;
    for (partition, tenant, repeat) in [(0, "acme", 1), (1, "globex", 2), (2, "initech", 3)] {
        let mut expected = None;
        for _ in 0..repeat {
            let mut b = batch(partition, expected, next, &[tenant], &times);
            // Different keys per repeat so that tenants differ in row counts.
            b.clicks = b
                .clicks
                .into_iter()
                .map(|(mut k, v)| {
                    k.short_code = format!("{}-{next}", k.short_code);
                    (k, v)
                })
                .collect();
            let end = b.end_offset.context("empty batch")?;
            ensure!(matches!(sink.commit(&b).await?, Commit::Committed { .. }));
            expected = Some(end);
            next = end;
        }
    }
    sink.ensure_partitions(PARTITION_MONTHS_AHEAD).await?;

    // A login for a product API: a member of the group role, as an admin would create it.
    let login = format!("it_reader_{}", &db.name[db.name.len() - 8..]);
    let password = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {login} LOGIN PASSWORD '{password}' IN ROLE sluice_reader"
    )))
    .execute(&db.pool)
    .await
    .context("creating a login role (the migrating role needs CREATEROLE)")?;
    let result = check_reader(&db, &login, &password).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {login}")))
        .execute(&db.pool)
        .await?;
    result?;

    // The owner is not subject to RLS and still writes every tenant's rows.
    let owner_sees: i64 =
        count(&db.pool, "SELECT count(DISTINCT tenant_id) FROM rank_daily").await?;
    ensure!(owner_sees == 3, "owner sees {owner_sees} tenants");
    // Partition 0 (acme, one batch of three events per instant) is stored at 3 * instants.
    let more = batch(0, Some(3 * times.len() as i64), 10_000, &["acme"], &times);
    let before = count(&db.pool, "SELECT sum(checks)::bigint FROM rank_daily").await?;
    ensure!(matches!(
        sink.commit(&more).await?,
        Commit::Committed { .. }
    ));
    let after = count(&db.pool, "SELECT sum(checks)::bigint FROM rank_daily").await?;
    ensure!(after == before + times.len() as i64, "owner write lost");
    db.drop_db().await
}

async fn check_reader(db: &TestDb, login: &str, password: &str) -> anyhow::Result<()> {
    let options: PgConnectOptions = db.url.parse()?;
    let mut reader = PgConnection::connect_with(&options.username(login).password(password))
        .await
        .context("connecting as the reader login")?;

    // Expected per-tenant row counts, read by the owner.
    let mut expected = Vec::new();
    for tenant in ["acme", "globex", "initech"] {
        let mut per_table = Vec::new();
        for table in TABLES {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = $1"
            )))
            .bind(tenant)
            .fetch_one(&db.pool)
            .await?;
            ensure!(n > 0, "owner sees no {table} rows of {tenant}");
            per_table.push(n);
        }
        expected.push((tenant, per_table));
    }
    ensure!(
        expected[0].1 != expected[1].1,
        "tenants must differ in size for the check to mean something"
    );

    // No tenant set: nothing.
    for table in TABLES {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut reader)
                .await?;
        ensure!(
            n == 0,
            "{table}: {n} rows visible without app.current_tenant"
        );
    }

    // Per transaction (how a pooled API should do it): exactly its own rows, none of the others'.
    for (tenant, per_table) in &expected {
        let mut tx = reader.begin().await?;
        sqlx::query("SELECT set_config('app.current_tenant', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        for (table, want) in TABLES.iter().zip(per_table) {
            let (n, others): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM {table}"
            )))
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
            ensure!(
                n == *want && others == 0,
                "{tenant} sees {n} {table} rows ({others} of other tenants), expected {want}"
            );
            // Asking for another tenant by name returns nothing.
            let foreign: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = 'globex'"
            )))
            .fetch_one(&mut *tx)
            .await?;
            ensure!(
                foreign == if *tenant == "globex" { *want } else { 0 },
                "{tenant} reads {foreign} globex rows of {table}"
            );
        }
        tx.commit().await?;
    }
    // The transaction-local setting is gone after commit.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM click_daily")
        .fetch_one(&mut reader)
        .await?;
    ensure!(
        n == 0,
        "{n} rows visible after the tenant's transaction ended"
    );

    // The reader cannot write, not even its own tenant's rows, nor reach around the policies.
    sqlx::query("SET app.current_tenant = 'acme'")
        .execute(&mut reader)
        .await?;
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
    let forbidden = [
        "INSERT INTO click_daily VALUES ('acme', 'forged', $1, 1)".to_owned(),
        "UPDATE click_daily SET clicks = clicks + 1 WHERE day <> $1".to_owned(),
        "DELETE FROM rank_daily WHERE day <> $1".to_owned(),
        "UPDATE crawl_hourly SET pages = 0 WHERE hour::date <> $1".to_owned(),
        "SELECT count(*) FROM click_daily_default WHERE day <> $1".to_owned(),
        format!(
            "SELECT count(*) FROM rank_daily_p{} WHERE day <> $1",
            Utc::now().format("%Y_%m")
        ),
        "SELECT count(*) FROM sluice_offsets WHERE updated_at::date <> $1".to_owned(),
        "SELECT count(*) FROM sluice_ensure_partitions(1) WHERE $1 IS NOT NULL".to_owned(),
    ];
    for sql in &forbidden {
        match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(day)
            .execute(&mut reader)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {}
            other => bail!("reader ran `{sql}`: {other:?} (expected permission denied)"),
        }
    }
    for statement in [
        "TRUNCATE click_daily",
        "ALTER TABLE click_daily DISABLE ROW LEVEL SECURITY",
    ] {
        match sqlx::query(statement).execute(&mut reader).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {}
            other => bail!("reader ran `{statement}`: {other:?}"),
        }
    }
    // Session-level setting works too, and still only for that tenant.
    let visible: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM rank_daily ORDER BY 1")
            .fetch_all(&mut reader)
            .await?;
    ensure!(visible == ["acme"], "acme's session sees {visible:?}");
    reader.close().await?;
    Ok(())
}

/// A server that only takes read-only transactions — a standby PgBouncer was pointed at before its
/// promotion finished — refuses the commit with 25006: a transient error (retried until the promotion
/// completes), not a permanent one that would stop ingest in the middle of a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_is_a_transient_failure() -> anyhow::Result<()> {
    let (db, _) = TestDb::migrated("pgschema_readonly").await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name
    )))
    .execute(&db.pool)
    .await?;
    let times = instants(Utc::now());
    let first = batch(0, None, 0, &["acme"], &times);
    let refused = db
        .sink()?
        .commit(&first)
        .await
        .err()
        .context("a read-only server took the commit")?;
    ensure!(
        refused.is_transient() && refused.code.as_deref() == Some("25006"),
        "{refused}"
    );
    // A session opened since the ALTER starts read-only too, and the pool may open one here: so the
    // reset runs on a connection of its own, always a new session, in an explicit read-write
    // transaction (through the pool it failed now and then with SQLSTATE 25006).
    let mut admin = PgConnection::connect(&db.url).await?;
    let mut tx = admin.begin_with("BEGIN READ WRITE").await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        db.name
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    admin.close().await?;
    let end = first.end_offset.context("empty batch")?;
    ensure!(db.sink()?.commit(&first).await? == Commit::Committed { next_offset: end });
    db.drop_db().await
}

/// Two instances' exclusive start-up work (ClickHouse's migrations) does not overlap: the second waits
/// on the advisory lock until the first is done, then runs.
#[tokio::test]
async fn exclusive_work_runs_one_instance_at_a_time() -> anyhow::Result<()> {
    let db = TestDb::new("pgschema_exclusive").await?;
    let (first, second) = (db.sink()?, db.sink()?);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<&str>::new()));
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (entered, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn({
        let log = log.clone();
        async move {
            first
                .exclusively(async {
                    log.lock().unwrap().push("first starts");
                    let _ = entered.send(());
                    let _ = released.await;
                    log.lock().unwrap().push("first ends");
                    Ok(())
                })
                .await
        }
    });
    entered_rx.await?;
    let b = tokio::spawn({
        let log = log.clone();
        async move {
            second
                .exclusively(async {
                    log.lock().unwrap().push("second runs");
                    Ok(())
                })
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    ensure!(
        *log.lock().unwrap() == ["first starts"],
        "{:?}",
        log.lock().unwrap()
    );
    release.send(()).ok().context("first is gone")?;
    a.await??;
    b.await??;
    ensure!(
        *log.lock().unwrap() == ["first starts", "first ends", "second runs"],
        "{:?}",
        log.lock().unwrap()
    );
    db.drop_db().await
}
