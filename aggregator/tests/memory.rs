//! The memory budget's byte count (`PartitionBatch::approx_bytes`) against what the allocator really
//! holds. A counting global allocator (this test binary's own) tracks live bytes, each block rounded up
//! to 16 bytes as small-object allocators do; a batch of realistic synthetic events, decoded from JSON
//! as ingest decodes them, must be within ±25 % of its estimate. (The earlier estimate — a flat 256
//! bytes per record plus string lengths — counted 0.57 of the allocated bytes here: 748 per event.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sluice_aggregator::dedup::{event_key, DedupWindow};
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

/// The tests measure the one counter: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).expect("time")
}

/// Adds every payload to the batch, decoding each as ingest does.
fn fill(batch: &mut PartitionBatch, payloads: &[(EventKind, Vec<u8>)], first: i64) {
    let limits = Limits::default();
    for (i, (kind, bytes)) in payloads.iter().enumerate() {
        let event = decode(*kind, Encoding::Json, bytes, &limits, now()).expect("valid event");
        batch.add(event, first + i as i64).expect("fits");
    }
}

#[test]
fn budget_estimate_tracks_allocated_bytes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

/// The dedup window holds `dedup_window_secs` of keys, tens of millions at 100k events/s, so its bytes
/// per key decide ingest's memory in a long run. A key is a 16-byte hash with an 8-byte expiry; in a
/// hash table at hashbrown's load (7/8 at most, power-of-two bucket counts) plus one control byte a
/// bucket, 1.5 M keys take 2^21 buckets of 25 bytes: 35 bytes a key. (A set of keys beside a queue of
/// (key, expiry) pairs, the earlier layout, took 57 here.) The window's own count, `heap_bytes`, which
/// the gauge reports, must agree with the allocator.
#[test]
fn the_dedup_window_holds_a_key_in_at_most_40_bytes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const KEYS: usize = 1_500_000;
    let ids: Vec<String> = (0..KEYS).map(|i| format!("e-{i}")).collect();
    let start = live();
    // 900 s window, 100 keys per ms: nothing expires.
    let mut window = DedupWindow::new(900_000, 0);
    for (i, id) in ids.iter().enumerate() {
        assert!(window
            .observe(event_key("tenant-0001", id), (i / 100) as i64)
            .is_some());
    }
    let held = live() - start;
    assert_eq!(window.len(), KEYS);
    let per_key = held as f64 / KEYS as f64;
    eprintln!(
        "{KEYS} keys: {held} bytes, {per_key:.1} per key, the window counts {}",
        window.heap_bytes()
    );
    assert!(per_key <= 40.0, "{per_key:.1} bytes per key");
    let counted = window.heap_bytes() as f64 / held as f64;
    assert!(
        (0.95..=1.05).contains(&counted),
        "heap_bytes {} vs allocated {held}",
        window.heap_bytes()
    );
}
