//! Aggregation micro-benchmarks: the poll thread's per-event work after decoding.
//!
//! - `offer/no_dedup` and `offer/dedup`: [`PartitionBatch::offer`] of 10,000 decoded events (70 %
//!   clicks, 20 % ranks, 10 % crawls over 50 tenants with skewed keys, as the synthetic traffic is)
//!   into a fresh batch, without and with a [`DedupWindow`].
//! - `dedup/event_key` and `dedup/observe`: hashing an idempotency key, and one window decision.
//! - `dedup/encode_entries`: packing a flush's dedup keys for the PostgreSQL sink (`sluice_dedup`).
//!
//! - `sink_encode/postgres`: the three upserts' bind parameters for the batch of those 10,000 events —
//!   rows sorted by key, `unnest` column arrays, PostgreSQL's binary encoding — all a flush sends to
//!   PostgreSQL for it but the statements' text ([`click_daily_arguments`] and its two siblings).
//! - `sink_encode/clickhouse`: [`ClickHouseSink::write_all`] of that batch to the `clickhouse` crate's
//!   in-process mock server: row structs, RowBinary serialization and the HTTP requests on loopback,
//!   with a server that only reads the bodies (what a flush costs ingest, not ClickHouse).
//!
//! Run with `cargo bench -p sluice-aggregator`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_aggregator::dedup::{encode_entries, event_key, DedupWindow};
use sluice_aggregator::sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use sluice_aggregator::sinks::postgres::{
    click_daily_arguments, crawl_hourly_arguments, rank_daily_arguments,
};
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

/// The batch a flush would write for the 10,000 events of [`traffic`].
fn flushed_batch() -> PartitionBatch {
    let mut batch = PartitionBatch::new("click-events", 0, Some(0));
    for (i, e) in traffic().into_iter().enumerate() {
        batch.offer(e, i as i64, 1_780_000_000_000 + i as i64, None);
    }
    batch
}

fn bench_sink_encode(c: &mut Criterion) {
    let batch = flushed_batch();
    eprintln!(
        "sink_encode: {} events, {} upsert rows (click_daily {}, rank_daily {}, crawl_hourly {})",
        batch.events(),
        batch.clicks.len() + batch.ranks.len() + batch.crawls.len(),
        batch.clicks.len(),
        batch.ranks.len(),
        batch.crawls.len()
    );
    let mut group = c.benchmark_group("sink_encode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("postgres", |b| {
        b.iter(|| {
            let batch = std::hint::black_box(&batch);
            (
                click_daily_arguments(batch).expect("encodes"),
                rank_daily_arguments(batch).expect("encodes"),
                crawl_hourly_arguments(batch).expect("encodes"),
            )
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let mock = runtime.block_on(async { clickhouse::test::Mock::new() });
    let sink = ClickHouseSink::new(&ClickHouseConfig {
        url: mock.url().to_owned(),
        database: "bench".into(),
        user: None,
        password: None,
        insert_streams: 2,
    });
    group.bench_function("clickhouse", |b| {
        b.iter(|| {
            // One request per table (10,000 events make one stream each).
            for _ in 0..3 {
                mock.add(clickhouse::test::handlers::record_ddl());
            }
            runtime
                .block_on(sink.write_all(&[std::hint::black_box(&batch)]))
                .expect("the mock accepts every insert")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_offer, bench_dedup, bench_sink_encode
}
criterion_main!(benches);
