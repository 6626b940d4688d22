//! What the schemas crate's integration tests share: the contract's JSON Schema files
//! (`schemas/json/<kind>.schema.json`) compiled as validators, and a JSON decode with the default
//! limits at the test's own "now".

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_schemas::{decode, Encoding, Event, EventKind, Limits, Rejection};

/// The JSON Schema file of `kind`, with format checks on (`date-time`, `uri`).
pub(crate) fn schema(kind: EventKind) -> jsonschema::Validator {
    let text = match kind {
        EventKind::Rank => include_str!("../../json/rank.schema.json"),
        EventKind::Crawl => include_str!("../../json/crawl.schema.json"),
        EventKind::Click => include_str!("../../json/click.schema.json"),
    };
    let doc: Value = serde_json::from_str(text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&doc)
        .unwrap()
}

/// Decodes a JSON record value of `kind` with `Limits::default()`, as if it were `now`.
pub(crate) fn decode_json(
    kind: EventKind,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<Event, Rejection> {
    decode(kind, Encoding::Json, bytes, &Limits::default(), now)
}
