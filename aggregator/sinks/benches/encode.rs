//! The sinks' encoders, on the aggregation benchmark's traffic (`aggregator/benches/support/traffic.rs`).
//!
//! - `sink_encode/postgres`: the three upserts' bind parameters for the batch of those 10,000 events —
//!   rows sorted by key, `unnest` column arrays, PostgreSQL's binary encoding — all a flush sends to
//!   PostgreSQL for it but the statements' text ([`click_daily_arguments`] and its two siblings).
//! - `sink_encode/clickhouse`: [`ClickHouseSink::write_all`] of that batch to the `clickhouse` crate's
//!   in-process mock server: row structs, RowBinary serialization and the HTTP requests on loopback,
//!   with a server that only reads the bodies (what a flush costs ingest, not ClickHouse).
//! - `raw_sort/<kind>`: [`sorted_rows`] of one raw table's rows in six partitions' batches of 40,000
//!   synthetic events each (the load driver's default catalogue, `Shape::default()`: 1,000 tenants,
//!   mix rank 2 : crawl 1 : click 7) — the sort a flush under a sustained backlog does before its
//!   insert, with as many distinct keys.
//!
//! Run with `cargo bench -p sluice-sinks`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_aggregator::PartitionBatch;
use sluice_loadtest::load::generate::Shape;
use sluice_producers::Synth;
use sluice_schemas::EventKind;
use sluice_sinks::clickhouse::{sorted_rows, ClickHouseConfig, ClickHouseSink};
use sluice_sinks::postgres::{click_daily_arguments, crawl_hourly_arguments, rank_daily_arguments};

#[path = "../../benches/support/traffic.rs"]
mod traffic;
use traffic::{traffic, EVENTS};

/// The batch a flush would write for the 10,000 events of [`traffic`].
fn flushed_batch() -> PartitionBatch {
    let mut batch = PartitionBatch::new("click-events", 0, Some(0));
    for (i, e) in traffic().into_iter().enumerate() {
        batch
            .offer(e, i as i64, 1_780_000_000_000 + i as i64, None)
            .expect("fits its ClickHouse columns");
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
        cluster: None,
        ca_file: None,
    })
    .expect("the mock's URL is valid");
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

/// Six partitions' batches of synthetic traffic (see the module documentation).
fn backlog_batches() -> Vec<PartitionBatch> {
    const PARTITIONS: usize = 6;
    const PER_PARTITION: usize = 40_000;
    // Generator 0 of the load driver's default catalogue (seed 42).
    let cfg = Shape::default()
        .synth_config(0)
        .expect("the defaults are valid");
    let mut synth = Synth::new(cfg, "bench").expect("valid settings");
    let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("in range");
    let mut batches: Vec<PartitionBatch> = (0..PARTITIONS)
        .map(|p| PartitionBatch::new("events", p as i32, Some(0)))
        .collect();
    for i in 0..PARTITIONS * PER_PARTITION {
        let batch = &mut batches[i % PARTITIONS];
        let offset = (i / PARTITIONS) as i64;
        batch
            .offer(synth.next(now), offset, 1_780_000_000_000 + offset, None)
            .expect("fits its ClickHouse columns");
    }
    batches
}

fn bench_raw_sort(c: &mut Criterion) {
    let batches = backlog_batches();
    let refs: Vec<&PartitionBatch> = batches.iter().collect();
    let mut group = c.benchmark_group("raw_sort");
    for kind in EventKind::ALL {
        let rows: usize = refs.iter().map(|b| b.rows_of(kind).len()).sum();
        eprintln!("raw_sort/{kind}: {rows} rows");
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(kind.as_str(), |b| {
            b.iter(|| sorted_rows(std::hint::black_box(&refs), kind).len())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = traffic::quick();
    targets = bench_sink_encode, bench_raw_sort
}
criterion_main!(benches);
