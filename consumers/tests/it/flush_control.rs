//! The lag-adaptive flush controller on the real stack: with a backlog waiting, the flush interval
//! rises above its minimum and comes back to it once the backlog is drained; the same backlog is also
//! drained with the interval fixed at the minimum, and the two drain times are printed (the ratio is a
//! measurement, reported in docs/flush-controller.md, not an assertion: timing on a shared 2-core
//! machine is not a unit-test matter).

use std::time::{Duration, Instant};

use sluice_loadtest::verify::Expected;

use crate::support::{metric_value, TestStack, TrafficShape};

const BACKLOG: usize = 400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_rises_with_a_backlog_and_returns_to_the_minimum() -> anyhow::Result<()> {
    let fixed = TestStack::new("ctl_fixed", 3).await?;
    let adaptive = TestStack::new("ctl_adaptive", 3).await?;
    let shape = TrafficShape::seed(31)
        .rate(1_000_000)
        .events(BACKLOG)
        .resends(0, 0);
    let (a, b) = (fixed.start_traffic(shape)?, adaptive.start_traffic(shape)?);
    let (fixed_events, adaptive_events) = (a.join()?, b.join()?);

    let started = Instant::now();
    let ingest = fixed.spawn_ingest(
        "fixed",
        &[
            ("SLUICE_FLUSH_INTERVAL_MAX_MS", "1000"),
            ("SLUICE_FLUSH_INTERVAL_MS", "1000"),
        ],
    )?;
    fixed.wait_caught_up(Duration::from_secs(300)).await?;
    let fixed_drain = started.elapsed();
    assert!(ingest.terminate(Duration::from_secs(30))?.success());

    let started = Instant::now();
    // Lag bounds scaled to this backlog (the defaults, 10k–1M records, suit 100k events/s), and
    // librdkafka statistics every 200 ms instead of every second: the debug build reads the whole
    // backlog in a few seconds, and with the suite running on two cores a 1 s statistics tick can miss
    // most of it — the test must still see the controller react.
    let config = adaptive.log_dir.join("sluice.toml");
    std::fs::write(
        &config,
        "[kafka_properties]\n\"statistics.interval.ms\" = \"200\"\n",
    )?;
    let config = config.display().to_string();
    let ingest = adaptive.spawn_ingest(
        "adaptive",
        &[
            ("SLUICE_CONFIG", config.as_str()),
            ("SLUICE_FLUSH_INTERVAL_MS", "1000"),
            ("SLUICE_FLUSH_LAG_LOW", "1000"),
            ("SLUICE_FLUSH_LAG_HIGH", "100000"),
        ],
    )?;
    let mut peak_interval = 0.0f64;
    let mut drained = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(metrics) = ingest.metrics().await {
            peak_interval =
                peak_interval.max(metric_value(&metrics, "sluice_flush_interval_seconds", &[]));
        }
        if drained.is_none() {
            let high = sluice_loadtest::kit::kafka::high_watermarks(
                &adaptive.brokers,
                &adaptive.topic_names(),
            )?;
            let stored =
                sluice_loadtest::kit::kafka::stored_offsets(&adaptive.pg, &adaptive.group).await?;
            if sluice_loadtest::kit::kafka::lag(&high, &stored) == 0 {
                drained = Some(started.elapsed());
            }
        }
        let interval = ingest
            .metrics()
            .await
            .map(|m| metric_value(&m, "sluice_flush_interval_seconds", &[]))
            .unwrap_or(0.0);
        if drained.is_some() && interval == 1.0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no drain / no return to the minimum within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let adaptive_drain = drained.unwrap_or_default();
    assert!(ingest.terminate(Duration::from_secs(30))?.success());

    println!(
        "backlog of {BACKLOG} events: fixed 1 s interval drained in {:.2} s, adaptive (peak interval {peak_interval:.2} s) in {:.2} s; ratio fixed/adaptive = {:.2}",
        fixed_drain.as_secs_f64(),
        adaptive_drain.as_secs_f64(),
        fixed_drain.as_secs_f64() / adaptive_drain.as_secs_f64()
    );
    assert!(
        peak_interval > 1.0,
        "the interval never rose above the minimum (peak {peak_interval})"
    );
    fixed
        .assert_matches(&Expected::from_events(&fixed_events))
        .await?;
    adaptive
        .assert_matches(&Expected::from_events(&adaptive_events))
        .await?;
    fixed.cleanup().await?;
    adaptive.cleanup().await
}
