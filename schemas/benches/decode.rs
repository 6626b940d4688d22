//! Codec micro-benchmarks: one record value of each kind, JSON and bincode, through
//! [`sluice_schemas::decode`] — parsing plus validation, the per-record work of ingest's poll thread
//! before aggregation — and (group `encode`) back through [`sluice_schemas::encode_into`], a
//! producer's per-record work before librdkafka. Run with `cargo bench -p sluice-schemas`;
//! `cargo test --all-targets` runs each once as a smoke test. Sample counts are kept small so the
//! suite stays quick.

use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_schemas::{
    decode, encode, encode_into, ClickEvent, CrawlEvent, Encoding, Event, Limits, RankEvent,
    SCHEMA_VERSION,
};

fn at(now: DateTime<Utc>) -> DateTime<Utc> {
    // Whole microseconds, an hour ago: what producers send.
    let micros = now.timestamp_micros() - 3_600_000_000;
    DateTime::from_timestamp_micros(micros).unwrap_or(now)
}

/// A realistic event of each kind (field sizes as the synthetic generator makes them).
fn events(now: DateTime<Utc>) -> [Event; 3] {
    [
        Event::Rank(RankEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "load-20260101000000-g1-1234567".into(),
            tenant_id: "tenant-042".into(),
            occurred_at: at(now),
            campaign_id: "tenant-042-campaign-3".into(),
            keyword: "best noise cancelling headphones near me".into(),
            geo: "us".into(),
            engine: "google".into(),
            device: "desktop".into(),
            url: Some("https://www.acme.com/headphones/noise-cancelling".into()),
            position: Some(7),
        }),
        Event::Crawl(CrawlEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "load-20260101000000-g1-1234568".into(),
            tenant_id: "tenant-042".into(),
            occurred_at: at(now),
            campaign_id: "tenant-042-campaign-3".into(),
            url: "https://WWW.Acme.com/products/standing-desk?ref=crawl&page=3".into(),
            status_code: 200,
            fetch_ms: 183,
            bytes: 48_213,
            content_hash: Some(
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            ),
        }),
        Event::Click(ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "load-20260101000000-g1-1234569".into(),
            tenant_id: "tenant-042".into(),
            occurred_at: at(now),
            short_code: "aB3xK9".into(),
            referrer: Some("https://news.ycombinator.com/".into()),
            country: Some("de".into()),
            user_agent: Some(
                "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0".into(),
            ),
            visitor_id: Some("tenant-042-visitor-1872".into()),
        }),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let now = Utc::now();
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for event in events(now) {
        for encoding in [Encoding::Json, Encoding::Bincode] {
            let bytes = encode(&event, encoding);
            let kind = event.kind();
            // Sanity: the value decodes back to the same event.
            assert_eq!(
                decode(kind, encoding, &bytes, &limits, now).ok(),
                Some(event.clone())
            );
            group.bench_function(format!("{}/{}", kind.as_str(), encoding.as_str()), |b| {
                b.iter(|| decode(kind, encoding, std::hint::black_box(&bytes), &limits, now))
            });
        }
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut buf = Vec::new();
    for event in events(Utc::now()) {
        for encoding in [Encoding::Json, Encoding::Bincode] {
            let name = format!("{}/{}", event.kind().as_str(), encoding.as_str());
            group.bench_function(name, |b| {
                b.iter(|| encode_into(std::hint::black_box(&event), encoding, &mut buf))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_decode, bench_encode
}
criterion_main!(benches);
