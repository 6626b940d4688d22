//! PostgreSQL housekeeping shared by the load runs and the acceptance tests: dropping the throwaway
//! databases they create.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

/// Drops database `name` (if it exists) through a connection to `admin_url`, ending its sessions
/// (`WITH (FORCE)`). An autovacuum worker busy on the database's fresh tables runs as the bootstrap
/// superuser, which a non-superuser may not terminate: PostgreSQL then refuses the drop with
/// `insufficient_privilege` (42501). The worker finishes within seconds, so that one refusal is retried
/// for up to 30 s; any other error is returned at once.
pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .context("connecting to drop a database")?;
    let deadline = Instant::now() + Duration::from_secs(30);
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
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other,
        }
    };
    admin.close().await;
    result
        .map(drop)
        .with_context(|| format!("dropping PostgreSQL database {name}"))
}
