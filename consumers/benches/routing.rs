//! The misrouting check's per-record cost ([`sluice_consumers::routing::check`]): for 10,000 keys like
//! the synthetic traffic's (`tenant-NNN/campaign-NNNN`), compare the key with the event's tenant and
//! entity and hash it with Kafka's murmur2 modulo 12 partitions — the work ingest adds to every decoded
//! record (docs/guarantees.md, "Duplicates across partitions").
//!
//! `partition_maps/std_siphash` and `partition_maps/foldhash`: the three map lookups ingest makes per
//! record by (topic index, partition) — batch, idempotency window, partition count — for the same
//! 10,000 records over 3 topics × 12 partitions, with std's SipHash and with hashbrown's default
//! hasher (what `ingest::state::PartitionMap` uses).
//!
//! Run with `cargo bench -p sluice-consumers --bench routing`.

use std::collections::HashMap;
use std::hash::BuildHasher;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_consumers::routing::{check, kafka_partition};

const RECORDS: usize = 10_000;
const PARTITIONS: i32 = 12;

fn routing(c: &mut Criterion) {
    let records: Vec<(String, String, String, i32)> = (0..RECORDS)
        .map(|i| {
            let tenant = format!("tenant-{:03}", (i * i) % 50);
            let entity = format!("campaign-{:04}", i % 2_000);
            let key = format!("{tenant}/{entity}");
            let partition = kafka_partition(key.as_bytes(), PARTITIONS);
            (key, tenant, entity, partition)
        })
        .collect();
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("check", |b| {
        b.iter(|| {
            let mut misrouted = 0usize;
            for (key, tenant, entity, partition) in &records {
                misrouted += usize::from(
                    check(
                        Some(std::hint::black_box(key.as_bytes())),
                        tenant,
                        entity,
                        *partition,
                        Some(PARTITIONS),
                    )
                    .is_some(),
                );
            }
            assert_eq!(misrouted, 0);
            misrouted
        })
    });
    group.finish();
}

/// Stand-ins for ingest's per-partition maps: batches, idempotency windows, partition counts.
type Maps<S> = (
    HashMap<(usize, i32), u64, S>,
    HashMap<(usize, i32), u64, S>,
    HashMap<usize, i32, S>,
);

/// Three lookups per record, as `handle` makes them, summed so that none is optimized away.
fn lookups<S: BuildHasher>(records: &[(usize, i32)], (batches, dedup, counts): &Maps<S>) -> u64 {
    let mut sum = 0u64;
    for key in records {
        let key = std::hint::black_box(key);
        sum += batches.get(key).copied().unwrap_or_default();
        sum += dedup.get(key).copied().unwrap_or_default();
        sum += counts.get(&key.0).map_or(0, |&n| n as u64);
    }
    sum
}

fn partition_maps(c: &mut Criterion) {
    let keys: Vec<(usize, i32)> = (0..3)
        .flat_map(|t| (0..PARTITIONS).map(move |p| (t, p)))
        .collect();
    let records: Vec<(usize, i32)> = (0..RECORDS)
        .map(|i| keys[(i * 7 + i / 100) % keys.len()])
        .collect();
    fn maps<S: BuildHasher + Default>(keys: &[(usize, i32)]) -> Maps<S> {
        let mut batches = HashMap::default();
        let mut dedup = HashMap::default();
        let mut counts = HashMap::default();
        for (i, &k) in keys.iter().enumerate() {
            batches.insert(k, i as u64);
            dedup.insert(k, 1);
            counts.insert(k.0, PARTITIONS);
        }
        (batches, dedup, counts)
    }
    // Each record finds its three entries: 0..36 + 1 + 12 summed over the records.
    let expected: u64 = records
        .iter()
        .map(|k| keys.iter().position(|x| x == k).unwrap() as u64 + 1 + PARTITIONS as u64)
        .sum();
    let mut group = c.benchmark_group("partition_maps");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let std_maps = maps::<std::hash::RandomState>(&keys);
    assert_eq!(lookups(&records, &std_maps), expected);
    group.bench_function("std_siphash", |b| b.iter(|| lookups(&records, &std_maps)));
    let fold_maps = maps::<hashbrown::DefaultHashBuilder>(&keys);
    assert_eq!(lookups(&records, &fold_maps), expected);
    group.bench_function("foldhash", |b| b.iter(|| lookups(&records, &fold_maps)));
    group.finish();
}

criterion_group!(benches, routing, partition_maps);
criterion_main!(benches);
