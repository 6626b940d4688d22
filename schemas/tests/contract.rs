//! The event contract, checked from the outside: both encodings round-trip, record keys are what the
//! README promises, the JSON Schema files accept what the Rust decoder accepts and reject what it
//! rejects, and every malformed input gets the documented rejection reason.

mod support;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use sluice_schemas::{
    decode, encode, ClickEvent, CrawlEvent, Encoding, Event, EventKind, Limits, RankEvent,
    RejectReason,
};
use support::{decode_json, schema};

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
    let event = decode_json(EventKind::Click, doc.to_string().as_bytes(), now()).unwrap();
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
    use EventKind::{Click, Crawl, Rank};
    use RejectReason::*;
    vec![
        (
            Click,
            with(&click, "schema_version", json!(2)),
            UnknownSchemaVersion,
        ),
        (Click, without(&click, "short_code"), MissingField),
        (Click, without(&click, "event_id"), MissingField),
        (Click, with(&click, "short_code", json!(17)), InvalidField),
        (Click, with(&click, "short_code", json!("")), InvalidField),
        (
            Click,
            with(&click, "occurred_at", json!("yesterday")),
            InvalidField,
        ),
        (
            Click,
            with(&click, "visitor_id", json!("v".repeat(129))),
            Oversized,
        ),
        (Rank, without(&rank, "position"), MissingField),
        (Rank, with(&rank, "position", json!(0)), InvalidField),
        (Rank, with(&rank, "position", json!(101)), InvalidField),
        (Rank, with(&rank, "position", json!("3")), InvalidField),
        (Crawl, with(&crawl, "url", json!("not a url")), InvalidField),
        (
            Crawl,
            with(&crawl, "url", json!("ftp://a.example/x")),
            InvalidField,
        ),
        (Crawl, with(&crawl, "status_code", json!(600)), InvalidField),
        (Crawl, with(&crawl, "fetch_ms", json!(-1)), InvalidField),
        (Crawl, with(&crawl, "bytes", json!(1.5)), InvalidField),
        (Crawl, json!([1, 2, 3]), InvalidEncoding),
    ]
}

#[test]
fn malformed_json_gets_its_reason_and_the_schema_agrees() {
    for (kind, doc, reason) in malformed_json() {
        let got = decode_json(kind, doc.to_string().as_bytes(), now());
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

/// The sample click (the last sample) as its struct, to change one field.
fn sample_click() -> ClickEvent {
    match samples().pop().unwrap() {
        Event::Click(c) => c,
        _ => unreachable!(),
    }
}

/// The sample click at `occurred_at`, encoded with `encoding` and decoded under `limits`: `Ok(())` or
/// the reason it is refused.
fn decode_click_at(
    occurred_at: DateTime<Utc>,
    encoding: Encoding,
    limits: &Limits,
) -> Result<(), RejectReason> {
    let click = ClickEvent {
        occurred_at,
        ..sample_click()
    };
    let bytes = encode(&Event::Click(click), encoding);
    decode(EventKind::Click, encoding, &bytes, limits, now())
        .map(|_| ())
        .map_err(|r| r.reason)
}

#[test]
fn timestamps_far_from_now_are_refused() {
    let out_of_range = Err(RejectReason::TimestampOutOfRange);
    for (offset, expected) in [
        (TimeDelta::days(-366) + TimeDelta::seconds(1), Ok(())),
        (TimeDelta::days(-367), out_of_range),
        (TimeDelta::minutes(59), Ok(())),
        (TimeDelta::minutes(61), out_of_range),
    ] {
        let got = decode_click_at(now() + offset, Encoding::Json, &Limits::default());
        assert_eq!(got, expected, "{offset}");
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

// ---------------------------------------------------------------------------------------------------
// Hostile input: every value JSON can carry, with its exact outcome (docs/events.md, "JSON rules").

const CLICK: &str =
    r#""schema_version":1,"event_id":"k","tenant_id":"t","occurred_at":"2026-06-15T11:00:00Z""#;
const RANK: &str = r#""schema_version":1,"event_id":"r","tenant_id":"t","occurred_at":"2026-06-15T11:00:00Z","campaign_id":"c","keyword":"k","geo":"us","engine":"google","device":"mobile""#;
const CRAWL: &str = r#""schema_version":1,"event_id":"c","tenant_id":"t","occurred_at":"2026-06-15T11:00:00Z","campaign_id":"c","url":"https://a.example/""#;

fn raw(kind: EventKind, bytes: &[u8]) -> Result<Event, RejectReason> {
    decode_json(kind, bytes, now()).map_err(|r| r.reason)
}

fn click_with(rest: &str) -> Result<Event, RejectReason> {
    raw(EventKind::Click, format!("{{{CLICK},{rest}}}").as_bytes())
}

fn short_code(event: Result<Event, RejectReason>) -> Result<String, RejectReason> {
    event.map(|e| e.entity().to_owned())
}

#[test]
fn text_takes_every_character_but_nul() {
    // Control characters, DEL, a surrogate pair, U+FFFF: stored as sent.
    assert_eq!(
        short_code(click_with(
            r#""short_code":"\u0001\t\n\u001f\u007f\"\\\ud83d\ude00\uffff""#
        )),
        Ok("\u{1}\t\n\u{1f}\u{7f}\"\\😀\u{ffff}".to_owned())
    );
    // NUL, escaped or raw, in a required or an optional field: refused, naming the field.
    for doc in [
        format!(r#"{{{CLICK},"short_code":"a\u0000b"}}"#),
        format!(r#"{{{CLICK},"short_code":"s","referrer":"\u0000"}}"#),
    ] {
        let got = decode_json(EventKind::Click, doc.as_bytes(), now());
        let err = got.unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidField, "{doc}");
        assert!(err.detail.contains("U+0000"), "{}", err.detail);
    }
    let err = decode_json(
        EventKind::Click,
        format!(r#"{{{CLICK},"short_code":"s","visitor_id":"v\u0000"}}"#).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert!(
        err.detail.starts_with("visitor_id contains U+0000"),
        "{}",
        err.detail
    );
    // An escaped lone surrogate is not a Unicode scalar value: the JSON parser refuses it.
    assert_eq!(
        short_code(click_with(r#""short_code":"\ud800""#)),
        Err(RejectReason::InvalidEncoding)
    );
    assert_eq!(
        short_code(click_with(r#""short_code":"\udc00x""#)),
        Err(RejectReason::InvalidEncoding)
    );
    // Raw invalid UTF-8.
    let mut bytes = format!(r#"{{{CLICK},"short_code":"#).into_bytes();
    bytes.extend_from_slice(b"\"\xed\xa0\x80\"}");
    assert_eq!(
        short_code(raw(EventKind::Click, &bytes)),
        Err(RejectReason::InvalidUtf8)
    );
    // Lengths are UTF-8 bytes: 64 two-byte characters are 128 bytes (the id limit), 65 are too many.
    assert_eq!(
        short_code(click_with(&format!(r#""short_code":"{}""#, "é".repeat(64)))),
        Ok("é".repeat(64))
    );
    assert_eq!(
        short_code(click_with(&format!(r#""short_code":"{}""#, "é".repeat(65)))),
        Err(RejectReason::Oversized)
    );
}

#[test]
fn bincode_text_obeys_the_same_rules() {
    let mut click = sample_click();
    click.user_agent = Some("a\0b".into());
    let bytes = encode(&Event::Click(click), Encoding::Bincode);
    let err = decode(
        EventKind::Click,
        Encoding::Bincode,
        &bytes,
        &Limits::default(),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.reason, RejectReason::InvalidField);
    assert!(
        err.detail.starts_with("user_agent contains U+0000"),
        "{}",
        err.detail
    );
}

#[test]
fn only_an_object_is_an_event() {
    let obj = format!(r#"{{{CLICK},"short_code":"s"}}"#);
    assert!(raw(EventKind::Click, obj.as_bytes()).is_ok());
    assert!(raw(EventKind::Click, format!(" \r\n\t{obj}\n").as_bytes()).is_ok());
    // The array serde would map onto the struct field by field.
    let array = r#"[1,"k","t","2026-06-15T11:00:00Z","s",null,null,null,null]"#;
    for doc in [
        array,
        "\"s\"",
        "17",
        "null",
        "true",
        "",
        " \n",
        "\u{feff}{}",
        "{",
        "}",
    ] {
        assert_eq!(
            raw(EventKind::Click, doc.as_bytes()).map(|_| ()),
            Err(RejectReason::InvalidEncoding),
            "{doc:?}"
        );
    }
    // Anything after the object.
    assert_eq!(
        raw(EventKind::Click, format!("{obj} {{}}").as_bytes()).map(|_| ()),
        Err(RejectReason::InvalidEncoding)
    );
    // A tombstone reaches decode as an empty value.
    let err = decode_json(EventKind::Click, b"", now()).unwrap_err();
    assert!(err.detail.starts_with("empty value"), "{}", err.detail);
}

#[test]
fn keys_unknown_duplicated_nested_and_missing() {
    // Unknown fields are ignored whatever they hold, duplicated or nested to any depth (serde_json
    // skips them without recursing), within max_record_bytes.
    let deep = format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000));
    assert_eq!(
        short_code(click_with(&format!(
            r#""short_code":"s","x":{{"y":[1,2.5,"\u0000",null]}},"x":1,"deep":{deep},"big":1e300"#
        ))),
        Ok("s".to_owned())
    );
    // Even a number beyond f64's range is skipped unread there (in a known field the parser refuses it).
    assert_eq!(
        short_code(click_with(
            r#""short_code":"s","big":1e400,"neg":-1e999999"#
        )),
        Ok("s".to_owned())
    );
    // Nesting where text is expected, at any depth: a type error (the parser stops at the first `[`).
    let nested = format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000));
    assert_eq!(
        short_code(click_with(&format!(r#""short_code":{nested}"#))),
        Err(RejectReason::InvalidField)
    );
    // A known field twice: refused, even with equal values.
    assert_eq!(
        short_code(click_with(r#""short_code":"s","short_code":"s""#)),
        Err(RejectReason::InvalidField)
    );
    assert_eq!(
        short_code(click_with(r#""short_code":"s","event_id":"k2""#)),
        Err(RejectReason::InvalidField)
    );
    // Missing required field; null where text is required; null where it is optional.
    assert_eq!(
        short_code(click_with(r#""referrer":"r""#)),
        Err(RejectReason::MissingField)
    );
    assert_eq!(
        short_code(click_with(r#""short_code":null"#)),
        Err(RejectReason::InvalidField)
    );
    assert_eq!(
        short_code(click_with(
            r#""short_code":"s","referrer":null,"country":null"#
        )),
        Ok("s".to_owned())
    );
    // An object where text is expected.
    assert_eq!(
        short_code(click_with(r#""short_code":{"a":1}"#)),
        Err(RejectReason::InvalidField)
    );
}

#[test]
fn numbers_are_json_integers_in_range() {
    let rank = |position: &str| {
        raw(
            EventKind::Rank,
            format!(r#"{{{RANK},"position":{position}}}"#).as_bytes(),
        )
        .map(|e| match e {
            Event::Rank(r) => r.position,
            _ => unreachable!(),
        })
    };
    assert_eq!(rank("1"), Ok(Some(1)));
    assert_eq!(rank("100"), Ok(Some(100)));
    assert_eq!(rank("null"), Ok(None));
    for bad in [
        "0",
        "101",
        "-1",
        "1.0",
        "1e1",
        "1E1",
        "10.5",
        "-0",
        "\"5\"",
        "true",
        "[5]",
        "4294967297",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "1e300",
        "-1e300",
    ] {
        assert_eq!(rank(bad), Err(RejectReason::InvalidField), "position {bad}");
    }
    assert_eq!(rank("1e400"), Err(RejectReason::InvalidEncoding));
    let crawl = |field: &str, value: &str| {
        let mut fields = vec![("status_code", "200"), ("fetch_ms", "5"), ("bytes", "10")];
        for f in &mut fields {
            if f.0 == field {
                f.1 = value;
            }
        }
        let rest: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!(r#""{k}":{v}"#))
            .collect();
        raw(
            EventKind::Crawl,
            format!("{{{CRAWL},{}}}", rest.join(",")).as_bytes(),
        )
        .map(|e| match e {
            Event::Crawl(c) => (c.status_code, c.fetch_ms, c.bytes),
            _ => unreachable!(),
        })
    };
    assert_eq!(crawl("bytes", "4294967295"), Ok((200, 5, 4_294_967_295)));
    assert_eq!(
        crawl("fetch_ms", "4294967295"),
        Ok((200, 4_294_967_295, 10))
    );
    assert_eq!(crawl("bytes", "0"), Ok((200, 5, 0)));
    assert_eq!(crawl("status_code", "100"), Ok((100, 5, 10)));
    assert_eq!(crawl("status_code", "599"), Ok((599, 5, 10)));
    for (field, bad) in [
        ("bytes", "4294967296"),
        ("bytes", "9223372036854775807"),
        ("bytes", "9223372036854775808"),
        ("bytes", "18446744073709551616"),
        ("bytes", "-1"),
        ("bytes", "-9223372036854775809"),
        ("bytes", "1.5"),
        ("bytes", "10.0"),
        ("bytes", "1e3"),
        ("bytes", "\"10\""),
        ("fetch_ms", "4294967296"),
        ("fetch_ms", "-1"),
        ("status_code", "99"),
        ("status_code", "600"),
        ("status_code", "2147483648"),
        ("status_code", "200.0"),
    ] {
        assert_eq!(
            crawl(field, bad),
            Err(RejectReason::InvalidField),
            "{field}={bad}"
        );
    }
    // schema_version: another integer is another version; any other form is a malformed field.
    let version = |v: &str| {
        raw(
            EventKind::Click,
            format!(r#"{{"schema_version":{v},"event_id":"k","tenant_id":"t","occurred_at":"2026-06-15T11:00:00Z","short_code":"s"}}"#)
                .as_bytes(),
        )
        .map(|_| ())
    };
    assert_eq!(version("1"), Ok(()));
    assert_eq!(version("2"), Err(RejectReason::UnknownSchemaVersion));
    assert_eq!(version("-1"), Err(RejectReason::UnknownSchemaVersion));
    assert_eq!(version("1.0"), Err(RejectReason::InvalidField));
    assert_eq!(version("\"1\""), Err(RejectReason::InvalidField));
}

#[test]
fn every_rfc3339_form_decodes_to_its_utc_instant_or_is_refused() {
    let when = |ts: &str| {
        raw(
            EventKind::Click,
            format!(r#"{{"schema_version":1,"event_id":"k","tenant_id":"t","occurred_at":"{ts}","short_code":"s"}}"#)
                .as_bytes(),
        )
        .map(|e| e.occurred_at())
    };
    for (text, utc) in [
        ("2026-06-15T11:00:00Z", "2026-06-15T11:00:00Z"),
        ("2026-06-15t11:00:00z", "2026-06-15T11:00:00Z"),
        ("2026-06-15T11:00:00-00:00", "2026-06-15T11:00:00Z"),
        ("2026-06-15T23:59:00+23:59", "2026-06-15T00:00:00Z"),
        ("2026-06-14T12:01:00-23:59", "2026-06-15T12:00:00Z"),
        ("2026-06-15T16:45:00+05:45", "2026-06-15T11:00:00Z"),
        ("2026-06-15T11:00:00.1Z", "2026-06-15T11:00:00.100000Z"),
        ("2026-06-15T11:00:00.123456Z", "2026-06-15T11:00:00.123456Z"),
        (
            "2026-06-15T11:00:00.1234569Z",
            "2026-06-15T11:00:00.123456Z",
        ),
        (
            "2026-06-15T11:00:00.999999999999999Z",
            "2026-06-15T11:00:00.999999Z",
        ),
        // Leap seconds: at 23:59:60 UTC only, kept in their UTC day as its last microsecond.
        ("2025-12-31T23:59:60Z", "2025-12-31T23:59:59.999999Z"),
        ("2025-12-31T23:59:60.5Z", "2025-12-31T23:59:59.999999Z"),
        ("2025-12-31T18:59:60-05:00", "2025-12-31T23:59:59.999999Z"),
    ] {
        assert_eq!(when(text), Ok(at(utc)), "{text}");
    }
    for (text, reason) in [
        ("2026-06-15 11:00:00Z", RejectReason::InvalidField),
        ("2026-06-15T11:00:00", RejectReason::InvalidField),
        ("2026-06-15T11:00Z", RejectReason::InvalidField),
        ("2026-06-15T11:00:00+24:00", RejectReason::InvalidField),
        ("2026-06-15T11:00:00+02:60", RejectReason::InvalidField),
        ("2026-06-15T11:00:00+0200", RejectReason::InvalidField),
        ("2026-06-15T11:00:00.Z", RejectReason::InvalidField),
        ("2026-06-15T24:00:00Z", RejectReason::InvalidField),
        ("2026-02-30T11:00:00Z", RejectReason::InvalidField),
        ("2026-06-15T11:59:60Z", RejectReason::InvalidField),
        ("2026-06-15T23:59:60+01:00", RejectReason::InvalidField),
        ("+2026-06-15T11:00:00Z", RejectReason::InvalidField),
        ("", RejectReason::InvalidField),
        ("0000-01-01T00:00:00Z", RejectReason::TimestampOutOfRange),
        ("9999-12-31T23:59:59Z", RejectReason::TimestampOutOfRange),
    ] {
        assert_eq!(when(text), Err(reason), "{text}");
    }
    assert_eq!(
        raw(
            EventKind::Click,
            r#"{"schema_version":1,"event_id":"k","tenant_id":"t","occurred_at":1781521200,"short_code":"s"}"#.as_bytes()
        )
        .map(|_| ()),
        Err(RejectReason::InvalidField)
    );
}

#[test]
fn event_times_outside_clickhouse_datetime_are_refused_whatever_the_window() {
    // A window wider than Limits::check allows still cannot let a pre-1970 time through.
    let limits = Limits {
        max_past: TimeDelta::days(365 * 100),
        max_future: TimeDelta::days(365 * 100),
        ..Limits::default()
    };
    let out_of_range = Err(RejectReason::TimestampOutOfRange);
    for (ts, expected) in [
        ("1969-12-31T23:59:59.999999Z", out_of_range),
        ("1970-01-01T00:00:00Z", Ok(())),
        ("2106-02-07T06:28:15.999999Z", Ok(())),
        ("2106-02-07T06:28:16Z", out_of_range),
    ] {
        let got = decode_click_at(at(ts), Encoding::Bincode, &limits);
        assert_eq!(got, expected, "{ts}");
    }
}

#[test]
fn limits_that_a_database_could_refuse_are_refused() {
    use sluice_schemas::validate::PG_KEY_TEXT_BYTES;
    assert_eq!(Limits::default().check(), Ok(()));
    assert_eq!(PG_KEY_TEXT_BYTES, 2640);
    // 2 × 128 + 2192 + 3 × 64 = 2640: the largest text that fits the rank_daily key.
    let at_edge = Limits {
        max_text_len: 2192,
        ..Limits::default()
    };
    assert_eq!(at_edge.check(), Ok(()));
    let err = Limits {
        max_text_len: 2193,
        ..Limits::default()
    }
    .check()
    .unwrap_err();
    assert!(
        err.contains("max_text_len (2193)") && err.contains("at most 2640"),
        "{err}"
    );
    let err = Limits {
        max_id_len: usize::MAX,
        ..Limits::default()
    }
    .check()
    .unwrap_err();
    assert!(err.contains("max_id_len"), "{err}");
    let err = Limits {
        max_label_len: 0,
        ..Limits::default()
    }
    .check()
    .unwrap_err();
    assert_eq!(err, "max_label_len must be at least 1");
    let err = Limits {
        max_past: TimeDelta::days(3651),
        ..Limits::default()
    }
    .check()
    .unwrap_err();
    assert_eq!(
        err,
        "max_past (87624 hours) must be between 0 and 87600 hours"
    );
    let err = Limits {
        max_future: TimeDelta::minutes(-1),
        ..Limits::default()
    }
    .check()
    .unwrap_err();
    assert_eq!(
        err,
        "max_future (-1 minutes) must be between 0 and 527040 minutes"
    );
}

#[test]
fn json_schema_agrees_with_the_decoder_on_hostile_documents() {
    let docs: Vec<(EventKind, String)> = [
        r#""short_code":"s""#,
        r#""short_code":"a\u0000b""#,
        r#""short_code":"s","user_agent":"\u0000""#,
        r#""short_code":"\u0001\u001f\u007f""#,
        r#""short_code":"""#,
        r#""short_code":null"#,
        r#""short_code":17"#,
        r#""short_code":"s","country":null,"x":{"y":[1]}"#,
    ]
    .iter()
    .map(|rest| (EventKind::Click, format!("{{{CLICK},{rest}}}")))
    .chain(
        ["1", "100", "null", "0", "101", "\"5\"", "1.5", "4294967297", "1.0", "1e1"]
            .iter()
            .map(|p| (EventKind::Rank, format!(r#"{{{RANK},"position":{p}}}"#))),
    )
    .chain(
        [
            r#""status_code":200,"fetch_ms":4294967295,"bytes":4294967295"#,
            r#""status_code":200,"fetch_ms":4294967296,"bytes":0"#,
            r#""status_code":200,"fetch_ms":0,"bytes":4294967296"#,
            r#""status_code":200,"fetch_ms":0,"bytes":-1"#,
            r#""status_code":99,"fetch_ms":0,"bytes":0"#,
            r#""status_code":600,"fetch_ms":0,"bytes":0"#,
            r#""status_code":200,"fetch_ms":0,"bytes":0,"content_hash":"h\u0000""#,
        ]
        .iter()
        .map(|rest| (EventKind::Crawl, format!("{{{CRAWL},{rest}}}"))),
    )
    .chain(
        [
            "2026-06-15t11:00:00z",
            "2026-06-15T11:00:00.123456789123+23:59",
            "2025-12-31T23:59:60Z",
            "2026-06-15T11:59:60Z",
            "2026-06-15 11:00:00Z",
            "2026-06-15T11:00:00+24:00",
            "2026-06-15T11:00:00",
        ]
        .iter()
        .map(|ts| {
            let doc = format!(r#"{{"schema_version":1,"event_id":"k","tenant_id":"t","occurred_at":"{ts}","short_code":"s"}}"#);
            (EventKind::Click, doc)
        }),
    )
    .collect();
    // Unlike a leap second in 2025, everything else lies inside the test's time window.
    let limits = Limits {
        max_past: TimeDelta::days(3650),
        ..Limits::default()
    };
    for (kind, doc) in &docs {
        let decoded = decode(
            kind.to_owned(),
            Encoding::Json,
            doc.as_bytes(),
            &limits,
            now(),
        );
        let value: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(
            schema(*kind).is_valid(&value),
            decoded.is_ok(),
            "{doc}: decoder says {decoded:?}"
        );
    }
    // Where JSON Schema cannot tell (its $comment lists these): the schema accepts, the decoder refuses.
    for (kind, doc) in [
        (
            EventKind::Crawl,
            format!(r#"{{{CRAWL},"status_code":200.0,"fetch_ms":0,"bytes":0}}"#),
        ),
        (
            EventKind::Crawl,
            format!(r#"{{{CRAWL},"status_code":2e2,"fetch_ms":0,"bytes":0}}"#),
        ),
        (
            EventKind::Crawl,
            format!(r#"{{{CRAWL},"status_code":200,"fetch_ms":0,"bytes":-0}}"#),
        ),
        (
            EventKind::Click,
            format!(r#"{{{CLICK},"short_code":"s","short_code":"s"}}"#),
        ),
        (
            EventKind::Click,
            format!(r#"{{{CLICK},"short_code":"{}"}}"#, "é".repeat(65)),
        ),
    ] {
        let value: Value = serde_json::from_str(&doc).unwrap();
        assert!(schema(kind).is_valid(&value), "{doc}");
        assert!(
            decode(kind, Encoding::Json, doc.as_bytes(), &limits, now()).is_err(),
            "{doc}"
        );
    }
}

#[test]
fn a_long_bad_timestamp_is_echoed_cut_short() {
    let long = format!("2026-06-15 {}", "9".repeat(10_000));
    let doc = format!(
        r#"{{"schema_version":1,"event_id":"k","tenant_id":"t","occurred_at":"{long}","short_code":"s"}}"#
    );
    let err = decode_json(EventKind::Click, doc.as_bytes(), now()).unwrap_err();
    assert_eq!(err.reason, RejectReason::InvalidField);
    assert!(err.detail.len() < 200, "{}", err.detail.len());
    assert!(err.detail.contains(&long[..64]), "{}", err.detail);
}
