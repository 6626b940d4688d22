//! Aggregation micro-benchmarks: the poll thread's per-event work after decoding.
//!
//! - `offer/no_dedup` and `offer/dedup`: [`PartitionBatch::offer`] of 10,000 decoded events (70 %
//!   clicks, 20 % ranks, 10 % crawls over 50 tenants with skewed keys, as the synthetic traffic is)
//!   into a fresh batch, without and with a [`DedupWindow`].
//! - `dedup/event_key` and `dedup/observe`: hashing an idempotency key, and one window decision.
//! - `dedup/encode_entries`: packing a flush's dedup keys for the PostgreSQL sink (`sluice_dedup`).
//!
//! The sinks' row encoders (ClickHouse RowBinary rows, PostgreSQL `unnest` arrays) are private to
//! their modules, so they are not measured here. Run with `cargo bench -p sluice-aggregator`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_aggregator::dedup::{encode_entries, event_key, DedupWindow};
use sluice_aggregator::PartitionBatch;
use sluice_schemas::{ClickEvent, CrawlEvent, Event, RankEvent, SCHEMA_VERSION};

const EVENTS: usize = 10_000;
const WINDOW_MS: i64 = 900_000;

/// Deterministic, skewed traffic: a few hot keys, a long tail (i*i mod n).
fn traffic() -> Vec<Event> {
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

fn bench_offer(c: &mut Criterion) {
    let events = traffic();
    let ts0 = 1_780_000_000_000i64;
    let mut group = c.benchmark_group("offer");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("no_dedup", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut batch = PartitionBatch::new("click-events", 0, Some(0));
                for (i, e) in events.into_iter().enumerate() {
                    batch.offer(e, i as i64, ts0 + i as i64, None);
                }
                batch
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("dedup", |b| {
        b.iter_batched(
            || (events.clone(), DedupWindow::new(WINDOW_MS, ts0)),
            |(events, mut window)| {
                let mut batch = PartitionBatch::new("click-events", 0, Some(0));
                for (i, e) in events.into_iter().enumerate() {
                    batch.offer(e, i as i64, ts0 + i as i64, Some(&mut window));
                }
                (batch, window)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_dedup(c: &mut Criterion) {
    let keys: Vec<u128> = (0..EVENTS)
        .map(|i| event_key("tenant-042", &format!("load-20260101000000-g1-{i}")))
        .collect();
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(1));
    group.bench_function("event_key", |b| {
        b.iter(|| {
            event_key(
                std::hint::black_box("tenant-042"),
                std::hint::black_box("load-20260101000000-g1-1234567"),
            )
        })
    });
    // A window that already holds 100,000 keys, as in steady state; each observe is a new key.
    let mut window = DedupWindow::new(WINDOW_MS, 0);
    for i in 0..100_000u128 {
        window.observe(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835), 0);
    }
    let mut next = 0usize;
    group.bench_function("observe", |b| {
        b.iter(|| {
            next += 1;
            window.observe(keys[next % EVENTS] ^ (next as u128) << 64, next as i64)
        })
    });
    let entries: Vec<(u128, i64)> = keys.iter().map(|&k| (k, WINDOW_MS)).collect();
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("encode_entries", |b| {
        b.iter(|| encode_entries(std::hint::black_box(&entries)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_offer, bench_dedup
}
criterion_main!(benches);
