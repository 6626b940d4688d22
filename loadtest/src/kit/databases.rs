//! Throwaway databases of a test, a load run or the baselines: a PostgreSQL database and a ClickHouse
//! database of the same name, created next to the stack's own (`CREATE DATABASE` through the URL the
//! stack gives) and dropped at the end, with a pool and a client pointed at them in between. On a
//! ClickHouse cluster (`--clickhouse-cluster`, the cluster stack) the ClickHouse database is created and
//! dropped `ON CLUSTER`, so every replica has it.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// A PostgreSQL and a ClickHouse database, both named `name`.
#[derive(Debug, Clone)]
pub struct Databases {
    pub name: String,
    /// `admin_url` with its database replaced by `name`.
    pub pg_url: String,
    pub pg: PgPool,
    pub clickhouse_url: String,
    /// A client whose default database is `name`.
    pub ch: clickhouse::Client,
    /// The ClickHouse cluster the database was created on (`ON CLUSTER`), if any.
    pub clickhouse_cluster: Option<String>,
}

impl Databases {
    /// Creates both databases. `admin_url` is any PostgreSQL database the user may connect to and
    /// create databases from; `name` must be a plain identifier.
    pub async fn create(
        admin_url: &str,
        clickhouse_url: &str,
        name: &str,
    ) -> anyhow::Result<Databases> {
        Databases::create_on(admin_url, clickhouse_url, None, name).await
    }

    /// [`Databases::create`], the ClickHouse database `ON CLUSTER cluster` when one is given.
    pub async fn create_on(
        admin_url: &str,
        clickhouse_url: &str,
        clickhouse_cluster: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Databases> {
        let (pg_url, pg) = create_postgres(admin_url, name).await?;
        let ch = clickhouse::Client::default()
            .with_url(clickhouse_url)
            .with_validation(false);
        ch.query(&format!(
            "CREATE DATABASE {name}{}",
            on_cluster(clickhouse_cluster)
        ))
        .execute()
        .await
        .with_context(|| format!("creating ClickHouse database {name}"))?;
        Ok(Databases {
            name: name.to_owned(),
            pg_url,
            pg,
            clickhouse_url: clickhouse_url.to_owned(),
            ch: ch.with_database(name),
            clickhouse_cluster: clickhouse_cluster.map(str::to_owned),
        })
    }

    /// Drops both databases (see [`drop_database`] for PostgreSQL's).
    pub async fn drop(self, admin_url: &str) -> anyhow::Result<()> {
        self.ch
            .query(&format!(
                "DROP DATABASE IF EXISTS {}{}",
                self.name,
                on_cluster(self.clickhouse_cluster.as_deref())
            ))
            .execute()
            .await
            .context("dropping the ClickHouse database")?;
        self.pg.close().await;
        drop_database(admin_url, &self.name).await
    }
}

/// ` ON CLUSTER name`, or nothing.
fn on_cluster(cluster: Option<&str>) -> String {
    cluster.map_or_else(String::new, |c| format!(" ON CLUSTER {c}"))
}

/// Creates PostgreSQL database `name` through `admin_url`; returns its URL and a pool (4 connections)
/// on it.
pub async fn create_postgres(admin_url: &str, name: &str) -> anyhow::Result<(String, PgPool)> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .context("connecting to PostgreSQL (is the stack up? `make up`)")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .with_context(|| format!("creating PostgreSQL database {name}"))?;
    admin.close().await;
    let pg_url = database_url(admin_url, name)?;
    let pg = PgPoolOptions::new()
        .max_connections(4)
        .connect(&pg_url)
        .await
        .with_context(|| format!("connecting to {name}"))?;
    Ok((pg_url, pg))
}

/// Events counted in the PostgreSQL aggregates: sum(clicks) + sum(checks) + sum(pages).
pub async fn events_in_postgres(pg: &PgPool) -> anyhow::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT ((SELECT coalesce(sum(clicks), 0) FROM click_daily)
               + (SELECT coalesce(sum(checks), 0) FROM rank_daily)
               + (SELECT coalesce(sum(pages), 0) FROM crawl_hourly))::bigint",
    )
    .fetch_one(pg)
    .await
    .context("counting the events in the PostgreSQL aggregates")?;
    Ok(n)
}

/// Raw event rows in ClickHouse, each event once (`FINAL` collapses re-inserted copies).
pub async fn rows_in_clickhouse(ch: &clickhouse::Client) -> anyhow::Result<u64> {
    ch.query(
        "SELECT (SELECT count() FROM rank_events FINAL) + (SELECT count() FROM crawl_events FINAL)
              + (SELECT count() FROM click_events FINAL)",
    )
    .fetch_one()
    .await
    .context("counting the rows in ClickHouse")
}

/// `base` (a PostgreSQL URL) with its database replaced by `name`; its parameters (`?sslmode=…`) are
/// kept.
pub fn database_url(base: &str, name: &str) -> anyhow::Result<String> {
    let (address, query) = match base.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (base, None),
    };
    let (head, _) = address
        .rsplit_once('/')
        .context("the PostgreSQL URL has no database path")?;
    Ok(match query {
        Some(query) => format!("{head}/{name}?{query}"),
        None => format!("{head}/{name}"),
    })
}

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

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_the_database_and_keeps_the_parameters() {
        assert_eq!(
            database_url("postgres://u:p@h:5432/sluice", "t_1").unwrap(),
            "postgres://u:p@h:5432/t_1"
        );
        assert_eq!(
            database_url(
                "postgres://u@localhost:16432/sluice?sslmode=verify-full&sslrootcert=/s/ca.pem",
                "t_1"
            )
            .unwrap(),
            "postgres://u@localhost:16432/t_1?sslmode=verify-full&sslrootcert=/s/ca.pem"
        );
        assert!(database_url("postgres:", "t").is_err());
    }
}
