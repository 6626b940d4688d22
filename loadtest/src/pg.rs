//! PostgreSQL housekeeping shared by the load runs and the acceptance tests: dropping the throwaway
//! databases they create.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

/// Drops database `name` (if it exists) through a connection to `admin_url`, ending its sessions
/// (`WITH (FORCE)`). An autovacuum worker busy on the database's tables runs as the bootstrap
/// superuser, which a non-superuser may not terminate: PostgreSQL then refuses the drop with
/// `insufficient_privilege` (42501). On the first refusal the database's `public` schema is dropped
/// from inside it: that needs an exclusive lock on every table, and PostgreSQL cancels an autovacuum
/// worker that holds up a lock request (after `deadlock_timeout`). A worker on a large table (tens of
/// millions of rows after a ten-minute load run) would otherwise outlast any sensible wait. The drop is
/// then retried for up to 30 s; any other error is returned at once.
pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .context("connecting to drop a database")?;
    let mut deadline = Instant::now() + Duration::from_secs(30);
    let mut emptied = false;
    let result = loop {
        let outcome = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
        match outcome {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42501") && Instant::now() < deadline =>
            {
                if !emptied {
                    emptied = true;
                    drop_public_schema(admin_url, name).await?;
                    deadline = Instant::now() + Duration::from_secs(30);
                } else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            other => break other,
        }
    };
    admin.close().await;
    result
        .map(drop)
        .with_context(|| format!("dropping PostgreSQL database {name}"))
}

/// `DROP SCHEMA public CASCADE` inside database `name` (see [`drop_database`]).
async fn drop_public_schema(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut url = url::Url::parse(admin_url).context("parsing the PostgreSQL URL")?;
    url.set_path(name);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url.as_str())
        .await
        .with_context(|| format!("connecting to {name} to empty it"))?;
    let dropped = sqlx::query("DROP SCHEMA IF EXISTS public CASCADE")
        .execute(&pool)
        .await
        .with_context(|| format!("dropping the tables of {name}"));
    pool.close().await;
    dropped.map(drop)
}
