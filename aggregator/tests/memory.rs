//! The memory budget's byte count (`PartitionBatch::approx_bytes`) against what the allocator really
//! holds. A counting global allocator (this test binary's own) tracks live bytes, each block rounded up
//! to 16 bytes as small-object allocators do; a batch of realistic synthetic events, decoded from JSON
//! as ingest decodes them, must be within ±25 % of its estimate. (The earlier estimate — a flat 256
//! bytes per record plus string lengths — counted 0.57 of the allocated bytes here: 748 per event.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use chrono::{DateTime, Utc};
use sluice_aggregator::PartitionBatch;
use sluice_producers::synth::{Synth, SynthConfig};
use sluice_schemas::codec::{decode, encode, Encoding};
use sluice_schemas::{EventKind, Limits};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn charged(size: usize) -> isize {
    size.div_ceil(16) as isize * 16
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(charged(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(charged(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            charged(new_size) - charged(layout.size()),
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).expect("time")
}

/// Adds every payload to the batch, decoding each as ingest does.
fn fill(batch: &mut PartitionBatch, payloads: &[(EventKind, Vec<u8>)], first: i64) {
    let limits = Limits::default();
    for (i, (kind, bytes)) in payloads.iter().enumerate() {
        let event = decode(*kind, Encoding::Json, bytes, &limits, now()).expect("valid event");
        batch.add(event, first + i as i64);
    }
}

#[test]
fn budget_estimate_tracks_allocated_bytes() {
    const N: usize = 50_000;
    let mut synth = Synth::new(
        SynthConfig {
            tenants: 1000,
            campaigns_per_tenant: 10,
            keywords_per_campaign: 100,
            links_per_tenant: 500,
            visitors_per_tenant: 2000,
            ..SynthConfig::default()
        },
        "memory-test",
    )
    .expect("synth");
    let payloads: Vec<_> = (0..2 * N)
        .map(|_| {
            let e = synth.next(now());
            (e.kind(), encode(&e, Encoding::Json))
        })
        .collect();

    // A first batch, then its successor: the steady state, where vectors start at the last batch's size.
    let start = live();
    let mut first = PartitionBatch::new("t", 0, Some(0));
    fill(&mut first, &payloads[..N], 0);
    let first_bytes = live() - start;

    let start = live();
    let mut second = first.successor();
    drop(first);
    fill(&mut second, &payloads[N..], N as i64);
    let second_bytes = live() - start + first_bytes;

    let ratio = second.approx_bytes as f64 / second_bytes as f64;
    eprintln!(
        "allocated {second_bytes} bytes ({} per event), estimate {} (ratio {ratio:.3})",
        second_bytes / N as isize,
        second.approx_bytes
    );
    assert!(
        (0.8..=1.25).contains(&ratio),
        "estimate {} vs allocated {second_bytes} bytes: ratio {ratio:.2}",
        second.approx_bytes
    );
}
