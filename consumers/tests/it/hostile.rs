//! Hostile records (issue 13, points 1 and 7) through the real broker into `sluice-ingest`. Raw records
//! of every class a producer outside Sluice can send — control characters and NUL, escaped lone
//! surrogates, floats and strings and 65-bit integers where integers belong, every RFC 3339 form, values
//! that are not objects, duplicate keys, deep nesting, unknown fields, empty values, tombstones, records
//! without a key, headers without a value — go out through a plain rdkafka producer, interleaved with
//! valid events. Each must end exactly as docs/events.md says: stored faithfully (read back byte-exact
//! from the PostgreSQL aggregate keys and the ClickHouse raw rows) or dead-lettered with its reason;
//! ingest must still be running at the end. A second test sends one event id twice with different content.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sluice_loadtest::verify::Expected;
use sluice_schemas::{encode, ClickEvent, Encoding, Event, EventKind, RankEvent, ENCODING_HEADER};

use crate::support::corner::{click, crawl, rank};
use crate::support::TestStack;

/// What must become of one record.
#[derive(Debug, Clone)]
enum Outcome {
    /// Aggregated and stored as this event.
    Stored(Event),
    /// Dead-lettered with this reason.
    Dead(&'static str),
}

struct Record {
    kind: EventKind,
    key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Option<Vec<u8>>)>,
    outcome: Outcome,
}

fn json(kind: EventKind, value: &str, outcome: Outcome) -> Record {
    Record {
        kind,
        key: Some(b"hostile/key".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
        outcome,
    }
}

fn dead(kind: EventKind, value: &str, reason: &'static str) -> Record {
    json(kind, value, Outcome::Dead(reason))
}

fn micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.duration_trunc(TimeDelta::microseconds(1)).unwrap()
}

fn hostile_click(id: &str, at: DateTime<Utc>, short_code: &str) -> ClickEvent {
    ClickEvent {
        schema_version: 1,
        event_id: id.into(),
        tenant_id: "hostile".into(),
        occurred_at: at,
        short_code: short_code.into(),
        referrer: None,
        country: None,
        user_agent: None,
        visitor_id: None,
    }
}

/// Every class of record, with its outcome. `at` is a recent instant in whole seconds.
fn records(at: DateTime<Utc>) -> Vec<Record> {
    use EventKind::{Click, Crawl, Rank};
    let ts = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let head = |id: &str| {
        format!(
            r#""schema_version":1,"event_id":"{id}","tenant_id":"hostile","occurred_at":"{ts}""#
        )
    };
    let click_doc = |id: &str, rest: &str| format!("{{{},{rest}}}", head(id));
    let rank_doc = |id: &str, rest: &str| {
        format!(
            r#"{{{},"campaign_id":"c","keyword":"k","geo":"us","engine":"google","device":"mobile",{rest}}}"#,
            head(id)
        )
    };
    let crawl_doc = |id: &str, rest: &str| {
        format!(
            r#"{{{},"campaign_id":"c","url":"https://h.example/",{rest}}}"#,
            head(id)
        )
    };
    let stored_click = |id: &str, short_code: &str| {
        Outcome::Stored(Event::Click(hostile_click(id, at, short_code)))
    };

    let mut out = vec![
        // Control characters, DEL, an escaped surrogate pair, U+FFFF: stored byte-exact in both databases
        // (short_code is part of the click_daily key).
        json(
            Click,
            &click_doc(
                "ctl",
                r#""short_code":"\u0001\t\n\r\u001b[0m\u001f\u007f\"\\\ud83d\ude00\uffff""#,
            ),
            stored_click("ctl", "\u{1}\t\n\r\u{1b}[0m\u{1f}\u{7f}\"\\😀\u{ffff}"),
        ),
        // The same in the rank key's keyword and in a nullable column.
        json(
            Rank,
            &rank_doc("ctl-rank", r#""position":null"#)
                .replace(r#""keyword":"k""#, r#""keyword":"a\u0002b\u0085c""#),
            Outcome::Stored(Event::Rank(RankEvent {
                schema_version: 1,
                event_id: "ctl-rank".into(),
                tenant_id: "hostile".into(),
                occurred_at: at,
                campaign_id: "c".into(),
                keyword: "a\u{2}b\u{85}c".into(),
                geo: "us".into(),
                engine: "google".into(),
                device: "mobile".into(),
                url: None,
                position: None,
            })),
        ),
        // NUL anywhere: refused before any database sees it (PostgreSQL text cannot hold it).
        dead(
            Click,
            &click_doc("nul", r#""short_code":"a\u0000b""#),
            "invalid_field",
        ),
        dead(
            Click,
            &click_doc("nul-opt", r#""short_code":"s","user_agent":"\u0000""#),
            "invalid_field",
        ),
        dead(
            Rank,
            &rank_doc("nul-url", r#""position":3,"url":"x\u0000""#),
            "invalid_field",
        ),
        // Escaped lone surrogates, raw invalid UTF-8.
        dead(
            Click,
            &click_doc("sur", r#""short_code":"\ud800""#),
            "invalid_encoding",
        ),
        Record {
            value: Some(
                [
                    format!(r#"{{{},"short_code":""#, head("utf")).as_bytes(),
                    b"\xff\"}",
                ]
                .concat(),
            ),
            ..dead(Click, "", "invalid_utf8")
        },
        // Not an object, empty, tombstone.
        dead(
            Click,
            &format!(r#"[1,"arr","hostile","{ts}","s",null,null,null,null]"#),
            "invalid_encoding",
        ),
        dead(Click, r#""just a string""#, "invalid_encoding"),
        dead(Click, "", "invalid_encoding"),
        dead(Click, " \n ", "invalid_encoding"),
        Record {
            value: None,
            ..dead(Click, "", "invalid_encoding")
        },
        // Duplicate keys: a known field twice is refused; an unknown one is ignored like all unknown fields,
        // however deep it nests.
        dead(
            Click,
            &click_doc("dup", r#""short_code":"s","short_code":"t""#),
            "invalid_field",
        ),
        json(
            Click,
            &click_doc(
                "unknown",
                &format!(
                    r#""short_code":"u","x":1,"x":{{"y":[null,1.5,"\u0000"]}},"deep":{}0{},"huge":1e400"#,
                    "[".repeat(5000),
                    "]".repeat(5000)
                ),
            ),
            stored_click("unknown", "u"),
        ),
        // Numbers: floats, strings, 65-bit integers, out of range.
        dead(Rank, &rank_doc("f1", r#""position":1.0"#), "invalid_field"),
        dead(Rank, &rank_doc("f2", r#""position":"3""#), "invalid_field"),
        dead(
            Rank,
            &rank_doc("f3", r#""position":1e400"#),
            "invalid_encoding",
        ),
        dead(
            Crawl,
            &crawl_doc(
                "n1",
                r#""status_code":200,"fetch_ms":1,"bytes":18446744073709551616"#,
            ),
            "invalid_field",
        ),
        dead(
            Crawl,
            &crawl_doc("n2", r#""status_code":200,"fetch_ms":1,"bytes":4294967296"#),
            "invalid_field",
        ),
        dead(
            Crawl,
            &crawl_doc("n3", r#""status_code":200,"fetch_ms":-1,"bytes":0"#),
            "invalid_field",
        ),
        dead(
            Crawl,
            &crawl_doc("n4", r#""status_code":600,"fetch_ms":1,"bytes":0"#),
            "invalid_field",
        ),
        // Timestamps: other RFC 3339 spellings of `at` are stored as `at`; what RFC 3339 forbids is refused.
        json(
            Click,
            &click_doc("ts1", r#""short_code":"t""#).replace(
                &ts,
                &(at + TimeDelta::minutes(23 * 60 + 59))
                    .format("%Y-%m-%dt%H:%M:%S.000000999999+23:59")
                    .to_string(),
            ),
            stored_click("ts1", "t"),
        ),
        json(
            Click,
            &click_doc("ts2", r#""short_code":"t""#).replace(
                &ts,
                &(at - TimeDelta::hours(5))
                    .format("%Y-%m-%dT%H:%M:%S-05:00")
                    .to_string(),
            ),
            stored_click("ts2", "t"),
        ),
        dead(
            Click,
            &click_doc("ts3", r#""short_code":"t""#).replace(&ts, &ts.replace('T', " ")),
            "invalid_field",
        ),
        dead(
            Click,
            &click_doc("ts4", r#""short_code":"t""#).replace(&ts, &ts.replace('Z', "")),
            "invalid_field",
        ),
        dead(
            Click,
            &click_doc("ts5", r#""short_code":"t""#)
                .replace(&ts, &format!("{}T12:34:60Z", &ts[..10])),
            "invalid_field",
        ),
        dead(
            Click,
            &click_doc("ts6", r#""short_code":"t""#).replace(&ts, "2000-01-01T00:00:00Z"),
            "timestamp_out_of_range",
        ),
        // Missing field, oversized field and record.
        dead(
            Click,
            &click_doc("miss", r#""referrer":"r""#),
            "missing_field",
        ),
        dead(
            Click,
            &click_doc("long", &format!(r#""short_code":"{}""#, "s".repeat(129))),
            "oversized",
        ),
        dead(
            Click,
            &click_doc(
                "huge",
                &format!(r#""short_code":"s","user_agent":"{}""#, "u".repeat(70_000)),
            ),
            "oversized",
        ),
    ];
    // No record key at all: keys only choose partitions.
    out.push(Record {
        key: None,
        ..json(
            Click,
            &click_doc("nokey", r#""short_code":"k""#),
            stored_click("nokey", "k"),
        )
    });
    // An encoding header without a value, and an unknown encoding.
    out.push(Record {
        headers: vec![(ENCODING_HEADER, None)],
        ..dead(
            Click,
            &click_doc("hdr1", r#""short_code":"h""#),
            "invalid_encoding",
        )
    });
    out.push(Record {
        headers: vec![(ENCODING_HEADER, Some(b"avro".to_vec()))],
        ..dead(
            Click,
            &click_doc("hdr2", r#""short_code":"h""#),
            "invalid_encoding",
        )
    });
    // Bincode: control characters stored, NUL refused.
    let mut ctl = hostile_click("bin-ctl", at, "b");
    ctl.user_agent = Some("\u{7}\u{8}\u{b}\u{c}".into());
    let mut nul = hostile_click("bin-nul", at, "b");
    nul.visitor_id = Some("v\0".into());
    for (event, outcome) in [
        (ctl.clone(), Outcome::Stored(Event::Click(ctl))),
        (nul, Outcome::Dead("invalid_field")),
    ] {
        out.push(Record {
            kind: Click,
            key: Some(b"hostile/b".to_vec()),
            value: Some(encode(&Event::Click(event), Encoding::Bincode)),
            headers: vec![(ENCODING_HEADER, Some(b"bincode".to_vec()))],
            outcome,
        });
    }
    out
}

fn producer(stack: &TestStack) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .set("message.max.bytes", "1000000")
        .create()?)
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<Vec<u8>>)],
) -> anyhow::Result<(i32, i64)> {
    let mut owned = OwnedHeaders::new();
    for (name, v) in headers {
        owned = owned.insert(Header {
            key: name,
            value: v.as_deref(),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
    Ok((delivery.partition, delivery.offset))
}

/// ((source topic, source offset), reason, detail) of a dead letter.
type Letter = ((String, i64), String, String);

/// Every dead letter, sorted.
fn dead_letters(stack: &TestStack) -> anyhow::Result<Vec<Letter>> {
    let header = |m: &rdkafka::message::OwnedMessage, name: &str| {
        m.headers()
            .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let mut out: Vec<Letter> =
        sluice_loadtest::kit::kafka::read_all(&stack.brokers, &stack.dead_letter_topic)?
            .iter()
            .map(|m| {
                let offset = header(m, "sluice-dlq-source-offset").parse().unwrap_or(-1);
                (
                    (header(m, "sluice-dlq-source-topic"), offset),
                    header(m, "sluice-dlq-reason"),
                    header(m, "sluice-dlq-detail"),
                )
            })
            .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn every_hostile_record_is_stored_faithfully_or_dead_lettered() -> anyhow::Result<()> {
    let stack = TestStack::new("hostile", 1).await?;
    let producer = producer(&stack)?;
    let at = Utc::now().duration_trunc(TimeDelta::seconds(1))? - TimeDelta::hours(1);
    // Valid events of all three kinds between the hostile ones.
    let valid = |i: usize| match i % 3 {
        0 => click(&format!("ok-{i}"), micros(at), Some("v")),
        1 => rank(
            &format!("ok-{i}"),
            micros(at),
            "kw",
            Some(i as i32 % 100 + 1),
        ),
        _ => crawl(&format!("ok-{i}"), micros(at), "https://ok.example/", 200),
    };
    let mut stored: Vec<Event> = Vec::new();
    let mut expected_dead: Vec<((String, i64), String)> = Vec::new();
    let records = records(at);
    assert_eq!(
        records.len(),
        35,
        "docs/guarantees.md section 5a counts them"
    );
    for (i, record) in records.into_iter().enumerate() {
        let topic = stack.topic(record.kind).to_owned();
        let (_, offset) = send(
            &producer,
            &topic,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
        .await?;
        match record.outcome {
            Outcome::Stored(event) => stored.push(event),
            Outcome::Dead(reason) => expected_dead.push(((topic, offset), reason.to_owned())),
        }
        let event = valid(i);
        let value = encode(&event, Encoding::Json);
        let key = event.partition_key();
        let topic = stack.topic(event.kind()).to_owned();
        send(&producer, &topic, Some(key.as_bytes()), Some(&value), &[]).await?;
        stored.push(event);
    }
    expected_dead.sort();

    let mut ingest = stack.spawn_ingest("hostile", &[])?;
    let caught_up = stack.wait_caught_up(Duration::from_secs(60)).await;
    let alive = ingest.alive();
    if let Err(e) = caught_up {
        anyhow::bail!(
            "ingest did not get through the hostile records (alive: {alive}): {e:#}\n{}",
            ingest.log_text()
        );
    }
    assert!(alive, "ingest exited:\n{}", ingest.log_text());
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");

    let letters = dead_letters(&stack)?;
    let reasons: Vec<((String, i64), String)> = letters
        .iter()
        .map(|(at, reason, _)| (at.clone(), reason.clone()))
        .collect();
    assert_eq!(reasons, expected_dead);
    // The detail names the field that held U+0000.
    let details: Vec<&str> = letters.iter().map(|(_, _, d)| d.as_str()).collect();
    for field in ["short_code", "user_agent", "url", "visitor_id"] {
        let prefix = format!("{field} contains U+0000 (NUL)");
        assert!(
            details.iter().any(|d| d.starts_with(&prefix)),
            "no detail `{prefix}`: {details:?}"
        );
    }
    // Stored events, byte-exact, in PostgreSQL's aggregate keys and ClickHouse's raw rows.
    stack
        .assert_matches(&Expected::from_events(&stored))
        .await?;
    stack.cleanup().await
}

/// Point 7: one (tenant_id, event_id) sent twice within the dedup window, on one partition, with different
/// content (time, entity, keyword, values). The first one read wins everywhere: PostgreSQL counts only
/// it, and ClickHouse holds exactly one row for the id, with its content.
#[tokio::test]
async fn same_event_id_with_other_content_keeps_the_first_everywhere() -> anyhow::Result<()> {
    let stack = TestStack::new("same_id", 1).await?;
    let producer = producer(&stack)?;
    let at = micros(Utc::now() - TimeDelta::hours(2));
    let later = at + TimeDelta::minutes(70);
    let first = vec![
        Event::Click(ClickEvent {
            visitor_id: Some("v1".into()),
            ..hostile_click("same-click", at, "first")
        }),
        rank("same-rank", at, "first keyword", Some(3)),
        crawl("same-crawl", at, "https://first.example/", 200),
    ];
    let mut second = vec![
        Event::Click(ClickEvent {
            visitor_id: Some("v2".into()),
            country: Some("fr".into()),
            ..hostile_click("same-click", later, "second")
        }),
        rank("same-rank", later, "second keyword", Some(90)),
        crawl("same-crawl", later, "https://second.example/", 503),
    ];
    if let Event::Crawl(c) = &mut second[2] {
        (c.fetch_ms, c.bytes) = (9_999, 4_294_967_295);
    }
    // Firsts, then seconds in the other encoding, each on its kind's single partition.
    for (events, encoding) in [(&first, Encoding::Json), (&second, Encoding::Bincode)] {
        for event in events {
            let headers = [(ENCODING_HEADER, Some(encoding.as_str().as_bytes().to_vec()))];
            let key = event.partition_key();
            let value = encode(event, encoding);
            send(
                &producer,
                stack.topic(event.kind()),
                Some(key.as_bytes()),
                Some(&value),
                &headers,
            )
            .await?;
        }
    }
    let ingest = stack.spawn_ingest("same-id", &[])?;
    stack.wait_caught_up(Duration::from_secs(60)).await?;
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");

    // Written out by hand: one row per id in ClickHouse (FINAL), with the first's content.
    let db = &stack.ch_database;
    let rows: String = stack
        .ch
        .query(&format!(
            "SELECT concat(
                (SELECT arrayStringConcat(groupArray(short_code), ',') FROM {db}.click_events FINAL WHERE event_id = 'same-click'), '|',
                (SELECT arrayStringConcat(groupArray(keyword), ',') FROM {db}.rank_events FINAL WHERE event_id = 'same-rank'), '|',
                (SELECT arrayStringConcat(groupArray(url), ',') FROM {db}.crawl_events FINAL WHERE event_id = 'same-crawl'))"
        ))
        .fetch_one()
        .await?;
    assert_eq!(rows, "first|first keyword|https://first.example/");
    // PostgreSQL: only the first's keys, each counted once.
    let (clicks, checks, pages, bytes): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(clicks) FROM click_daily WHERE short_code = 'first')::bigint,
                (SELECT sum(checks) FROM rank_daily WHERE keyword = 'first keyword')::bigint,
                (SELECT sum(pages) FROM crawl_hourly WHERE domain = 'first.example')::bigint,
                (SELECT sum(bytes_sum) FROM crawl_hourly)::bigint",
    )
    .fetch_one(&stack.pg)
    .await?;
    assert_eq!((clicks, checks, pages, bytes), (1, 1, 1, 1100));
    // And everything else, as the verifier (first occurrence of an id wins) computes it.
    let all: Vec<Event> = first.iter().chain(&second).cloned().collect();
    stack.assert_matches(&Expected::from_events(&all)).await?;
    stack.cleanup().await
}
