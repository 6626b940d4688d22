//! Aggregation micro-benchmarks: the poll thread's per-event work after decoding.
//!
//! - `offer/no_dedup` and `offer/dedup`: [`PartitionBatch::offer`] of 10,000 decoded events (70 %
//!   clicks, 20 % ranks, 10 % crawls over 50 tenants with skewed keys, as the synthetic traffic is)
//!   into a fresh batch, without and with a [`DedupWindow`].
//! - `dedup/event_key` and `dedup/observe`: hashing an idempotency key, and one window decision.
//! - `dedup/encode_entries`: packing a flush's dedup keys for the PostgreSQL sink (`sluice_dedup`).
//!
//! The sinks' encoders of the same traffic are benchmarked in `sluice-sinks` (`benches/encode.rs`).
//!
//! Run with `cargo bench -p sluice-aggregator`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_aggregator::dedup::{encode_entries, event_key, DedupWindow};
use sluice_aggregator::PartitionBatch;

#[path = "support/traffic.rs"]
mod traffic;
use traffic::{traffic, EVENTS};

const WINDOW_MS: i64 = 900_000;

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
                    batch
                        .offer(e, i as i64, ts0 + i as i64, None)
                        .expect("fits");
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
                    batch
                        .offer(e, i as i64, ts0 + i as i64, Some(&mut window))
                        .expect("fits");
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
    config = traffic::quick();
    targets = bench_offer, bench_dedup
}
criterion_main!(benches);
