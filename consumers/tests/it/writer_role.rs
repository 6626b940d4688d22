//! Least privilege for ingest (docs/postgres.md, "Who does what"): the tables' owner runs
//! `sluice-ingest migrate`; ingest runs with `migrate_on_start = false` as a login that is a member of
//! `sluice_writer`, its password read from a file. Events of every kind (with re-sends) must come out
//! exact in both databases (independent verifier), partition maintenance must work through the
//! `SECURITY DEFINER` function, the password must never reach the log, and the login must be refused
//! everything a running ingest does not need: DDL, TRUNCATE, DELETE on aggregates, the partitions
//! themselves, the maintenance internals. Started against a database nobody migrated, it must stop with
//! a message saying so.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice_loadtest::verify::Expected;
use sluice_schemas::EventKind;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::support::{TestStack, TrafficShape};

/// Runs `sql` and demands PostgreSQL's insufficient_privilege (42501).
async fn refused(pool: &PgPool, sql: &str) -> anyhow::Result<()> {
    match sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
    {
        Ok(_) => bail!("`{sql}` succeeded as the writer"),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => Ok(()),
        Err(e) => bail!("`{sql}` failed, but not with a permission error: {e}"),
    }
}

/// Creates `login` in `sluice_writer` with `password`, without the password appearing in any
/// top-level statement (the server logs statements, not what a DO block executes).
async fn create_login(owner: &PgPool, login: &str, password: &str) -> anyhow::Result<()> {
    let mut tx = owner.begin().await?;
    sqlx::query("SELECT set_config('sluice_test.password', $1, true)")
        .bind(password)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN
             EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE sluice_writer', '{login}',
                            current_setting('sluice_test.password'));
         END $$"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_runs_as_the_writer_role_and_cannot_change_the_schema() -> anyhow::Result<()> {
    let stack = TestStack::new("writer", 3).await?;
    // The owner migrates (this also creates sluice_writer, cluster-wide, if it is absent).
    stack.run_ingest_command(&["migrate"], &[])?;

    let login = format!("{}_ingest", stack.name);
    let password = uuid::Uuid::new_v4().simple().to_string();
    create_login(&stack.pg, &login, &password).await?;
    let password_file = stack.log_dir.join("writer-password");
    std::fs::write(&password_file, format!("{password}\n"))?;
    let (head, _) = stack.pg_url.split_once("://").context("postgres URL")?;
    let host_and_db = stack
        .pg_url
        .rsplit_once('@')
        .map(|(_, rest)| rest.to_owned())
        .context("postgres URL without a user")?;
    let writer_url = format!("{head}://{login}@{host_and_db}");
    let file = password_file.to_string_lossy().into_owned();
    let as_writer = [
        ("SLUICE_POSTGRES_URL", writer_url.as_str()),
        ("SLUICE_POSTGRES_PASSWORD_FILE", file.as_str()),
        ("SLUICE_MIGRATE_ON_START", "false"),
    ];

    // Against a database nobody migrated, the writer's ingest stops at once and says why.
    let empty = format!("{}_empty", stack.name);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {empty}")))
        .execute(&stack.pg)
        .await?;
    let (base, _) = writer_url.rsplit_once('/').context("postgres URL")?;
    let empty_url = format!("{base}/{empty}");
    let mut unmigrated = as_writer;
    unmigrated[0].1 = &empty_url;
    let output = stack.ingest_command_output(&["run"], &unmigrated)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "ingest ran against an unmigrated database"
    );
    assert!(stderr.contains("lacks migrations"), "{stderr}");
    assert!(!stderr.contains(&password), "the password reached the log");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {empty} WITH (FORCE)"
    )))
    .execute(&stack.pg)
    .await?;

    // Ingest as the writer.
    let ingest = stack.spawn_ingest("writer", &as_writer)?;
    let events = stack.publish(TrafficShape::seed(41).rate(2000).events(3000))?;
    let kinds: BTreeSet<EventKind> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.len(), 3, "events of every kind");
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    let (sessions,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1",
    )
    .bind(&login)
    .fetch_one(&stack.pg)
    .await?;
    assert!(sessions > 0, "ingest is connected as {login}");
    let log = ingest.log_text();
    assert!(
        ingest.terminate(Duration::from_secs(30))?.success(),
        "ingest exit status; log: {log}"
    );
    stack
        .assert_matches(&Expected::from_events(&events))
        .await?;
    assert!(!log.contains(&password), "the password reached the log");
    assert!(
        log.contains("partition maintenance") && !log.contains("partition maintenance failed"),
        "partition maintenance at start-up, as the writer: {log}"
    );

    // The same login, directly.
    let options: PgConnectOptions = writer_url.parse()?;
    let writer = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.password(&password))
        .await?;
    // Sees every tenant's rows (its own policy), like the owner.
    let count = "SELECT count(*) FROM click_daily";
    let (as_owner,): (i64,) = sqlx::query_as(count).fetch_one(&stack.pg).await?;
    let (seen,): (i64,) = sqlx::query_as(count).fetch_one(&writer).await?;
    assert!(as_owner > 0);
    assert_eq!(seen, as_owner, "the writer sees all tenants");
    // Partitions beyond the three months the migration made, created through SECURITY DEFINER and
    // owned by the tables' owner.
    let (created,): (i32,) = sqlx::query_as("SELECT created FROM sluice_ensure_partitions(6)")
        .fetch_one(&writer)
        .await?;
    assert_eq!(created, 9, "three more months for each of the three tables");
    let (foreign,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
          WHERE c.relowner <> (SELECT relowner FROM pg_class WHERE relname = 'click_daily')",
    )
    .fetch_one(&stack.pg)
    .await?;
    assert_eq!(foreign, 0, "every partition belongs to the owner");

    for sql in [
        "DROP TABLE click_daily",
        "TRUNCATE click_daily",
        "DELETE FROM click_daily",
        "DELETE FROM rank_daily WHERE true",
        "ALTER TABLE click_daily ADD COLUMN note text",
        "ALTER TABLE rank_daily DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON crawl_hourly",
        "CREATE INDEX ON click_daily (clicks)",
        "DELETE FROM sluice_offsets",
        "TRUNCATE sluice_dedup",
        "SELECT count(*) FROM click_daily_default",
        "INSERT INTO click_daily_default VALUES ('t', 's', '2020-01-01', 1)",
        "SELECT sluice_create_month_partition('click_daily', '2040-01-01')",
        "SELECT sluice_grant_writer()",
        "SELECT sluice_grant_reader()",
        "DELETE FROM _sqlx_migrations",
    ] {
        refused(&writer, sql).await?;
    }
    let (server,): (i32,) = sqlx::query_as("SELECT current_setting('server_version_num')::int")
        .fetch_one(&writer)
        .await?;
    if server >= 150_000 {
        // PostgreSQL 15 no longer lets PUBLIC create objects in schema public.
        refused(&writer, "CREATE TABLE writer_scratch (x int)").await?;
    }
    writer.close().await;

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {login}")))
        .execute(&stack.pg)
        .await?;
    std::fs::remove_file(&password_file)?;
    stack.cleanup().await
}
