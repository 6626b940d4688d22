//! Exactness under duplicates, crashes, rebalances and rewinds (the guarantees in
//! docs/guarantees.md). Each test publishes traffic while `sluice-ingest` processes run, injects its
//! fault, and ends with the independent verifier: PostgreSQL aggregates and ClickHouse raw rows must
//! equal what the published events imply, each `event_id` counted once.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use sluice_consumers::metrics::{DUPLICATES, RECORDS_CONSUMED};
use sluice_loadtest::verify::Expected;

use crate::support::{metric_value, TestStack, TrafficShape, SETTLE};

fn distinct(events: &[sluice_schemas::Event]) -> usize {
    events
        .iter()
        .map(|e| e.event_id())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Every event published 2–3 times, the copies interleaved with new events, while ingest runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_storm_counts_each_event_once() -> anyhow::Result<()> {
    let stack = TestStack::new("dupstorm", 3).await?;
    let ingest = stack.spawn_ingest("main", &[])?;
    let traffic =
        stack.start_traffic(TrafficShape::seed(11).rate(2000).events(6000).resends(1, 2))?;
    let events = traffic.join()?;
    let unique = distinct(&events);
    assert_eq!(unique, 6000);
    assert!(events.len() >= 2 * unique, "every event at least twice");
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    let dropped = (events.len() - unique) as f64;
    let metrics = ingest.metrics_after(DUPLICATES, dropped, SETTLE).await?;
    assert_eq!(metric_value(&metrics, DUPLICATES, &[]), dropped);
    stack.finish(vec![ingest], &events).await
}

/// SIGKILL at random moments, three times, restarting each time, while traffic (with re-sends) flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_lose_nothing_and_count_nothing_twice() -> anyhow::Result<()> {
    let stack = TestStack::new("crash", 3).await?;
    let traffic = stack.start_traffic(TrafficShape::seed(12).rate(1500).events(22_500))?;
    let seed: u64 = rand::rng().random();
    println!("crash moments seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ingest = stack.spawn_ingest("0", &[])?;
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..4000))).await;
        ingest.crash()?;
        ingest = stack.spawn_ingest(&round.to_string(), &[])?;
    }
    let events = traffic.join()?;
    stack.wait_caught_up(Duration::from_secs(180)).await?;
    stack.finish(vec![ingest], &events).await
}

/// Three members of one group join and leave (gracefully and not) while traffic flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_lose_nothing_and_count_nothing_twice() -> anyhow::Result<()> {
    let stack = TestStack::new("rebalance", 4).await?;
    let traffic = stack.start_traffic(TrafficShape::seed(13).rate(1500).events(24_000))?;
    let step = Duration::from_millis(2500);
    let a = stack.spawn_ingest("a", &[])?;
    tokio::time::sleep(step).await;
    let b = stack.spawn_ingest("b", &[])?;
    tokio::time::sleep(step).await;
    let c = stack.spawn_ingest("c", &[])?;
    tokio::time::sleep(step).await;
    assert!(
        a.terminate(Duration::from_secs(30))?.success(),
        "a leaves gracefully"
    );
    tokio::time::sleep(step).await;
    let a2 = stack.spawn_ingest("a2", &[])?;
    tokio::time::sleep(step).await;
    b.crash()?; // leaves without a goodbye: its partitions move after the session times out
    let events = traffic.join()?;
    stack.wait_caught_up(Duration::from_secs(180)).await?;
    stack.finish(vec![c, a2], &events).await
}

/// Resetting the group's Kafka offsets to the beginning changes nothing (the stored offsets rule), and
/// even moving the stored offsets back (a manual rewind inside the dedup window) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewinds_change_nothing() -> anyhow::Result<()> {
    let stack = TestStack::new("rewind", 3).await?;
    let events = stack.publish(TrafficShape::seed(14).rate(5000).events(5000))?;
    let ingest = stack.spawn_ingest("first", &[])?;
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    let expected = Expected::from_events(&events);
    stack.assert_matches(&expected).await?;

    // 1. kafka-consumer-groups --reset-offsets --to-earliest, done through the admin API.
    sluice_loadtest::kit::kafka::reset_group_offsets(
        &stack.brokers,
        &stack.group,
        &stack.topic_names(),
    )?;
    let ingest = stack.spawn_ingest("after-kafka-reset", &[])?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    let metrics = ingest.metrics().await?;
    assert_eq!(metric_value(&metrics, RECORDS_CONSUMED, &[]), 0.0);
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    stack.assert_matches(&expected).await?;

    // 2. The stored offsets themselves moved back to 0: every record is read again, and every one is
    //    recognised by the persisted dedup window.
    sqlx::query("UPDATE sluice_offsets SET next_offset = 0 WHERE consumer_group = $1")
        .bind(&stack.group)
        .execute(&stack.pg)
        .await?;
    let ingest = stack.spawn_ingest("after-stored-rewind", &[])?;
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    let total = events.len() as f64;
    let metrics = ingest
        .metrics_after(RECORDS_CONSUMED, total, SETTLE)
        .await?;
    assert_eq!(metric_value(&metrics, DUPLICATES, &[]), total);
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    stack.assert_matches(&expected).await?;
    stack.cleanup().await
}
