//! Property (no I/O): what [`PartitionBatch`] aggregates equals a naive fold over the distinct events.
//!
//! proptest generates events over the accepted ranges, extremes included (u32 `bytes`/`fetch_ms`, every
//! status class edge, positions 1/100/null, multi-byte, control-character and maximum-length strings,
//! times on hour and day edges), re-delivers some of them in any order, and feeds the deliveries to a
//! batch through a [`DedupWindow`], cut at a random point into two batches (a flush boundary: the second
//! is the first's `successor`). The two batches' rows, merged with the rules PostgreSQL's upserts mirror,
//! must equal the fold computed here with plain ordered maps and i128 sums: every event counted once,
//! and every sum inside PostgreSQL's `bigint`.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use sluice_aggregator::dedup::DedupWindow;
use sluice_aggregator::{Offered, PartitionBatch};
use sluice_schemas::{ClickEvent, CrawlEvent, Event, RankEvent};

#[path = "support/reference.rs"]
mod reference;
use reference::{fold, merged};

const U32_MAX: i64 = u32::MAX as i64;

/// Text accepted in key fields: control characters (not NUL), multi-byte, and the 64-byte label limit.
const LABELS: &[&str] = &[
    "us",
    "de",
    "\u{1}\t\n\u{1f}\u{7f}",
    "ü\u{301}",
    "🎹",
    "éééééééééééééééééééééééééééééééé",
];

fn base() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().expect("valid time")
}

/// Microseconds from 2026-03-01T00:00Z: on and next to hour and day edges, or anywhere in two days.
fn time() -> impl Strategy<Value = DateTime<Utc>> {
    let edge = prop::sample::select(vec![
        0_i64,
        1,
        3_599_999_999,
        3_600_000_000,
        86_399_999_999,
        86_400_000_000,
        86_400_000_001,
    ]);
    prop_oneof![edge, 0..172_800_000_000_i64].prop_map(|us| base() + TimeDelta::microseconds(us))
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(LABELS).prop_map(str::to_owned),
        // The longest accepted, in two-byte characters.
        Just("ß".repeat(max / 2)),
        "[a-c]{1,3}",
    ]
}

fn number() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), Just(U32_MAX), Just(U32_MAX - 1), 0..=U32_MAX]
}

fn status() -> impl Strategy<Value = i32> {
    let edges = vec![100, 103, 199, 200, 299, 300, 399, 400, 499, 500, 599];
    prop_oneof![prop::sample::select(edges), 100..=599]
}

fn position() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![
        Just(None),
        Just(Some(1)),
        Just(Some(100)),
        (1..=100).prop_map(Some)
    ]
}

fn host() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "https://Example.COM/a",
        "https://example.com/b?q=1",
        "http://[::1]:8080/",
        "https://bücher.example/p",
    ])
}

/// One event; its id is set afterwards (ids are unique, copies are re-deliveries).
fn event() -> impl Strategy<Value = Event> {
    let tenant = prop::sample::select(vec!["t1", "tenant-ü", "\u{1}t"]);
    let entity = prop::sample::select(vec!["a", "b", "🎹"]);
    let rank = (
        tenant.clone(),
        entity.clone(),
        time(),
        text(2048),
        text(64),
        position(),
    )
        .prop_map(|(t, c, at, keyword, geo, position)| {
            Event::Rank(RankEvent {
                schema_version: 1,
                event_id: String::new(),
                tenant_id: t.into(),
                occurred_at: at,
                campaign_id: c.into(),
                keyword,
                geo,
                engine: "google".into(),
                device: "mobile".into(),
                url: None,
                position,
            })
        });
    let crawl = (
        tenant.clone(),
        entity.clone(),
        time(),
        host(),
        status(),
        number(),
        number(),
    )
        .prop_map(|(t, c, at, url, status_code, fetch_ms, bytes)| {
            Event::Crawl(CrawlEvent {
                schema_version: 1,
                event_id: String::new(),
                tenant_id: t.into(),
                occurred_at: at,
                campaign_id: c.into(),
                url: url.into(),
                status_code,
                fetch_ms,
                bytes,
                content_hash: None,
            })
        });
    let click = (tenant, entity, time())
        .prop_map(|(t, code, at)| Event::Click(ClickEvent::new("", t, at, code)));
    prop_oneof![rank, crawl, click]
}

fn set_id(event: &mut Event, id: String) {
    match event {
        Event::Rank(e) => e.event_id = id,
        Event::Crawl(e) => e.event_id = id,
        Event::Click(e) => e.event_id = id,
    }
}

/// Distinct events, then their deliveries: each once, some again, in any order; and a cut point.
fn deliveries() -> impl Strategy<Value = (Vec<Event>, Vec<Event>, Index)> {
    (
        prop::collection::vec(event(), 1..200),
        prop::collection::vec(any::<Index>(), 0..100),
    )
        .prop_flat_map(|(mut events, resends)| {
            for (i, e) in events.iter_mut().enumerate() {
                set_id(e, format!("ev-{i}"));
            }
            let mut all = events.clone();
            all.extend(resends.iter().map(|r| r.get(&events).clone()));
            (Just(events), Just(all).prop_shuffle(), any::<Index>())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn batch_aggregates_equal_a_naive_fold((events, deliveries, cut) in deliveries()) {
        let mut window = DedupWindow::new(3_600_000, 0);
        let cut = cut.index(deliveries.len() + 1);
        let mut first = PartitionBatch::new("t", 0, Some(0));
        let mut second = None;
        let mut seen = std::collections::HashSet::new();
        for (offset, event) in deliveries.into_iter().enumerate() {
            if offset == cut {
                second = Some(first.successor());
            }
            let batch = second.as_mut().unwrap_or(&mut first);
            let new = seen.insert(event.event_id().to_owned());
            let offered = batch.offer(event, offset as i64, 1_000 + offset as i64, Some(&mut window));
            prop_assert_eq!(offered, Ok(if new { Offered::Added } else { Offered::Duplicate }));
        }
        let second = second.unwrap_or_else(|| first.successor());
        let expected = fold(&events);
        for sums in expected.crawls.values() {
            prop_assert!(sums.iter().all(|s| i64::try_from(*s).is_ok()), "fits bigint");
        }
        prop_assert_eq!(merged(&[&first, &second]), expected);
    }
}
