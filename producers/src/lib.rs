//! # Sluice producers
//!
//! How events get into Sluice's Kafka topics. [`EventProducer`] takes typed [`sluice_schemas::Event`]s
//! and writes each as one record on its kind's topic (key `"{tenant_id}/{entity}"`, value in the
//! configured encoding; bincode records also carry the `sluice-encoding` header, JSON ones none),
//! with an idempotent librdkafka producer, either awaiting each delivery or queueing at high rate.
//! [`synth`] makes deterministic, realistic synthetic traffic for load and end-to-end tests, and
//! [`ndjson`] is the line format the `sluice-produce` CLI reads from stdin and records for verifiers.
//!
//! # Layout
//! - [`config`]: [`ProducerConfig`] (brokers, topics, encoding, librdkafka tuning; secrets redacted),
//!   and [`CONTRACT_SETTINGS`], the settings every producer of Sluice topics has ([`require_contract`]).
//! - [`producer`]: [`EventProducer`], [`ProduceError`], [`DeliveryStats`], and [`is_confirmed`], the
//!   rule for a delivery reported without an offset.
//! - [`polled`]: [`PolledProducer`], a librdkafka producer with a polling thread of its own (under
//!   `EventProducer` and ingest's dead-letter sink), and [`Awaited`], for records awaited one by one.
//! - [`synth`]: [`Synth`], [`SynthConfig`], [`Mix`], the [`Zipf`] sampler.
//! - [`ndjson`]: [`to_ndjson`] and [`parse_ndjson`].
//! - [`metrics`]: names of the metrics the producer records (delivery errors).

pub mod config;
pub mod metrics;
pub mod ndjson;
pub mod polled;
pub mod producer;
pub mod synth;

pub use config::{require_contract, ProducerConfig, CONTRACT_SETTINGS};
pub use ndjson::{parse_ndjson, to_ndjson, NdjsonError};
pub use polled::{Awaited, Delivered, PolledProducer};
pub use producer::{is_confirmed, DeliveryStats, EventProducer, ProduceError};
pub use synth::{Mix, MixError, Synth, SynthConfig, SynthError, Zipf};
