//! The benchmarks' traffic: 10,000 deterministic decoded events (70 % clicks, 20 % ranks, 10 % crawls
//! over 50 tenants with skewed keys, as the synthetic traffic is). Shared by this crate's aggregation
//! benchmark and `sluice-sinks`' encoder benchmark (included there by path), with their Criterion
//! settings.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::Criterion;
use sluice_schemas::{ClickEvent, CrawlEvent, Event, RankEvent, SCHEMA_VERSION};

/// Short runs: 10 samples, 0.5 s warm-up, 2 s measured per benchmark.
pub(crate) fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

pub(crate) const EVENTS: usize = 10_000;

/// Deterministic, skewed traffic: a few hot keys, a long tail (i*i mod n).
pub(crate) fn traffic() -> Vec<Event> {
    let base = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_else(Utc::now);
    (0..EVENTS)
        .map(|i| {
            let skew = (i * i) % 997;
            let tenant_id = format!("tenant-{:03}", skew % 50);
            let event_id = format!("load-20260101000000-g1-{i}");
            let occurred_at = base - TimeDelta::seconds(((i * 7919) % 259_200) as i64);
            match i % 10 {
                0..=6 => Event::Click(ClickEvent {
                    schema_version: SCHEMA_VERSION,
                    event_id,
                    tenant_id,
                    occurred_at,
                    short_code: format!("s{}", skew % 200),
                    referrer: Some("https://www.google.com/".into()),
                    country: Some("us".into()),
                    user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:125.0)".into()),
                    visitor_id: Some(format!("v{}", skew % 1000)),
                }),
                7 | 8 => Event::Rank(RankEvent {
                    schema_version: SCHEMA_VERSION,
                    event_id,
                    tenant_id,
                    occurred_at,
                    campaign_id: format!("c{}", skew % 5),
                    keyword: format!("best running shoes {}", skew % 50),
                    geo: "us".into(),
                    engine: "google".into(),
                    device: if i % 2 == 0 { "desktop" } else { "mobile" }.into(),
                    url: Some("https://www.example.com/shoes".into()),
                    position: Some((skew % 100) as i32 + 1),
                }),
                _ => Event::Crawl(CrawlEvent {
                    schema_version: SCHEMA_VERSION,
                    event_id,
                    tenant_id,
                    occurred_at,
                    campaign_id: format!("c{}", skew % 5),
                    url: format!("https://www.example{}.com/page/{i}", skew % 8),
                    status_code: if i % 13 == 0 { 503 } else { 200 },
                    fetch_ms: (i % 900) as i64,
                    bytes: (i * 37 % 100_000) as i64,
                    content_hash: None,
                }),
            }
        })
        .collect()
}
