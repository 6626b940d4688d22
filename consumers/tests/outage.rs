//! Sink outages on the real stack, in a test binary of its own because it stops the shared ClickHouse
//! and restarts the shared PostgreSQL (cargo runs test binaries one after another, so no other test
//! sees the outage). While traffic flows: ClickHouse is stopped for 12 s, then PostgreSQL is restarted.
//! The ingest process must survive, keep its memory under the configured budget (pausing fetching while
//! over it, without leaving the group), catch up after recovery, and end exact.

#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_loadtest::verify::Expected;
use support::{metric_value, TestStack, TrafficShape};

fn stack_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/stack.sh")
}

fn stack(args: &[&str]) -> anyhow::Result<()> {
    // ClickHouse 18.16 can take over 20 s to honour SIGTERM while clients hold keep-alive connections;
    // an outage test wants it gone now, so SIGKILL follows after 2 s.
    let status = Command::new("bash")
        .arg(stack_script())
        .args(args)
        .env("SLUICE_STOP_TIMEOUT", "2")
        .status()?;
    anyhow::ensure!(status.success(), "infra/stack.sh {args:?} failed");
    Ok(())
}

/// Brings every component back even if the test fails half-way.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = stack(&["up"]);
    }
}

/// The tests of this binary stop shared servers: one at a time.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_outages_pause_and_recover_exactly() -> anyhow::Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let _restore = Restore;
    let test = TestStack::new("outage", 3).await?;
    let budget: u64 = 4 * 1024 * 1024;
    let mut ingest = test.spawn_ingest(
        "main",
        &[("SLUICE_MAX_BUFFERED_BYTES", &budget.to_string())],
    )?;
    let baseline = {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ingest.rss_bytes().unwrap_or(0)
    };
    let traffic = test.start_traffic(TrafficShape::seed(21).rate(4000).events(160_000))?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    stack(&["stop", "clickhouse"])?;
    let outage_started = Instant::now();
    let mut paused_seen = false;
    let mut peak_rss = 0;
    // The second in which ClickHouse went down: every raw row it holds from before has an
    // `ingested_at` up to this one; rows inserted after it comes back have a later one.
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut in_postgres_during = None;
    while outage_started.elapsed() < Duration::from_secs(12) {
        if in_postgres_during.is_none() && outage_started.elapsed() >= Duration::from_secs(4) {
            in_postgres_during = Some(test.events_in_postgres().await?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            ingest.alive(),
            "ingest died during the ClickHouse outage; log: {}",
            ingest.log.display()
        );
        peak_rss = peak_rss.max(ingest.rss_bytes().unwrap_or(0));
        let metrics = ingest.metrics().await?;
        paused_seen |= metric_value(&metrics, "sluice_consumer_paused", &[]) == 1.0;
    }
    stack(&["start", "clickhouse"])?;
    assert!(
        paused_seen,
        "fetching was never paused although ClickHouse was down for 12 s"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    stack(&["stop", "postgres"])?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ingest.alive(), "ingest died during the PostgreSQL outage");
    stack(&["start", "postgres"])?;

    let events = traffic.join()?;
    test.wait_caught_up(Duration::from_secs(240)).await?;
    // PostgreSQL commits a batch only once its ClickHouse insert returned, so what PostgreSQL held
    // 4 s into the outage is within what ClickHouse held when it went down.
    let in_clickhouse_before: u64 = test
        .ch
        .query(
            "SELECT uniqExact(event_id) FROM (
                 SELECT event_id FROM rank_events WHERE ingested_at <= toDateTime(?)
                 UNION ALL SELECT event_id FROM crawl_events WHERE ingested_at <= toDateTime(?)
                 UNION ALL SELECT event_id FROM click_events WHERE ingested_at <= toDateTime(?))",
        )
        .bind(stopped_at)
        .bind(stopped_at)
        .bind(stopped_at)
        .fetch_one()
        .await?;
    let in_postgres_during = in_postgres_during.expect("sampled 4 s into the outage");
    println!("4 s into the outage: {in_postgres_during} events in PostgreSQL; {in_clickhouse_before} in ClickHouse when it stopped");
    assert!(
        u64::try_from(in_postgres_during)? <= in_clickhouse_before,
        "PostgreSQL held {in_postgres_during} events during the outage, ClickHouse only {in_clickhouse_before}"
    );
    let metrics = ingest.metrics().await?;
    let retries = metric_value(
        &metrics,
        "sluice_sink_retries_total",
        &[("sink", "clickhouse")],
    );
    assert!(retries > 0.0, "no ClickHouse retries recorded");
    // 160,000 keys in the dedup windows (about 7 MB of tables) cannot fit the 2 MiB the batches and
    // windows share: the batches were held to their floor, ingest said so, and (below) lost nothing.
    assert!(
        ingest
            .log_text()
            .contains("the dedup windows hold nearly all of max_buffered_bytes"),
        "no warning that the dedup windows crowd the budget; log: {}",
        ingest.log.display()
    );
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success());
    // The buffers are capped at 4 MiB; the process as a whole (librdkafka's fetch queues, the runtime,
    // allocator slack) must stay within a fixed allowance above its idle size.
    let allowance = 200 * 1024 * 1024;
    println!("rss idle {baseline} B, peak during outage {peak_rss} B");
    assert!(
        peak_rss < baseline + allowance,
        "rss grew from {baseline} to {peak_rss} bytes"
    );
    test.assert_matches(&Expected::from_events(&events)).await?;
    test.cleanup().await
}

/// Tiered ingestion: an OLTP group (PostgreSQL aggregates only) and an OLAP group (ClickHouse raw
/// events; PostgreSQL keeps just its offsets) read the same topics. With ClickHouse down, the product
/// aggregates keep arriving; when it returns, the OLAP group catches up; both end exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_groups_keep_postgres_fresh_while_clickhouse_is_down() -> anyhow::Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let _restore = Restore;
    let test = TestStack::new("tiered", 3).await?;
    let (oltp_group, olap_group) = (
        format!("{}-oltp", test.group),
        format!("{}-olap", test.group),
    );
    let oltp = test.spawn_ingest(
        "oltp",
        &[
            ("SLUICE_GROUP_ID", &oltp_group),
            ("SLUICE_CLICKHOUSE_ENABLED", "false"),
        ],
    )?;
    let olap = test.spawn_ingest(
        "olap",
        &[
            ("SLUICE_GROUP_ID", &olap_group),
            ("SLUICE_POSTGRES_AGGREGATES_ENABLED", "false"),
        ],
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack(&["stop", "clickhouse"])?;
    let events = test.publish(TrafficShape::seed(61).rate(3000).events(15_000))?;
    let distinct = events
        .iter()
        .map(|e| e.event_id())
        .collect::<std::collections::HashSet<_>>()
        .len() as i64;
    let published_at = Instant::now();
    test.wait_group_caught_up(&oltp_group, Duration::from_secs(60))
        .await?;
    let fresh_after = published_at.elapsed();
    assert_eq!(
        test.events_in_postgres().await?,
        distinct,
        "aggregates complete while ClickHouse is down"
    );
    let high = sluice_loadtest::kit::kafka::high_watermarks(&test.brokers, &test.topic_names())?;
    let olap_stored = sluice_loadtest::kit::kafka::stored_offsets(&test.pg, &olap_group).await?;
    assert!(
        sluice_loadtest::kit::kafka::lag(&high, &olap_stored) > 0,
        "the OLAP group cannot have finished without ClickHouse"
    );
    println!(
        "postgres aggregates complete {:.2} s after the last event was published, ClickHouse down",
        fresh_after.as_secs_f64()
    );
    stack(&["start", "clickhouse"])?;
    test.wait_group_caught_up(&olap_group, Duration::from_secs(180))
        .await?;
    for member in [oltp, olap] {
        assert!(member.terminate(Duration::from_secs(30))?.success());
    }
    test.assert_matches(&Expected::from_events(&events)).await?;
    test.cleanup().await
}
