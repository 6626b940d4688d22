//! Bytes ⇄ events. A Kafka record's value is JSON (the default, any language can write it) or bincode
//! (compact, from the Rust producer), told apart by the [`ENCODING_HEADER`] header. [`decode`] never
//! panics on hostile input: every failure becomes a [`Rejection`] with a [`RejectReason`] (a bounded set,
//! safe as a metric label and dead-letter header) and a human-readable detail naming the field.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::event::{ClickEvent, CrawlEvent, Event, EventKind, RankEvent, SCHEMA_VERSION};
use crate::validate::{validate, Limits};

/// The record header naming the value's encoding: `json` or `bincode`. Absent means `json`.
pub const ENCODING_HEADER: &str = "sluice-encoding";

/// Bincode settings shared by encoder and decoder: varint integers, and a cap on what a length prefix may
/// make the decoder allocate (hostile records cannot ask for gigabytes).
const BINCODE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ 1 << 20 }>,
> = bincode::config::standard().with_limit::<{ 1 << 20 }>();

/// How a record value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Json,
    Bincode,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Bincode => "bincode",
        }
    }

    /// Reads the [`ENCODING_HEADER`] value; `None` (no header) means JSON.
    pub fn from_header(value: Option<&[u8]>) -> Result<Encoding, Rejection> {
        match value {
            None | Some(b"json") => Ok(Encoding::Json),
            Some(b"bincode") => Ok(Encoding::Bincode),
            Some(other) => Err(Rejection::new(
                RejectReason::InvalidEncoding,
                format!(
                    "header {ENCODING_HEADER}={:?} is not one of json, bincode",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Encoding::Json),
            "bincode" => Ok(Encoding::Bincode),
            other => Err(format!(
                "unknown encoding {other:?}; accepted: json, bincode"
            )),
        }
    }
}

/// Why a record was refused. The `as_str` names are the metric label and dead-letter header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not JSON / not bincode / unknown encoding header / trailing bytes.
    InvalidEncoding,
    /// Bytes that are not UTF-8 where text is required.
    InvalidUtf8,
    /// `schema_version` other than the one this build understands.
    UnknownSchemaVersion,
    /// A required field is absent.
    MissingField,
    /// A field of the wrong type or outside its allowed values.
    InvalidField,
    /// The record or one of its fields is longer than the configured limit.
    Oversized,
    /// `occurred_at` too far in the past or future.
    TimestampOutOfRange,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::InvalidEncoding,
        RejectReason::InvalidUtf8,
        RejectReason::UnknownSchemaVersion,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::Oversized,
        RejectReason::TimestampOutOfRange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidEncoding => "invalid_encoding",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::UnknownSchemaVersion => "unknown_schema_version",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::Oversized => "oversized",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record: the reason (bounded) and a detail for logs and the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Encodes an event's value (the bare object; the topic names the kind).
pub fn encode(event: &Event, encoding: Encoding) -> Vec<u8> {
    // serde_json::to_vec's starting capacity, which this used before it called `encode_into`.
    let mut out = Vec::with_capacity(128);
    encode_into(event, encoding, &mut out);
    out
}

/// [`encode`] into `out` (cleared first): the same bytes, for a producer that reuses one buffer for
/// every record instead of allocating (and growing) a value per event.
pub fn encode_into(event: &Event, encoding: Encoding, out: &mut Vec<u8>) {
    fn enc<T: Serialize>(v: &T, encoding: Encoding, out: &mut Vec<u8>) {
        let written = match encoding {
            Encoding::Json => serde_json::to_writer(&mut *out, v).is_ok(),
            Encoding::Bincode => bincode::serde::encode_into_std_write(v, out, BINCODE).is_ok(),
        };
        // Serializing these plain structs to memory cannot fail; if it ever did, no half value.
        if !written {
            out.clear();
        }
    }
    out.clear();
    match event {
        Event::Rank(e) => enc(e, encoding, out),
        Event::Crawl(e) => enc(e, encoding, out),
        Event::Click(e) => enc(e, encoding, out),
    }
}

/// Decodes and validates one record value of the given kind. `now` anchors the timestamp window.
pub fn decode(
    kind: EventKind,
    encoding: Encoding,
    payload: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Event, Rejection> {
    if payload.len() > limits.max_record_bytes {
        return Err(Rejection::new(
            RejectReason::Oversized,
            format!(
                "record of {} bytes exceeds max_record_bytes={}",
                payload.len(),
                limits.max_record_bytes
            ),
        ));
    }
    let event = match kind {
        EventKind::Rank => Event::Rank(decode_as::<RankEvent>(encoding, payload)?),
        EventKind::Crawl => Event::Crawl(decode_as::<CrawlEvent>(encoding, payload)?),
        EventKind::Click => Event::Click(decode_as::<ClickEvent>(encoding, payload)?),
    };
    check_version(event.schema_version())?;
    validate(&event, limits, now)?;
    Ok(event)
}

fn check_version(version: u32) -> Result<(), Rejection> {
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectReason::UnknownSchemaVersion,
            format!(
                "schema_version {version} is not supported (this build reads {SCHEMA_VERSION})"
            ),
        ))
    }
}

fn decode_as<T: DeserializeOwned>(encoding: Encoding, payload: &[u8]) -> Result<T, Rejection> {
    match encoding {
        Encoding::Json => decode_json(payload),
        Encoding::Bincode => decode_bincode(payload),
    }
}

fn decode_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Rejection> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidUtf8,
            format!("JSON value is not UTF-8: {e}"),
        )
    })?;
    // Only an object is an event: serde would also map an array onto a struct, field by field.
    match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
    {
        Some(b'{') => {}
        None => return Err(Rejection::new(
            RejectReason::InvalidEncoding,
            "empty value (a tombstone, or a record of only whitespace): an event is a JSON object",
        )),
        Some(_) => {
            return Err(Rejection::new(
                RejectReason::InvalidEncoding,
                "JSON value is not an object: an event is a JSON object ({ ... })",
            ))
        }
    }
    serde_json::from_str::<T>(text).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Rejection::new(RejectReason::InvalidEncoding, format!("invalid JSON: {err}"))
            }
            Category::Data => {
                // A newer schema version may legitimately have another shape: say so rather than blaming
                // a field.
                #[derive(Deserialize)]
                struct Probe {
                    schema_version: Option<serde_json::Value>,
                }
                if let Ok(Probe { schema_version: Some(v) }) = serde_json::from_str::<Probe>(text) {
                    // Only an integer names a version; 1.0 or "1" is a malformed field.
                    if (v.is_u64() || v.is_i64()) && v.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
                        return Rejection::new(
                            RejectReason::UnknownSchemaVersion,
                            format!("schema_version {v} is not supported (this build reads {SCHEMA_VERSION})"),
                        );
                    }
                }
                let msg = err.to_string();
                let reason = if msg.starts_with("missing field") {
                    RejectReason::MissingField
                } else {
                    RejectReason::InvalidField
                };
                Rejection::new(reason, with_field::<T>(text, msg))
            }
        }
    })
}

/// Prefixes serde's message with the field it is about ("country: invalid type: integer `49`, expected
/// a string …"): serde_json names the field of a missing or duplicate one, but not of a wrong type or
/// value. Only refused records pay for this second, path-tracking parse.
fn with_field<T: DeserializeOwned>(text: &str, msg: String) -> String {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) if e.path().iter().next().is_some() => format!("{}: {msg}", e.path()),
        _ => msg,
    }
}

fn decode_bincode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Rejection> {
    match bincode::serde::decode_from_slice::<T, _>(payload, BINCODE) {
        Ok((value, read)) if read == payload.len() => Ok(value),
        Ok((_, read)) => Err(Rejection::new(
            RejectReason::InvalidEncoding,
            format!("bincode value has {} trailing bytes", payload.len() - read),
        )),
        Err(bincode::error::DecodeError::Utf8 { inner }) => Err(Rejection::new(
            RejectReason::InvalidUtf8,
            format!("bincode string is not UTF-8: {inner}"),
        )),
        Err(err) => {
            // schema_version is the first field of every type: an unknown one explains the failure.
            if let Ok((version, _)) = bincode::serde::decode_from_slice::<u32, _>(payload, BINCODE)
            {
                if version != SCHEMA_VERSION {
                    return Err(Rejection::new(
                        RejectReason::UnknownSchemaVersion,
                        format!("schema_version {version} is not supported (this build reads {SCHEMA_VERSION})"),
                    ));
                }
            }
            Err(Rejection::new(
                RejectReason::InvalidEncoding,
                format!("invalid bincode: {err}"),
            ))
        }
    }
}
