//! Scale-out on Kafka's consumer groups: the same backlog drained by one instance, then (in a second
//! group and database) by three instances sharing the partitions with cooperative-sticky assignment.
//! Both must be exact; the throughput of each run and each instance's share are printed.

use std::time::{Duration, Instant};

use sluice_loadtest::verify::Expected;

use sluice_schemas::Event;

use crate::support::{metric_value, Ingest, TestStack, TrafficShape};

const BACKLOG: usize = 60_000;

/// Starts `n` members and waits until the group's 18 partitions are spread over all of them.
async fn start_members(stack: &TestStack, n: usize) -> anyhow::Result<Vec<Ingest>> {
    let members: Vec<Ingest> = (0..n)
        .map(|i| stack.spawn_ingest(&format!("member-{i}"), &[]))
        .collect::<anyhow::Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut owned = Vec::new();
        for member in &members {
            let metrics = member.metrics().await.unwrap_or_default();
            owned.push(metric_value(
                &metrics,
                "sluice_consumer_assigned_partitions",
                &[],
            ));
        }
        if owned.iter().sum::<f64>() == 18.0 && owned.iter().all(|&p| p > 0.0) {
            return Ok(members);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "partitions not spread over {n} members: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Publishes the backlog, waits for the group to drain it; returns (events, seconds, per-member
/// records consumed).
async fn drain(
    stack: &TestStack,
    members: &[Ingest],
    seed: u64,
) -> anyhow::Result<(Vec<Event>, f64, Vec<f64>)> {
    let started = Instant::now();
    let events = stack.publish(
        TrafficShape::seed(seed)
            .rate(1_000_000)
            .events(BACKLOG)
            .resends(0, 0),
    )?;
    stack.wait_caught_up(Duration::from_secs(180)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut consumed = Vec::new();
        for member in members {
            let metrics = member.metrics().await?;
            consumed.push(metric_value(
                &metrics,
                "sluice_ingest_records_consumed_total",
                &[],
            ));
        }
        if consumed.iter().sum::<f64>() >= BACKLOG as f64 || Instant::now() > deadline {
            return Ok((events, seconds, consumed));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_then_three_instances_drain_the_same_backlog_exactly() -> anyhow::Result<()> {
    let one = TestStack::new("scale1", 6).await?;
    let three = TestStack::new("scale3", 6).await?;
    let mut results = Vec::new();
    for (stack, n) in [(&one, 1), (&three, 3)] {
        let members = start_members(stack, n).await?;
        let (events, seconds, consumed) = drain(stack, &members, 51).await?;
        for member in members {
            assert!(member.terminate(Duration::from_secs(30))?.success());
        }
        // Every record read exactly once across the group, by members that all took part.
        assert_eq!(consumed.iter().sum::<f64>(), BACKLOG as f64, "{consumed:?}");
        assert!(consumed.iter().all(|&c| c > 0.0), "{consumed:?}");
        stack
            .assert_matches(&Expected::from_events(&events))
            .await?;
        println!(
            "{n} instance(s): {BACKLOG} events published and durably aggregated in {seconds:.2} s \
             ({:.0} events/s); records per member {consumed:?}",
            BACKLOG as f64 / seconds
        );
        results.push(seconds);
    }
    one.cleanup().await?;
    three.cleanup().await
}
