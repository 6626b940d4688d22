//! The PostgreSQL sink through a real PgBouncer in transaction pooling mode, over TLS with
//! `sslmode=verify-full` (the cluster stack: `make up-cluster`). Several sink connections share fewer
//! server connections, so consecutive transactions of one sink connection land on different server
//! connections: anything that relies on session state (named prepared statements, session advisory
//! locks) breaks here. The test migrates, then commits chains of batches on several partitions at once
//! (offset swap, dedup rows, upserts), reads offsets and dedup windows between commits, and checks the
//! exact totals. It uses the cluster's `sluice` database with a topic, consumer group and tenant of its
//! own, and deletes its rows at the end.
//!
//! Where PgBouncer is: `SLUICE_PGBOUNCER_URL` and `SLUICE_PGBOUNCER_PASSWORD_FILE`, by default the
//! cluster stack's (`$SLUICE_CLUSTER_STATE_DIR`, default `<repo>/.state-cluster`).

use std::path::PathBuf;

use anyhow::{ensure, Context};
use chrono::Utc;
use sluice_aggregator::dedup::DedupWindow;
use sluice_aggregator::PartitionBatch;
use sluice_schemas::{ClickEvent, Event};
use sluice_sinks::postgres::{Commit, Pooling, PostgresSink, PARTITION_MONTHS_AHEAD};

const PARTITIONS: i32 = 4;
const BATCHES: i64 = 12;
const CLICKS_PER_BATCH: i64 = 10;
const WINDOW_MS: i64 = 3_600_000;

fn state_dir() -> PathBuf {
    std::env::var_os("SLUICE_CLUSTER_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.state-cluster"))
        })
}

/// PgBouncer's URL and the password (from its file).
fn pgbouncer() -> anyhow::Result<(String, String)> {
    let secrets = state_dir().join("secrets");
    let url = std::env::var("SLUICE_PGBOUNCER_URL").unwrap_or_else(|_| {
        format!(
            "postgres://sluice@localhost:16432/sluice?sslmode=verify-full&sslrootcert={}",
            secrets.join("ca.pem").display()
        )
    });
    let file = std::env::var_os("SLUICE_PGBOUNCER_PASSWORD_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| secrets.join("postgres-password"));
    let password =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok((url, password.trim_end().to_owned()))
}

fn sink(url: &str, password: &str, group: &str) -> anyhow::Result<PostgresSink> {
    // More sink connections than PgBouncer's server pool for the database: they share servers.
    Ok(PostgresSink::connect_pooled(
        url,
        Some(password),
        group,
        8,
        Pooling::Transaction,
    )?)
}

fn click(tenant: &str, id: &str) -> Event {
    Event::Click(ClickEvent {
        schema_version: 1,
        event_id: id.into(),
        tenant_id: tenant.into(),
        occurred_at: Utc::now(),
        short_code: "link".into(),
        referrer: None,
        country: None,
        user_agent: None,
        visitor_id: None,
    })
}

/// Commits `BATCHES` batches on `partition`, each of `CLICKS_PER_BATCH` new clicks and one re-delivery
/// of the batch's first click (dropped by the dedup window), reloading the stored offset and dedup
/// window before every batch as an assignment would. Returns the partition's last offset.
async fn run_partition(
    sink: PostgresSink,
    topic: String,
    tenant: String,
    partition: i32,
) -> anyhow::Result<i64> {
    let t0 = Utc::now().timestamp_millis();
    let mut offset = 0i64;
    for b in 0..BATCHES {
        let stored = sink.load_offsets(&topic, &[partition]).await?;
        let stored = stored.get(&partition).copied();
        ensure!(
            stored.map(|s| s.next_offset) == (b > 0).then_some(offset),
            "partition {partition}: stored {stored:?} before batch {b}, expected {offset}"
        );
        let mut window = match stored.and_then(|s| s.watermark_ms) {
            Some(watermark) => DedupWindow::restore(
                WINDOW_MS,
                watermark,
                sink.load_dedup(&topic, partition, watermark).await?,
            ),
            None => DedupWindow::new(WINDOW_MS, t0),
        };
        ensure!(
            window.len() as i64 == b * CLICKS_PER_BATCH,
            "partition {partition}: dedup window of {} keys before batch {b}",
            window.len()
        );
        let mut batch =
            PartitionBatch::new(topic.clone(), partition, stored.map(|s| s.next_offset));
        for i in 0..=CLICKS_PER_BATCH {
            // The last record re-sends the batch's first event.
            let n = if i == CLICKS_PER_BATCH { 0 } else { i };
            let id = format!("{partition}-{b}-{n}");
            batch
                .offer(click(&tenant, &id), offset, t0 + offset, Some(&mut window))
                .expect("fits its ClickHouse columns");
            offset += 1;
        }
        ensure!(batch.duplicates == 1, "the re-delivery was not dropped");
        let commit = sink.commit(&batch).await?;
        ensure!(
            commit
                == Commit::Committed {
                    next_offset: offset
                },
            "partition {partition} batch {b}: {commit:?}"
        );
        sink.ping().await?;
    }
    // A zombie replaying the first range is fenced and writes nothing.
    let mut zombie = PartitionBatch::new(topic.clone(), partition, Some(0));
    zombie
        .add(click(&tenant, "zombie"), 0)
        .expect("fits its ClickHouse columns");
    let fenced = sink.commit(&zombie).await?;
    ensure!(
        fenced
            == Commit::Fenced {
                stored: Some(offset)
            },
        "zombie: {fenced:?}"
    );
    Ok(offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn sink_works_through_pgbouncer_in_transaction_mode() -> anyhow::Result<()> {
    let (url, password) = pgbouncer()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (topic, group, tenant) = (
        format!("pgbouncer-{run}"),
        format!("pgbouncer-{run}"),
        format!("pgb-{run}"),
    );
    let sink = sink(&url, &password, &group)?;
    sink.migrate().await?;
    // Twice: the second run finds everything applied (and must not wait on a lock left behind).
    sink.migrate().await?;
    ensure!(sink.missing_migrations().await?.is_empty());
    sink.ensure_partitions(PARTITION_MONTHS_AHEAD).await?;

    // Each partition through a sink of its own that remembers the keys it wrote, as an ingest
    // process does: all partitions write the same click key, so every sink but the first to commit
    // finds it written by another on its first batch, and falls back from the plain insert to
    // ON CONFLICT through a savepoint — which must work through the pooler too.
    let mut sinks = Vec::new();
    let mut tasks = Vec::new();
    for p in 0..PARTITIONS {
        let own = self::sink(&url, &password, &group)?.remembering_keys(1 << 20);
        sinks.push(own.clone());
        tasks.push(tokio::spawn(run_partition(
            own,
            topic.clone(),
            tenant.clone(),
            p,
        )));
    }
    for task in tasks {
        ensure!(task.await?? == BATCHES * (CLICKS_PER_BATCH + 1));
    }
    let fallbacks: u64 = sinks.iter().filter_map(|s| s.insert_fallbacks()).sum();
    ensure!(
        fallbacks == u64::from(PARTITIONS.unsigned_abs()) - 1,
        "{fallbacks} fall-backs"
    );

    let offsets = sink.topic_offsets(&topic).await?;
    let expected: Vec<(i32, i64)> = (0..PARTITIONS)
        .map(|p| (p, BATCHES * (CLICKS_PER_BATCH + 1)))
        .collect();
    let stored: Vec<(i32, i64)> = offsets.iter().map(|(p, s)| (*p, s.next_offset)).collect();
    ensure!(stored == expected, "offsets {stored:?}");

    // Read back through PgBouncer inside a transaction (a plain pool query would be split too).
    let mut tx = sink.pool().begin().await?;
    let clicks: Option<i64> =
        sqlx::query_scalar("SELECT sum(clicks)::bigint FROM click_daily WHERE tenant_id = $1")
            .bind(&tenant)
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
    ensure!(
        clicks == Some(i64::from(PARTITIONS) * BATCHES * CLICKS_PER_BATCH),
        "clicks {clicks:?}"
    );
    for sql in [
        "DELETE FROM click_daily WHERE tenant_id = $1",
        "DELETE FROM sluice_offsets WHERE consumer_group = $1",
        "DELETE FROM sluice_dedup WHERE consumer_group = $1",
    ] {
        let key = if sql.contains("tenant") {
            &tenant
        } else {
            &group
        };
        sqlx::query(sql)
            .bind(key)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(url)?;
    url.set_path(database);
    Ok(url.to_string())
}

/// A database of its own behind PgBouncer (its `[databases]` has a `*` entry), made and dropped through
/// PgBouncer: one simple-protocol statement outside a transaction is fine through a transaction pooler.
struct FreshDb {
    admin: PostgresSink,
    name: String,
    url: String,
}

impl FreshDb {
    async fn new(url: &str, password: &str, prefix: &str) -> anyhow::Result<FreshDb> {
        let admin = sink(url, password, "pgbouncer-admin")?;
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pool())
            .await?;
        let url = with_database(url, &name)?;
        Ok(FreshDb { admin, name, url })
    }

    async fn drop_db(self) -> anyhow::Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(self.admin.pool())
        .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn concurrent_migrations_through_pgbouncer_apply_each_once() -> anyhow::Result<()> {
    let (url, password) = pgbouncer()?;
    let db = FreshDb::new(&url, &password, "pgb_migrate").await?;
    let sinks: Vec<PostgresSink> = (0..3)
        .map(|i| sink(&db.url, &password, &format!("migrator-{i}")))
        .collect::<anyhow::Result<_>>()?;
    let runs: Vec<_> = sinks
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    for run in runs {
        run.await??;
    }
    ensure!(sinks[0].missing_migrations().await?.is_empty());
    let mut tx = sinks[0].pool().begin().await?;
    let (applied, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sql"))
        })
        .count() as i64;
    ensure!(
        applied == embedded && distinct == embedded,
        "{applied} rows ({distinct} versions) in _sqlx_migrations, {embedded} migrations"
    );
    for s in sinks {
        s.pool().close().await;
    }
    db.drop_db().await
}

/// The server connection under an open commit dies (its backend is terminated, as when the primary
/// goes away): the commit fails with a transient error — nothing of it was written — and the same
/// batch committed again goes through, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn a_server_connection_lost_mid_commit_is_retried_exactly() -> anyhow::Result<()> {
    let (url, password) = pgbouncer()?;
    let db = FreshDb::new(&url, &password, "pgb_lost").await?;
    let sink = sink(&db.url, &password, "lost-server")?;
    sink.migrate().await?;
    let killer = sink.clone();
    let database = db.name.clone();
    let mut batch = PartitionBatch::new("lost-server", 0, None);
    for i in 0..10 {
        batch
            .add(click("lost", &format!("e{i}")), i)
            .expect("fits its ClickHouse columns");
    }
    // Kill every other backend of this database while the commit's transaction is open.
    let kill = async move {
        let mut tx = killer.pool().begin().await.ok()?;
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()) t",
        )
        .bind(&database)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .ok()?;
        tx.commit().await.ok()?;
        Some(killed)
    };
    let killed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = killed.clone();
    let first = sink
        .commit_when(&batch, async move {
            *seen.lock().unwrap() = kill.await;
            true
        })
        .await;
    let killed = *killed.lock().unwrap();
    ensure!(killed.is_some_and(|n| n >= 1), "killed {killed:?} backends");
    let error = first
        .err()
        .context("the commit survived its server connection")?;
    println!("commit with its server connection gone: {error}");
    ensure!(error.is_transient(), "{error}");
    ensure!(
        sink.commit(&batch).await? == Commit::Committed { next_offset: 10 },
        "retry"
    );
    let mut tx = sink.pool().begin().await?;
    let clicks: Option<i64> =
        sqlx::query_scalar("SELECT sum(clicks)::bigint FROM click_daily WHERE tenant_id = 'lost'")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    ensure!(clicks == Some(10), "clicks {clicks:?}");
    sink.pool().close().await;
    db.drop_db().await
}
