//! Events as NDJSON lines, the interchange format of `sluice-produce stdin` (input) and `--record`
//! (output, read back by verifiers). A line is the event's JSON object with one extra field, `"type"`
//! (`rank`, `crawl` or `click`), naming its kind, since the bare object does not say. Parsing goes
//! through [`sluice_schemas::decode`], so a line is accepted exactly when a consumer would accept it.

use chrono::{DateTime, Utc};
use sluice_schemas::{decode, encode, Encoding, Event, EventKind, Limits, Rejection};

/// Why an NDJSON line is not a publishable event.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    #[error("not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("no \"type\" field and no default kind; expected \"type\": \"rank\" | \"crawl\" | \"click\"")]
    MissingType,
    #[error("\"type\" is {0}; accepted: \"rank\", \"crawl\", \"click\"")]
    BadType(String),
    #[error("\"type\" is {found:?} but the kind was fixed to {expected:?}")]
    KindMismatch {
        found: EventKind,
        expected: EventKind,
    },
    #[error("invalid {kind} event: {rejection}")]
    Invalid {
        kind: EventKind,
        #[source]
        rejection: Rejection,
    },
}

/// One NDJSON line (without the trailing newline): `{"type":"<kind>", <the event's JSON fields>}`.
pub fn to_ndjson(event: &Event) -> String {
    let body = encode(event, Encoding::Json);
    let body = String::from_utf8_lossy(&body);
    let fields = body.strip_prefix('{').unwrap_or(&body);
    let mut line = String::with_capacity(body.len() + 20);
    line.push_str("{\"type\":\"");
    line.push_str(event.kind().as_str());
    line.push('"');
    if fields != "}" {
        line.push(',');
    }
    line.push_str(fields);
    line
}

/// Parses and validates one NDJSON line. The kind comes from the line's `"type"` field or, when it
/// has none, from `default_kind`; a line whose `"type"` contradicts `default_kind` is refused.
/// `now` anchors the timestamp window of `limits`.
pub fn parse_ndjson(
    line: &str,
    default_kind: Option<EventKind>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Event, NdjsonError> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(NdjsonError::NotJson)?;
    let line_kind = match object.remove("type") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(
            s.parse::<EventKind>()
                .map_err(|_| NdjsonError::BadType(format!("{s:?}")))?,
        ),
        Some(other) => return Err(NdjsonError::BadType(other.to_string())),
    };
    let kind = match (line_kind, default_kind) {
        (Some(found), Some(expected)) if found != expected => {
            return Err(NdjsonError::KindMismatch { found, expected })
        }
        (Some(kind), _) | (None, Some(kind)) => kind,
        (None, None) => return Err(NdjsonError::MissingType),
    };
    let payload = serde_json::to_vec(&object).map_err(NdjsonError::NotJson)?;
    decode(kind, Encoding::Json, &payload, limits, now)
        .map_err(|rejection| NdjsonError::Invalid { kind, rejection })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sluice_schemas::{ClickEvent, RejectReason, SCHEMA_VERSION};

    use super::*;
    use crate::synth::{Synth, SynthConfig};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn click() -> Event {
        Event::Click(ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "e-1".into(),
            tenant_id: "t1".into(),
            occurred_at: Utc.with_ymd_and_hms(2025, 6, 1, 11, 30, 0).unwrap(),
            short_code: "abc".into(),
            referrer: None,
            country: Some("de".into()),
            user_agent: None,
            visitor_id: None,
        })
    }

    #[test]
    fn line_is_the_event_object_with_type_first() {
        assert_eq!(
            to_ndjson(&click()),
            r#"{"type":"click","schema_version":1,"event_id":"e-1","tenant_id":"t1","occurred_at":"2025-06-01T11:30:00Z","short_code":"abc","referrer":null,"country":"de","user_agent":null,"visitor_id":null}"#
        );
    }

    #[test]
    fn synthetic_events_round_trip_through_ndjson() {
        let mut synth = Synth::new(SynthConfig::default(), "nd").unwrap();
        for _ in 0..3000 {
            let event = synth.next(now());
            let line = to_ndjson(&event);
            assert!(!line.contains('\n'));
            assert_eq!(
                parse_ndjson(&line, None, &Limits::default(), now()).unwrap(),
                event
            );
            assert_eq!(
                parse_ndjson(&line, Some(event.kind()), &Limits::default(), now()).unwrap(),
                event
            );
        }
    }

    #[test]
    fn kind_from_default_when_type_absent() {
        let line = to_ndjson(&click()).replace(r#""type":"click","#, "");
        assert!(matches!(
            parse_ndjson(&line, None, &Limits::default(), now()),
            Err(NdjsonError::MissingType)
        ));
        assert_eq!(
            parse_ndjson(&line, Some(EventKind::Click), &Limits::default(), now()).unwrap(),
            click()
        );
    }

    #[test]
    fn bad_lines_say_why() {
        let limits = Limits::default();
        let err = |line: &str, kind| parse_ndjson(line, kind, &limits, now()).unwrap_err();
        assert!(matches!(err("{not json", None), NdjsonError::NotJson(_)));
        assert!(matches!(err("[1,2]", None), NdjsonError::NotJson(_)));
        assert_eq!(
            err(r#"{"type":"view"}"#, None).to_string(),
            r#""type" is "view"; accepted: "rank", "crawl", "click""#
        );
        assert!(matches!(err(r#"{"type":7}"#, None), NdjsonError::BadType(t) if t == "7"));
        let line = to_ndjson(&click());
        assert!(matches!(
            err(&line, Some(EventKind::Rank)),
            NdjsonError::KindMismatch {
                found: EventKind::Click,
                expected: EventKind::Rank
            }
        ));
        let no_code = line.replace(r#""short_code":"abc","#, "");
        assert!(matches!(
            err(&no_code, None),
            NdjsonError::Invalid { kind: EventKind::Click, rejection } if rejection.reason == RejectReason::MissingField
        ));
        let future = line.replace("2025-06-01T11:30:00Z", "2025-06-01T14:00:00Z");
        assert!(matches!(
            err(&future, None),
            NdjsonError::Invalid { rejection, .. } if rejection.reason == RejectReason::TimestampOutOfRange
        ));
    }
}
