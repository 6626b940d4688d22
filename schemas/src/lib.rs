//! # The Sluice event contract
//!
//! Everything a producer in any language must know to talk to Sluice lives here: the three event types
//! ([`RankEvent`], [`CrawlEvent`], [`ClickEvent`]), how a Kafka record carries one (the [`Encoding`] named by
//! the [`ENCODING_HEADER`] record header, JSON when absent), the record key that keeps one entity's events
//! on one partition ([`Event::partition_key`]), and the validation every consumer applies before an event
//! may touch an aggregate ([`decode`], [`Limits`]). Bytes flow in through [`decode`] and come out as a typed
//! [`Event`] or as a [`Rejection`] whose [`RejectReason`] is a low-cardinality label for metrics and the
//! dead-letter topic. The JSON Schema files under `schemas/json/` describe the same contract for other
//! languages; tests keep the two in step.
//!
//! # Layout
//! - [`event`]: the types, their topics and partition keys.
//! - [`codec`]: JSON and bincode encode/decode and the rejection taxonomy.
//! - [`validate`]: field rules (ranges, lengths, timestamps) applied after decoding.
//! - [`time`]: the `occurred_at` wire format (RFC 3339 in JSON, microseconds in bincode).

pub mod codec;
pub mod event;
pub mod time;
pub mod validate;

pub use codec::{decode, encode, encode_into, Encoding, RejectReason, Rejection, ENCODING_HEADER};
pub use event::{ClickEvent, CrawlEvent, Event, EventKind, RankEvent, SCHEMA_VERSION};
pub use validate::Limits;
