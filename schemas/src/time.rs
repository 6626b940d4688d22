//! The wire format of `occurred_at`: an RFC 3339 string in human-readable formats (JSON), whole
//! microseconds since the Unix epoch in compact ones (bincode). Sub-microsecond digits are truncated on
//! decode, so every event time Sluice stores is exact in microseconds, in both encodings.
//!
//! JSON accepts exactly RFC 3339 section 5.6 `date-time`: `T` or `t` between date and time, `Z`, `z`
//! or a numeric offset from `-23:59` to `+23:59` (`-00:00` is UTC), any number of fractional digits
//! (beyond six they are truncated). A leap second is accepted where RFC 3339 allows one, at 23:59:60
//! UTC (after applying the offset), and is stored as 23:59:59.999999 UTC of the same day, so that it
//! stays in its UTC day and hour; `:60` at any other minute is refused. A space instead of `T`, a
//! missing offset and out-of-range fields are refused.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Serializes a UTC timestamp: RFC 3339 with microseconds for JSON, `i64` microseconds for bincode.
pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    } else {
        s.serialize_i64(ts.timestamp_micros())
    }
}

/// Deserializes what [`serialize`] writes; JSON accepts any RFC 3339 offset and converts it to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    if d.is_human_readable() {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339(&text).map_err(D::Error::custom)
    } else {
        let micros = i64::deserialize(d)?;
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| D::Error::custom(format_args!("occurred_at out of range: {micros} µs")))
    }
}

/// Parses an RFC 3339 `date-time` (see the module documentation) into a UTC instant in whole
/// microseconds; the error names the field and says why.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    // The value is echoed in the detail, cut to 64 characters (a record may carry kilobytes here), and
    // only on the error paths: this runs once per event.
    let shown = || text.chars().take(64).collect::<String>();
    // chrono also takes a space as the separator (RFC 3339's prose allows it by agreement); the
    // grammar, and the JSON Schema `date-time` format, do not.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(format!(
            "occurred_at is not RFC 3339 (date and time must be separated by T): {:?}",
            shown()
        ));
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("occurred_at is not RFC 3339 ({e}): {:?}", shown()))?;
    let utc = parsed.with_timezone(&Utc);
    // chrono keeps a parsed second 60 as a nanosecond count of one second or more.
    if utc.nanosecond() >= 1_000_000_000 {
        if (utc.hour(), utc.minute()) != (23, 59) {
            return Err(format!(
                "occurred_at has second 60 outside 23:59:60 UTC, the only place RFC 3339 allows a leap second: {:?}",
                shown()
            ));
        }
        return Ok(utc
            .with_nanosecond(999_999_000)
            .expect("999,999,000 ns is a valid nanosecond"));
    }
    Ok(truncate_to_micros(utc))
}

/// Drops sub-microsecond digits so that JSON and bincode carry the same instant.
pub fn truncate_to_micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}
