//! Property test on the real stack: generated events, extremes of every accepted range included, go
//! through Kafka (the project's producer, JSON and bincode alternating), the real `sluice-ingest`, and
//! into PostgreSQL and ClickHouse; after each case the independent verifier
//! (`sluice_loadtest::verify::Expected`) must find exactly the aggregates and raw rows those events
//! imply, each `event_id` once.
//!
//! What the generator covers: boundary numbers (`bytes`/`fetch_ms` 0 and 4294967295, every status class
//! edge 100…599, positions 1, 100 and null), maximum-length strings (in one-, two- and three-byte
//! characters), control characters other than NUL (C0, DEL, C1, escape sequences), multi-byte and empty
//! optional strings, timestamps on the accepted window's edges (59 min ahead, 366 days minus 10 min back)
//! and on UTC hour and day boundaries (±1 µs), and re-deliveries of some events, interleaved later.
//!
//! One stack and one ingest process serve every case (a stack costs seconds); each case's events get
//! ids of their own and the check is over everything published so far. proptest runs a fixed seed
//! (reproducible), four cases of 100–200 events, and no shrinking: later attempts would run on the
//! state a failed case left behind.

use std::cell::RefCell;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use sluice_loadtest::verify::Expected;
use sluice_schemas::{ClickEvent, CrawlEvent, Encoding, Event, RankEvent};

use crate::support::TestStack;

const U32_MAX: i64 = u32::MAX as i64;

/// A string of exactly `max` bytes made of `fill` (completed with ASCII when `fill` does not divide it).
fn filled(prefix: &str, fill: char, max: usize) -> String {
    let mut s = prefix.to_owned();
    while s.len() + fill.len_utf8() <= max {
        s.push(fill);
    }
    while s.len() < max {
        s.push('x');
    }
    s
}

/// Identifiers (limit 128 bytes).
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("c1".to_owned()),
        Just("🎹\u{7f}".to_owned()),
        Just(filled("", 'é', 128)),
        Just(filled("", 'x', 128)),
    ]
}

/// Labels (limit 64 bytes).
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("us".to_owned()),
        Just("\u{1f}".to_owned()),
        Just(filled("", 'ü', 64)),
        Just(filled("", '键', 64)),
    ]
}

/// Free text (limit 2048 bytes).
fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("trail shoes".to_owned()),
        // C0 controls, an ANSI escape, DEL, C1 controls, a line separator: everything but NUL.
        Just("\u{1}\u{8}\t\n\r\u{1b}[0m\u{7f}\u{80}\u{9f}\u{2028}".to_owned()),
        Just(filled("", '键', 2048)),
        Just(filled("", '🎹', 2048)),
        Just(filled("", 'a', 2048)),
    ]
}

fn optional(text: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), Just(Some(String::new())), text.prop_map(Some)]
}

fn number() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), Just(U32_MAX), 0..=U32_MAX]
}

fn status() -> impl Strategy<Value = i32> {
    prop_oneof![
        prop::sample::select(vec![100, 199, 200, 299, 300, 399, 400, 499, 500, 599]),
        100..=599
    ]
}

fn position() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![
        Just(None),
        Just(Some(1)),
        Just(Some(100)),
        (1..=100).prop_map(Some)
    ]
}

/// A crawl URL: a host to normalize (case, IDN, IPv6, trailing dot) or the longest accepted URL.
fn crawl_url() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("https://Example.COM/a?b=%00c".to_owned()),
        Just("https://bücher.example/p".to_owned()),
        Just("http://[::1]:8080/".to_owned()),
        Just("https://example.com./x".to_owned()),
        Just(filled("https://long.example/", 'ß', 2048)),
    ]
}

/// Where an event's time lies, resolved against the clock when the case runs.
#[derive(Debug, Clone, Copy)]
enum When {
    /// 59 minutes ahead (the window ends 1 h ahead).
    FutureEdge,
    /// 366 days minus 10 minutes back (the window starts 366 days back).
    PastEdge,
    /// The last microsecond before the current UTC day, or its first.
    DayEdge(bool),
    /// The last microsecond before the current UTC hour, or its first.
    HourEdge(bool),
    /// Up to 30 days back.
    Recent(i64),
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        Just(When::FutureEdge),
        Just(When::PastEdge),
        any::<bool>().prop_map(When::DayEdge),
        any::<bool>().prop_map(When::HourEdge),
        (0..30 * 86_400_000_000_i64).prop_map(When::Recent),
    ]
}

fn resolve(when: When, now: DateTime<Utc>) -> DateTime<Utc> {
    let edge = |unit: TimeDelta, before: bool| {
        let start = now.duration_trunc(unit).expect("truncates");
        if before {
            start - TimeDelta::microseconds(1)
        } else {
            start
        }
    };
    match when {
        When::FutureEdge => now + TimeDelta::minutes(59),
        When::PastEdge => now - TimeDelta::days(366) + TimeDelta::minutes(10),
        When::DayEdge(before) => edge(TimeDelta::days(1), before),
        When::HourEdge(before) => edge(TimeDelta::hours(1), before),
        When::Recent(us) => now - TimeDelta::microseconds(us),
    }
}

/// An event without its id and time (set when the case runs), and whether its id is the longest.
#[derive(Debug, Clone)]
struct Draft {
    event: Event,
    when: When,
    long_id: bool,
}

fn draft() -> impl Strategy<Value = Draft> {
    let tenant = prop_oneof![
        Just("prop-a".to_owned()),
        Just("prop-ü\u{1}".to_owned()),
        Just(filled("T", 'T', 128)),
    ];
    let rank = (
        tenant.clone(),
        id_text(),
        free_text(),
        (label(), label(), label()),
        optional(free_text()),
        position(),
    )
        .prop_map(
            |(t, campaign, keyword, (geo, engine, device), url, position)| {
                Event::Rank(RankEvent {
                    schema_version: 1,
                    event_id: String::new(),
                    tenant_id: t,
                    occurred_at: DateTime::UNIX_EPOCH,
                    campaign_id: campaign,
                    keyword,
                    geo,
                    engine,
                    device,
                    url,
                    position,
                })
            },
        );
    let crawl = (
        tenant.clone(),
        id_text(),
        crawl_url(),
        status(),
        number(),
        number(),
        optional(free_text()),
    )
        .prop_map(|(t, campaign, url, status_code, fetch_ms, bytes, hash)| {
            Event::Crawl(CrawlEvent {
                schema_version: 1,
                event_id: String::new(),
                tenant_id: t,
                occurred_at: DateTime::UNIX_EPOCH,
                campaign_id: campaign,
                url,
                status_code,
                fetch_ms,
                bytes,
                content_hash: hash,
            })
        });
    let click = (
        tenant,
        id_text(),
        optional(free_text()),
        optional(label()),
        optional(free_text()),
        optional(id_text()),
    )
        .prop_map(|(t, code, referrer, country, user_agent, visitor_id)| {
            Event::Click(ClickEvent {
                schema_version: 1,
                event_id: String::new(),
                tenant_id: t,
                occurred_at: DateTime::UNIX_EPOCH,
                short_code: code,
                referrer,
                country,
                user_agent,
                visitor_id,
            })
        });
    (prop_oneof![rank, crawl, click], when(), any::<bool>()).prop_map(|(event, when, long_id)| {
        Draft {
            event,
            when,
            long_id,
        }
    })
}

/// A case: distinct drafts, and which of them are re-sent (each copy after 1–40 later events).
fn case() -> impl Strategy<Value = (Vec<Draft>, Vec<(Index, usize)>)> {
    (
        prop::collection::vec(draft(), 100..200),
        prop::collection::vec((any::<Index>(), 1..40_usize), 0..60),
    )
}

/// The case's events, ids and times set, in publish order (re-sends interleaved).
fn publish_order(
    case_no: u32,
    drafts: Vec<Draft>,
    resends: &[(Index, usize)],
    now: DateTime<Utc>,
) -> Vec<Event> {
    let events: Vec<Event> = drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let prefix = format!("p{case_no}-{i}-");
            let id = if d.long_id {
                filled(&prefix, 'ß', 128)
            } else {
                prefix
            };
            let at = resolve(d.when, now);
            let mut e = d.event;
            match &mut e {
                Event::Rank(r) => (r.event_id, r.occurred_at) = (id, at),
                Event::Crawl(c) => (c.event_id, c.occurred_at) = (id, at),
                Event::Click(c) => (c.event_id, c.occurred_at) = (id, at),
            }
            e
        })
        .collect();
    // (position in the original order after which it is sent, event)
    let mut later: Vec<(usize, Event)> = resends
        .iter()
        .map(|(pick, after)| {
            let i = pick.index(events.len());
            (i + after, events[i].clone())
        })
        .collect();
    later.sort_by_key(|(after, _)| *after);
    let mut later = later.into_iter().peekable();
    let mut out = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        out.push(event);
        while let Some((_, copy)) = later.next_if(|(after, _)| *after <= i) {
            out.push(copy);
        }
    }
    out.extend(later.map(|(_, copy)| copy));
    out
}

#[test]
fn generated_extremes_reach_both_databases_exactly() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stack = rt.block_on(TestStack::new("props", 3))?;
    let json = stack.producer(Encoding::Json)?;
    let bincode = stack.producer(Encoding::Bincode)?;
    let ingest = stack.spawn_ingest("props", &[])?;
    let published: RefCell<Vec<Event>> = RefCell::new(Vec::new());
    let cases = RefCell::new(0_u32);

    let mut runner = TestRunner::new(Config {
        cases: 4,
        max_shrink_iters: 0,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(13),
        ..Config::default()
    });
    let result = runner.run(&case(), |(drafts, resends)| {
        let case_no = {
            let mut n = cases.borrow_mut();
            *n += 1;
            *n
        };
        let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now");
        let events = publish_order(case_no, drafts, &resends, now);
        println!(
            "case {case_no}: {} records, {} of them re-deliveries",
            events.len(),
            resends.len()
        );
        let fail = |e: anyhow::Error| TestCaseError::fail(format!("case {case_no}: {e:#}"));
        for (i, event) in events.iter().enumerate() {
            let producer = if i % 2 == 0 { &json } else { &bincode };
            producer.enqueue(event).map_err(|e| fail(e.into()))?;
        }
        for producer in [&json, &bincode] {
            producer
                .flush(Duration::from_secs(30))
                .map_err(|e| fail(e.into()))?;
        }
        let mut all = published.borrow_mut();
        all.extend(events);
        let expected = Expected::from_events(all.iter());
        rt.block_on(async {
            stack.wait_caught_up(Duration::from_secs(60)).await?;
            stack.assert_matches(&expected).await
        })
        .map_err(fail)
    });
    if let Err(e) = result {
        anyhow::bail!("{e}; ingest log: {}", ingest.log.display());
    }
    let status = ingest.terminate(Duration::from_secs(30))?;
    anyhow::ensure!(status.success(), "ingest exit status {status}");
    anyhow::ensure!(
        json.stats().failed + bincode.stats().failed == 0,
        "deliveries failed"
    );
    rt.block_on(stack.cleanup())
}
