//! The misrouting check's per-record cost ([`sluice_consumers::routing::check`]): for 10,000 keys like
//! the synthetic traffic's (`tenant-NNN/campaign-NNNN`), compare the key with the event's tenant and
//! entity and hash it with Kafka's murmur2 modulo 12 partitions — the work ingest adds to every decoded
//! record (docs/guarantees.md, "Duplicates across partitions").
//!
//! Run with `cargo bench -p sluice-consumers --bench routing`.

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

criterion_group!(benches, routing);
criterion_main!(benches);
