//! PostgreSQL failover with asynchronous replication: the promoted standby can lack the last commits,
//! so its `sluice_offsets` rows are BEHIND the offsets ingest continues from (and its aggregates, dedup
//! window and parked dead letters lack the same commits: they were lost together). Ingest's next commit
//! of such a partition fails the offset compare-and-swap; it must then re-read from the stored offset and
//! apply again, ending exact. The standby is simulated in the test's own database: a consistent copy of
//! every table ingest writes, taken in one REPEATABLE READ transaction (what a standby that replayed the
//! WAL up to some commit holds), is put back in one transaction while ingest runs ("promotion"), and
//! again while it is stopped. Traffic re-sends events across the lost range, so the dedup window must
//! come back as it was at the standby's commit, too. Ends with the independent verifier (PostgreSQL
//! aggregates and ClickHouse `FINAL` exact).

use std::time::Duration;

use sluice_consumers::metrics::FLUSHES;
use sluice_loadtest::verify::Expected;
use sqlx::PgPool;

use crate::support::{metric_value, TestStack, TrafficShape, SETTLE};

/// Every table ingest writes (the aggregate tables are partitioned: their parents route the rows).
const TABLES: [&str; 6] = [
    "sluice_offsets",
    "sluice_dedup",
    "sluice_dead_letters",
    "click_daily",
    "rank_daily",
    "crawl_hourly",
];

/// A consistent copy of `TABLES` in schema `standby` (replacing any earlier one).
async fn take_standby_copy(pg: &PgPool) -> anyhow::Result<()> {
    let mut tx = pg.begin().await?;
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql("DROP SCHEMA IF EXISTS standby CASCADE; CREATE SCHEMA standby")
        .execute(&mut *tx)
        .await?;
    for table in TABLES {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE standby.{table} AS SELECT * FROM public.{table}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The database becomes the standby copy, in one transaction.
async fn promote_standby(pg: &PgPool) -> anyhow::Result<()> {
    let mut tx = pg.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "TRUNCATE {}",
        TABLES.join(", ")
    )))
    .execute(&mut *tx)
    .await?;
    for table in TABLES {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO public.{table} SELECT * FROM standby.{table}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sum of the stored offsets of the test's group: how far PostgreSQL says ingest has got.
async fn stored_total(stack: &TestStack) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM sluice_offsets WHERE consumer_group = $1",
    )
    .bind(&stack.group)
    .fetch_one(&stack.pg)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_behind_ingest_is_caught_up_exactly() -> anyhow::Result<()> {
    let stack = TestStack::new("failover", 3).await?;
    let wait = Duration::from_secs(60);
    let mut ingest = stack.spawn_ingest("live", &[])?;
    let shape = |seed| TrafficShape::seed(seed).rate(3000).resends(0, 1);

    // 1. Live: the standby copy is taken after A; B is committed on the "primary" only; the standby
    //    is promoted while ingest runs; C arrives. Re-sends of B's events land in C.
    let mut events = stack.publish(shape(61).events(2000))?;
    stack.wait_caught_up_alive(&mut ingest, wait).await?;
    take_standby_copy(&stack.pg).await?;
    let at_copy = stored_total(&stack).await?;
    events.extend(stack.publish(shape(62).events(1500))?);
    stack.wait_caught_up_alive(&mut ingest, wait).await?;
    let before_promotion = stored_total(&stack).await?;
    anyhow::ensure!(
        before_promotion > at_copy,
        "B moved no offset ({at_copy} -> {before_promotion})"
    );
    promote_standby(&stack.pg).await?;
    assert_eq!(stored_total(&stack).await?, at_copy);
    events.extend(stack.publish(shape(63).events(1500))?);
    stack.wait_caught_up_alive(&mut ingest, wait).await?;
    // Every partition's first commit after the promotion found the stored offset behind it.
    let metrics = ingest
        .metrics_when(SETTLE, |m| {
            metric_value(m, FLUSHES, &[("outcome", "fenced")]) >= 3.0
        })
        .await?;
    let fenced = metric_value(&metrics, FLUSHES, &[("outcome", "fenced")]);
    assert!(fenced >= 3.0, "fenced flushes: {fenced}");
    stack
        .assert_matches(&Expected::from_events(&events))
        .await?;

    // 2. Stopped: the standby copy is taken, D is committed on the "primary" only, ingest stops, the
    //    standby is promoted, E arrives, ingest starts again.
    take_standby_copy(&stack.pg).await?;
    events.extend(stack.publish(shape(64).events(1500))?);
    stack.wait_caught_up_alive(&mut ingest, wait).await?;
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    promote_standby(&stack.pg).await?;
    events.extend(stack.publish(shape(65).events(1500))?);
    let mut ingest = stack.spawn_ingest("after-promotion", &[])?;
    stack.wait_caught_up_alive(&mut ingest, wait).await?;
    stack.finish(vec![ingest], &events).await
}
