//! The wire format of `occurred_at`: an RFC 3339 string in human-readable formats (JSON), whole
//! microseconds since the Unix epoch in compact ones (bincode). Sub-microsecond digits are truncated on
//! decode, so every event time Sluice stores is exact in microseconds, in both encodings.

use chrono::{DateTime, SecondsFormat, Utc};
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
        let parsed = DateTime::parse_from_rfc3339(&text).map_err(|e| {
            D::Error::custom(format_args!("occurred_at is not RFC 3339 ({e}): {text:?}"))
        })?;
        Ok(truncate_to_micros(parsed.with_timezone(&Utc)))
    } else {
        let micros = i64::deserialize(d)?;
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| D::Error::custom(format_args!("occurred_at out of range: {micros} µs")))
    }
}

/// Drops sub-microsecond digits so that JSON and bincode carry the same instant.
pub fn truncate_to_micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}
