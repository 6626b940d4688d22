//! Did every published event land exactly once? Two checks, after ingest has drained and stopped:
//!
//! - **Totals** (always; a few SQL aggregates): per kind, the PostgreSQL count column summed over its
//!   aggregate table (`sum(checks)` of `rank_daily`, `sum(pages)` of `crawl_hourly`, `sum(clicks)` of
//!   `click_daily`) and ClickHouse's `count()` of the raw table read `FINAL` must equal the number of
//!   distinct events the generators published of that kind, and `crawl_fetches` (the one table a
//!   materialized view fills; the rollups are views over the raw tables since ClickHouse migration
//!   0005) must hold each crawl once. Every event id is unique, and a run with a failed delivery is
//!   reported as such.
//! - **Full** (`--verify full`): the project's independent verifier. The generators' events are
//!   regenerated exactly from their seeds, run ids and clock logs ([`generate::regenerate`]), folded by
//!   [`Expected::from_events`], and compared row by row with what [`Actual::read`] finds in both
//!   databases. Costs memory (about 1 kB per event for both sides) and a minute or two at millions of
//!   events.

use std::time::Instant;

use anyhow::Context;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sluice_schemas::{Event, EventKind};
use sqlx::PgPool;

use super::generate::{self, GenSummary, Shape};
use crate::verify::{diff, Actual, Expected};

/// Per kind: rank, crawl, click.
pub type PerKind = [u64; 3];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub published: PerKind,
    /// sum(checks) of rank_daily, sum(pages) of crawl_hourly, sum(clicks) of click_daily.
    pub postgres: PerKind,
    /// count() FINAL of rank_events, crawl_events, click_events.
    pub clickhouse: PerKind,
    /// count() FINAL of crawl_fetches ([`CRAWL_FETCHES`]): its crawls.
    #[serde(default)]
    pub crawl_fetches: u64,
    pub ok: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FullCheck {
    pub events: u64,
    pub ok: bool,
    /// The first differences (empty when equal).
    pub differences: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Row, Deserialize)]
struct Count {
    n: u64,
}

/// The crawls in `crawl_fetches`, the one table a materialized view fills (`crawl_fetches_mv` on
/// `crawl_events`): a slim ReplacingMergeTree keyed on the event, so `FINAL` reads each crawl once.
pub const CRAWL_FETCHES: &str = "SELECT count() AS n FROM crawl_fetches FINAL";

/// The `n` that `sql` returns, counting `what`.
async fn count(ch: &clickhouse::Client, sql: &str, what: &str) -> anyhow::Result<u64> {
    let row: Count = ch
        .query(sql)
        .fetch_one()
        .await
        .with_context(|| format!("counting {what}"))?;
    Ok(row.n)
}

/// The totals check. `clickhouse` is `None` when ClickHouse is not part of the run.
pub async fn totals(
    published: PerKind,
    pg: &PgPool,
    ch: Option<&clickhouse::Client>,
) -> anyhow::Result<Totals> {
    let (rank, crawl, click): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(checks), 0) FROM rank_daily)::bigint,
                (SELECT coalesce(sum(pages), 0) FROM crawl_hourly)::bigint,
                (SELECT coalesce(sum(clicks), 0) FROM click_daily)::bigint",
    )
    .fetch_one(pg)
    .await
    .context("summing the PostgreSQL aggregates")?;
    let postgres = [rank, crawl, click].map(|v| u64::try_from(v).unwrap_or(0));
    let (mut clickhouse, mut crawl_fetches) = ([0u64; 3], 0);
    if let Some(ch) = ch {
        for (slot, table) in ["rank_events", "crawl_events", "click_events"]
            .iter()
            .enumerate()
        {
            let raw = format!("SELECT count() AS n FROM {table} FINAL");
            clickhouse[slot] = count(ch, &raw, table).await?;
        }
        crawl_fetches = count(ch, CRAWL_FETCHES, "crawl_fetches").await?;
    }
    let ok = postgres == published
        && (ch.is_none()
            || (clickhouse == published && crawl_fetches == published[EventKind::Crawl as usize]));
    Ok(Totals {
        published,
        postgres,
        clickhouse,
        crawl_fetches,
        ok,
    })
}

/// The full check: regenerate, fold, read back, compare.
pub async fn full(
    shape: &Shape,
    base_run_id: &str,
    generators: &[(GenSummary, Vec<(u64, i64)>)],
    sample_every: u64,
    pg: &PgPool,
    ch: &clickhouse::Client,
) -> anyhow::Result<FullCheck> {
    let started = Instant::now();
    let total: u64 = generators.iter().map(|(s, _)| s.sent).sum();
    let mut events: Vec<Event> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for (summary, clock) in generators {
        generate::regenerate(
            shape,
            base_run_id,
            summary.generator,
            clock,
            summary.sent,
            sample_every,
            |e| events.push(e),
        )
        .with_context(|| format!("regenerating generator {}", summary.generator))?;
    }
    let expected = Expected::from_events(&events);
    drop(events);
    let actual = Actual::read(pg, ch)
        .await
        .context("reading both databases")?;
    let differences = diff(&expected, &actual, 10);
    Ok(FullCheck {
        events: total,
        ok: differences.is_empty(),
        differences,
        seconds: started.elapsed().as_secs_f64(),
    })
}
