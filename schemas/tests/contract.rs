//! The event contract, checked from the outside: both encodings round-trip, record keys are what the
//! README promises, the JSON Schema files accept what the Rust decoder accepts and reject what it
//! rejects, and every malformed input gets the documented rejection reason.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use sluice_schemas::{
    decode, encode, ClickEvent, CrawlEvent, Encoding, Event, EventKind, Limits, RankEvent,
    RejectReason,
};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-15T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn samples() -> Vec<Event> {
    vec![
        Event::Rank(RankEvent {
            schema_version: 1,
            event_id: "r-1".into(),
            tenant_id: "acme".into(),
            occurred_at: at("2026-06-15T08:30:00.123456Z"),
            campaign_id: "camp-7".into(),
            keyword: "running shoes ünïcode".into(),
            geo: "de".into(),
            engine: "google".into(),
            device: "mobile".into(),
            url: Some("https://shop.example/shoes".into()),
            position: Some(4),
        }),
        Event::Rank(RankEvent {
            schema_version: 1,
            event_id: "r-2".into(),
            tenant_id: "acme".into(),
            occurred_at: at("2026-06-14T23:59:59Z"),
            campaign_id: "camp-7".into(),
            keyword: "trail shoes".into(),
            geo: "us".into(),
            engine: "bing".into(),
            device: "desktop".into(),
            url: None,
            position: None,
        }),
        Event::Crawl(CrawlEvent {
            schema_version: 1,
            event_id: "c-1".into(),
            tenant_id: "globex".into(),
            occurred_at: at("2026-06-15T11:00:00.5Z"),
            campaign_id: "audit".into(),
            url: "https://WWW.Example.COM/a?b=c".into(),
            status_code: 301,
            fetch_ms: 123,
            bytes: 45_678,
            content_hash: Some("sha1:abc".into()),
        }),
        Event::Click(ClickEvent {
            schema_version: 1,
            event_id: "k-1".into(),
            tenant_id: "initech".into(),
            occurred_at: at("2026-06-15T11:59:00Z"),
            short_code: "x7Gq".into(),
            referrer: Some("https://news.example/".into()),
            country: Some("fr".into()),
            user_agent: None,
            visitor_id: Some("v-42".into()),
        }),
    ]
}

fn schema(kind: EventKind) -> jsonschema::Validator {
    let text = match kind {
        EventKind::Rank => include_str!("../json/rank.schema.json"),
        EventKind::Crawl => include_str!("../json/crawl.schema.json"),
        EventKind::Click => include_str!("../json/click.schema.json"),
    };
    let doc: Value = serde_json::from_str(text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&doc)
        .unwrap()
}

#[test]
fn both_encodings_round_trip() {
    for event in samples() {
        for encoding in [Encoding::Json, Encoding::Bincode] {
            let bytes = encode(&event, encoding);
            let back = decode(event.kind(), encoding, &bytes, &Limits::default(), now()).unwrap();
            assert_eq!(back, event, "{encoding:?}");
        }
    }
}

#[test]
fn json_wire_format_is_the_documented_one() {
    let bytes = encode(&samples()[1], Encoding::Json);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        value,
        json!({
            "schema_version": 1, "event_id": "r-2", "tenant_id": "acme", "occurred_at": "2026-06-14T23:59:59Z",
            "campaign_id": "camp-7", "keyword": "trail shoes", "geo": "us", "engine": "bing", "device": "desktop",
            "url": null, "position": null
        })
    );
}

#[test]
fn other_offsets_and_precisions_normalize_to_utc_micros() {
    let doc = json!({"schema_version": 1, "event_id": "k", "tenant_id": "t", "short_code": "s",
                     "occurred_at": "2026-06-15T13:30:00.1234567+02:00"});
    let event = decode(
        EventKind::Click,
        Encoding::Json,
        doc.to_string().as_bytes(),
        &Limits::default(),
        now(),
    )
    .unwrap();
    assert_eq!(event.occurred_at(), at("2026-06-15T11:30:00.123456Z"));
}

#[test]
fn partition_keys_group_an_entity() {
    let keys: Vec<String> = samples().iter().map(Event::partition_key).collect();
    assert_eq!(
        keys,
        ["acme/camp-7", "acme/camp-7", "globex/audit", "initech/x7Gq"]
    );
}

#[test]
fn json_schema_accepts_what_the_decoder_accepts() {
    for event in samples() {
        let value: Value = serde_json::from_slice(&encode(&event, Encoding::Json)).unwrap();
        let errors: Vec<String> = schema(event.kind())
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", event.event_id());
    }
}

/// (kind, document, reason the decoder must give). Each is also invalid per the JSON Schema.
fn malformed_json() -> Vec<(EventKind, Value, RejectReason)> {
    let click = json!({"schema_version": 1, "event_id": "k", "tenant_id": "t", "occurred_at": "2026-06-15T11:00:00Z", "short_code": "s"});
    let rank = json!({"schema_version": 1, "event_id": "r", "tenant_id": "t", "occurred_at": "2026-06-15T11:00:00Z",
        "campaign_id": "c", "keyword": "k", "geo": "us", "engine": "google", "device": "mobile", "position": 3});
    let crawl = json!({"schema_version": 1, "event_id": "c", "tenant_id": "t", "occurred_at": "2026-06-15T11:00:00Z",
        "campaign_id": "c", "url": "https://a.example/", "status_code": 200, "fetch_ms": 5, "bytes": 10});
    let with = |base: &Value, key: &str, v: Value| {
        let mut d = base.clone();
        d[key] = v;
        d
    };
    let without = |base: &Value, key: &str| {
        let mut d = base.clone();
        d.as_object_mut().unwrap().remove(key);
        d
    };
    vec![
        (
            EventKind::Click,
            with(&click, "schema_version", json!(2)),
            RejectReason::UnknownSchemaVersion,
        ),
        (
            EventKind::Click,
            without(&click, "short_code"),
            RejectReason::MissingField,
        ),
        (
            EventKind::Click,
            without(&click, "event_id"),
            RejectReason::MissingField,
        ),
        (
            EventKind::Click,
            with(&click, "short_code", json!(17)),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Click,
            with(&click, "short_code", json!("")),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Click,
            with(&click, "occurred_at", json!("yesterday")),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Click,
            with(&click, "visitor_id", json!("v".repeat(129))),
            RejectReason::Oversized,
        ),
        (
            EventKind::Rank,
            without(&rank, "position"),
            RejectReason::MissingField,
        ),
        (
            EventKind::Rank,
            with(&rank, "position", json!(0)),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Rank,
            with(&rank, "position", json!(101)),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Rank,
            with(&rank, "position", json!("3")),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Crawl,
            with(&crawl, "url", json!("not a url")),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Crawl,
            with(&crawl, "url", json!("ftp://a.example/x")),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Crawl,
            with(&crawl, "status_code", json!(600)),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Crawl,
            with(&crawl, "fetch_ms", json!(-1)),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Crawl,
            with(&crawl, "bytes", json!(1.5)),
            RejectReason::InvalidField,
        ),
        (
            EventKind::Crawl,
            json!([1, 2, 3]),
            RejectReason::InvalidField,
        ),
    ]
}

#[test]
fn malformed_json_gets_its_reason_and_the_schema_agrees() {
    for (kind, doc, reason) in malformed_json() {
        let got = decode(
            kind,
            Encoding::Json,
            doc.to_string().as_bytes(),
            &Limits::default(),
            now(),
        );
        assert_eq!(
            got.as_ref().map_err(|r| r.reason),
            Err(reason),
            "{doc}: {got:?}"
        );
        assert!(!schema(kind).is_valid(&doc), "schema accepted {doc}");
    }
}

#[test]
fn undecodable_bytes_get_their_reason() {
    let limits = Limits::default();
    let reason =
        |kind, enc, bytes: &[u8]| decode(kind, enc, bytes, &limits, now()).map_err(|r| r.reason);
    assert_eq!(
        reason(EventKind::Click, Encoding::Json, b"{not json"),
        Err(RejectReason::InvalidEncoding)
    );
    assert_eq!(
        reason(EventKind::Click, Encoding::Json, b""),
        Err(RejectReason::InvalidEncoding)
    );
    assert_eq!(
        reason(
            EventKind::Click,
            Encoding::Json,
            b"{\"event_id\": \"\xff\xfe\"}"
        ),
        Err(RejectReason::InvalidUtf8)
    );
    assert_eq!(
        reason(EventKind::Click, Encoding::Bincode, b"\x01\x05ab"),
        Err(RejectReason::InvalidEncoding)
    );
    let big = vec![b' '; limits.max_record_bytes + 1];
    assert_eq!(
        reason(EventKind::Click, Encoding::Json, &big),
        Err(RejectReason::Oversized)
    );

    // Bincode: a valid record with trailing garbage, a version-2 record, and invalid UTF-8 in a string.
    let click = samples().pop().unwrap();
    let mut bytes = encode(&click, Encoding::Bincode);
    bytes.push(0);
    assert_eq!(
        reason(EventKind::Click, Encoding::Bincode, &bytes),
        Err(RejectReason::InvalidEncoding)
    );
    let mut v2 = encode(&click, Encoding::Bincode);
    assert_eq!(v2[0], 1, "schema_version is the first byte (varint 1)");
    v2[0] = 2;
    assert_eq!(
        reason(EventKind::Click, Encoding::Bincode, &v2),
        Err(RejectReason::UnknownSchemaVersion)
    );
    let mut bad_utf8 = encode(&click, Encoding::Bincode);
    // event_id "k-1" follows the version byte and its length byte 3.
    assert_eq!(&bad_utf8[1..5], b"\x03k-1");
    bad_utf8[2] = 0xff;
    assert_eq!(
        reason(EventKind::Click, Encoding::Bincode, &bad_utf8),
        Err(RejectReason::InvalidUtf8)
    );
}

#[test]
fn timestamps_far_from_now_are_refused() {
    let limits = Limits::default();
    let mut e = match samples().pop().unwrap() {
        Event::Click(c) => c,
        _ => unreachable!(),
    };
    for (offset, ok) in [
        (TimeDelta::days(-366) + TimeDelta::seconds(1), true),
        (TimeDelta::days(-367), false),
        (TimeDelta::minutes(59), true),
        (TimeDelta::minutes(61), false),
    ] {
        e.occurred_at = now() + offset;
        let bytes = encode(&Event::Click(e.clone()), Encoding::Json);
        let got = decode(EventKind::Click, Encoding::Json, &bytes, &limits, now())
            .map(|_| ())
            .map_err(|r| r.reason);
        assert_eq!(
            got,
            if ok {
                Ok(())
            } else {
                Err(RejectReason::TimestampOutOfRange)
            },
            "{offset}"
        );
    }
}

#[test]
fn unknown_encoding_header_is_refused() {
    assert_eq!(Encoding::from_header(None), Ok(Encoding::Json));
    assert_eq!(
        Encoding::from_header(Some(b"bincode")),
        Ok(Encoding::Bincode)
    );
    assert_eq!(
        Encoding::from_header(Some(b"avro")).map_err(|r| r.reason),
        Err(RejectReason::InvalidEncoding)
    );
}
