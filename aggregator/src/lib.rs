//! # In-memory aggregation
//!
//! Decoded events flow in, one Kafka partition at a time, through [`batch::PartitionBatch::offer`]: the
//! idempotency window ([`dedup`]) drops an `(tenant_id, event_id)` seen before, each new event updates the
//! partial aggregates of its row ([`model`]) and is kept as a raw row for ClickHouse, and a refused record
//! is kept whole as a [`DeadLetter`]. The ingest service asks [`controller::FlushController`] how long to
//! let batches grow, then hands them to the sinks (crate `sluice-sinks`), which make them durable.
//!
//! Pure computation: no Kafka, database or async runtime among the dependencies, so every rule here is
//! unit-tested without I/O.
//!
//! # Layout
//! - [`model`]: aggregate keys, values, merge rules and time bucketing.
//! - [`batch`]: one partition's buffered events and partial aggregates, with its offset range.
//! - [`raw`]: the raw-event tables' rows a batch keeps, encoded for ClickHouse as they arrive.
//! - [`dedup`]: the per-partition idempotency window over `(tenant_id, event_id)`.
//! - [`dead_letter`]: a refused record, kept whole until it is dead-lettered.
//! - [`controller`]: the lag-adaptive flush interval.

pub mod batch;
pub mod controller;
pub mod dead_letter;
pub mod dedup;
pub mod model;
pub mod raw;

pub use batch::{Offered, PartitionBatch};
pub use dead_letter::DeadLetter;
