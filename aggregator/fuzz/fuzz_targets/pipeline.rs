//! # Fuzz target `pipeline`: bytes → decode → validate → aggregate → both sinks' row encoders
//!
//! One input is a sequence of Kafka-like records, each `[control][length: u16 LE][payload…]` (the last
//! payload may be short): `control & 3` picks the kind (rank, crawl, click; 3 is rank), bit 2 the encoding
//! (0 JSON, 1 bincode), bits 3–7 add 0–31 s to the record timestamp. Every payload goes through
//! [`sluice_schemas::decode`] (JSON or bincode, then validation) at a fixed `now`; an accepted event is
//! re-encoded in both encodings and decoded again, then offered to one [`PartitionBatch`] with a
//! [`DedupWindow`] — three times: as published, as a re-delivery (same id), and as a sibling (another id,
//! same aggregate row, so that sums grow). At the end the batch's aggregates are compared with a naive fold
//! over the accepted events computed here (i128 sums, plain ordered maps), the PostgreSQL upserts' bind
//! parameters are encoded, and the ClickHouse rows are compared value by value with the events.
//!
//! The oracle (each a panic, i.e. a crash libFuzzer keeps):
//! - `decode` never panics, whatever the bytes;
//! - an accepted event survives encode → decode unchanged, in JSON and in bincode;
//! - `offer` adds exactly the first delivery of each `(tenant_id, event_id)` and drops the others;
//! - aggregates equal the naive fold and every sum fits PostgreSQL `bigint` (no wrap, D2);
//! - the ClickHouse rows carry every value unchanged and inside its column type (`DateTime` seconds,
//!   `UInt8` position, `UInt16` status, `UInt32` fetch_ms, `UInt64` bytes);
//! - an accepted event has no U+0000 in any string (D1), crawl `bytes` and `fetch_ms` within u32 and only
//!   JSON integers for integer fields (D2), and a JSON object as its value (D3) — docs/events.md.

#![no_main]

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/reference.rs"]
mod reference;
use serde_json::{json, Value};
use sluice_aggregator::dedup::DedupWindow;
use sluice_sinks::clickhouse::raw_rows;
use sluice_sinks::postgres::{
    click_daily_arguments, crawl_hourly_arguments, rank_daily_arguments,
};
use sluice_aggregator::{Offered, PartitionBatch};
use sluice_schemas::{decode, encode, Encoding, Event, EventKind, Limits};

/// The fixed "now" of every decode: a leap-second instant (2026-06-30T23:59:60Z) and a year back are
/// inside the accepted window.
const NOW_SECS: i64 = 1_782_865_800; // 2026-07-01T00:30:00Z
/// Larger than any input's span of record timestamps (at most 64 records of at most 31 s each): the
/// window never expires a key inside one input, so "first delivery counts" is the whole dedup rule.
const WINDOW_MS: i64 = 86_400_000;
const INGESTED_AT: u32 = 1_782_866_000;
const TOPIC: &str = "fuzz-events";
const MAX_RECORDS: usize = 64;

fuzz_target!(|data: &[u8]| run(data));

struct Record<'a> {
    kind: EventKind,
    encoding: Encoding,
    ts_step_ms: i64,
    payload: &'a [u8],
}

fn records(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 && out.len() < MAX_RECORDS {
        let control = data[0];
        let len = usize::from(u16::from_le_bytes([data[1], data[2]]));
        let end = (3 + len).min(data.len());
        out.push(Record {
            kind: [
                EventKind::Rank,
                EventKind::Crawl,
                EventKind::Click,
                EventKind::Rank,
            ][usize::from(control & 3)],
            encoding: if control & 4 == 0 {
                Encoding::Json
            } else {
                Encoding::Bincode
            },
            ts_step_ms: i64::from(control >> 3) * 1000,
            payload: &data[3..end],
        });
        data = &data[end..];
    }
    out
}

/// `SLUICE_FUZZ_TRACE=1` prints every record's decode outcome (for checking what a seed exercises).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SLUICE_FUZZ_TRACE").is_some())
}

fn run(data: &[u8]) {
    let limits = Limits::default();
    let now = DateTime::from_timestamp(NOW_SECS, 0).expect("valid now");
    let mut window = DedupWindow::new(WINDOW_MS, 0);
    let mut batch = PartitionBatch::new(TOPIC, 0, None);
    let mut oracle = Oracle::default();
    let mut offset = 0_i64;
    let mut record_ts_ms = NOW_SECS * 1000;
    for record in records(data) {
        record_ts_ms += record.ts_step_ms;
        let decoded = decode(record.kind, record.encoding, record.payload, &limits, now);
        if trace() {
            eprintln!("{} {:?}: {decoded:?}", record.kind, record.encoding);
        }
        let event = match decoded {
            Ok(event) => event,
            Err(_) => {
                batch.reject(offset, None);
                offset += 1;
                continue;
            }
        };
        assert_eq!(event.kind(), record.kind);
        let violations = contract_violations(&event, record.encoding, record.payload);
        assert!(
            violations.is_empty(),
            "accepted an event outside the contract: {violations:?}: {event:?}"
        );
        assert_round_trips(&event, &limits, now);
        let sibling = sibling(&event, &limits, now);
        for delivery in [Some(event.clone()), Some(event), sibling]
            .into_iter()
            .flatten()
        {
            let first = oracle.deliver(&delivery, offset);
            let offered = batch
                .offer(delivery, offset, record_ts_ms, Some(&mut window))
                .expect("every accepted value fits its ClickHouse column");
            let expected = if first {
                Offered::Added
            } else {
                Offered::Duplicate
            };
            assert_eq!(offered, expected, "dedup decision at offset {offset}");
            offset += 1;
        }
    }
    assert_eq!(batch.end_offset, (offset > 0).then_some(offset));
    oracle.check_aggregates(&batch);
    click_daily_arguments(&batch).expect("click_daily bind parameters encode");
    rank_daily_arguments(&batch).expect("rank_daily bind parameters encode");
    crawl_hourly_arguments(&batch).expect("crawl_hourly bind parameters encode");
    oracle.check_clickhouse_rows(&batch);
}

/// What an accepted event may not contain under D1-D3, checked here independently of `validate`.
fn contract_violations(event: &Event, encoding: Encoding, payload: &[u8]) -> Vec<String> {
    let mut violations = Vec::new();
    for (field, value) in strings(event) {
        if value.contains('\0') {
            violations.push(format!("D1: U+0000 in {field}"));
        }
    }
    if let Event::Crawl(e) = event {
        for (field, value) in [("bytes", e.bytes), ("fetch_ms", e.fetch_ms)] {
            if !(0..=i64::from(u32::MAX)).contains(&value) {
                violations.push(format!("D2: {field}={value} outside 0..=4294967295"));
            }
        }
    }
    if encoding == Encoding::Json {
        let first = payload
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            violations.push("D3: the JSON value is not an object".into());
        }
        if let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(payload) {
            let integers: &[&str] = match event.kind() {
                EventKind::Rank => &["schema_version", "position"],
                EventKind::Crawl => &["schema_version", "status_code", "fetch_ms", "bytes"],
                EventKind::Click => &["schema_version"],
            };
            for &field in integers {
                if let Some(v) = doc.get(field) {
                    if !(v.is_null() || v.is_i64() || v.is_u64()) {
                        violations.push(format!("D2: {field}={v} is not a JSON integer"));
                    }
                }
            }
        }
    }
    violations
}

/// Every string of an event, by field name.
fn strings(event: &Event) -> Vec<(&'static str, &str)> {
    let mut out = vec![
        ("event_id", event.event_id()),
        ("tenant_id", event.tenant_id()),
    ];
    fn opt<'a>(out: &mut Vec<(&'static str, &'a str)>, name: &'static str, v: &'a Option<String>) {
        if let Some(v) = v {
            out.push((name, v.as_str()));
        }
    }
    match event {
        Event::Rank(e) => {
            opt(&mut out, "url", &e.url);
            out.extend([
                ("campaign_id", e.campaign_id.as_str()),
                ("keyword", &e.keyword),
                ("geo", &e.geo),
                ("engine", &e.engine),
                ("device", &e.device),
            ]);
        }
        Event::Crawl(e) => {
            opt(&mut out, "content_hash", &e.content_hash);
            out.extend([("campaign_id", e.campaign_id.as_str()), ("url", &e.url)]);
        }
        Event::Click(e) => {
            opt(&mut out, "referrer", &e.referrer);
            opt(&mut out, "country", &e.country);
            opt(&mut out, "user_agent", &e.user_agent);
            opt(&mut out, "visitor_id", &e.visitor_id);
            out.push(("short_code", &e.short_code));
        }
    }
    out
}

fn assert_round_trips(event: &Event, limits: &Limits, now: DateTime<Utc>) {
    for encoding in [Encoding::Json, Encoding::Bincode] {
        let bytes = encode(event, encoding);
        let again = decode(event.kind(), encoding, &bytes, limits, now);
        assert_eq!(
            again.as_ref(),
            Ok(event),
            "re-encoded as {encoding:?}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// The same event under another id (same aggregate row), if that still validates.
fn sibling(event: &Event, limits: &Limits, now: DateTime<Utc>) -> Option<Event> {
    let mut other = event.clone();
    let id = match &mut other {
        Event::Rank(e) => &mut e.event_id,
        Event::Crawl(e) => &mut e.event_id,
        Event::Click(e) => &mut e.event_id,
    };
    // Replace the first character: the length stays within the limit and the id differs.
    let first = id.chars().next()?;
    let replacement = if first == '~' { "!" } else { "~" };
    id.replace_range(..first.len_utf8(), replacement);
    decode(
        event.kind(),
        Encoding::Json,
        &encode(&other, Encoding::Json),
        limits,
        now,
    )
    .ok()
}

/// The naive model: accepted events in delivery order, folded only when checked.
#[derive(Default)]
struct Oracle {
    seen: HashSet<(String, String)>,
    /// First deliveries with their offsets.
    accepted: Vec<(i64, Event)>,
}

impl Oracle {
    /// Records a delivery; true when it is the first of its `(tenant_id, event_id)`.
    fn deliver(&mut self, event: &Event, offset: i64) -> bool {
        let first = self
            .seen
            .insert((event.tenant_id().to_owned(), event.event_id().to_owned()));
        if first {
            self.accepted.push((offset, event.clone()));
        }
        first
    }

    fn check_aggregates(&self, batch: &PartitionBatch) {
        let expected = reference::fold(self.accepted.iter().map(|(_, event)| event));
        let bigint = i128::from(i64::MIN)..=i128::from(i64::MAX);
        for (key, sums) in &expected.crawls {
            for (i, sum) in sums.iter().enumerate() {
                assert!(
                    bigint.contains(sum),
                    "crawl_hourly {key:?} column {i}: {sum} does not fit bigint"
                );
            }
        }
        let got = reference::merged(&[batch]);
        assert_eq!(got.clicks, expected.clicks, "click_daily");
        assert_eq!(got.ranks, expected.ranks, "rank_daily");
        assert_eq!(got.crawls, expected.crawls, "crawl_hourly");
    }

    /// Each ClickHouse row must carry the event's values unchanged: a value outside its column type
    /// (negative or beyond u32 seconds, a position beyond UInt8, …) shows up as a difference.
    fn check_clickhouse_rows(&self, batch: &PartitionBatch) {
        let rows =
            raw_rows(batch, INGESTED_AT).expect("every accepted value fits its ClickHouse column");
        fn to_json<T: serde::Serialize>(rows: &[T]) -> Vec<Value> {
            let row = |r| serde_json::to_value(r).expect("a row serializes");
            rows.iter().map(row).collect()
        }
        let (got_rank, got_crawl, got_click) =
            (to_json(&rows.rank), to_json(&rows.crawl), to_json(&rows.click));
        let (mut rank, mut crawl, mut click) = (Vec::new(), Vec::new(), Vec::new());
        for (offset, event) in &self.accepted {
            let at = event.occurred_at();
            let (secs, micros) = (at.timestamp(), at.timestamp_subsec_micros());
            assert!(
                (0..=i64::from(u32::MAX)).contains(&secs),
                "occurred_at {at} outside ClickHouse DateTime"
            );
            // The event's own fields by their contract names (not the row encoder's), then the
            // columns a row adds: seconds and microseconds of the time, where it came from, when.
            let (row, table) = match event {
                Event::Rank(e) => (serde_json::to_value(e), &mut rank),
                Event::Crawl(e) => (serde_json::to_value(e), &mut crawl),
                Event::Click(e) => (serde_json::to_value(e), &mut click),
            };
            let mut row = row.expect("an event serializes");
            let fields = row.as_object_mut().expect("an object");
            fields.remove("schema_version");
            fields.extend([
                ("occurred_at".into(), json!(secs)),
                ("occurred_at_micros".into(), json!(micros)),
                ("kafka_topic".into(), json!(TOPIC)),
                ("kafka_partition".into(), json!(0)),
                ("kafka_offset".into(), json!(offset)),
                ("ingested_at".into(), json!(INGESTED_AT)),
            ]);
            if let Event::Crawl(e) = event {
                fields.insert("domain".into(), json!(reference::host(&e.url)));
            }
            table.push(row);
        }
        assert_eq!(got_rank, rank, "rank_events rows");
        assert_eq!(got_crawl, crawl, "crawl_events rows");
        assert_eq!(got_click, click, "click_events rows");
    }
}

