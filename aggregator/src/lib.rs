//! # In-memory aggregation and the two sinks
//!
//! Decoded events flow in, one Kafka partition at a time, through [`batch::PartitionBatch::add`]: each
//! event updates the partial aggregates of its row ([`model`]) and is kept as a raw row for ClickHouse.
//! At flush time [`flush::Flusher`] writes each partition's batch to ClickHouse (raw events, idempotent by
//! `event_id`) and then, in one PostgreSQL transaction, merges the partial aggregates into the OLTP tables
//! and moves the partition's stored offset with a compare-and-swap — so the aggregates and the offset
//! range they cover become durable together, or not at all.
//!
//! # Layout
//! - [`model`]: aggregate keys, values, merge rules and time bucketing.
//! - [`batch`]: one partition's buffered events and partial aggregates, with its offset range.
//! - [`dedup`]: the per-partition idempotency window over `(tenant_id, event_id)`.
//! - [`sinks::postgres`]: migrations, stored offsets, batched upserts (the exactly-once commit point).
//! - [`sinks::clickhouse`]: migrations and raw-event inserts.
//! - [`sinks::dead_letter`]: refused records, re-published with their reason and source coordinates.
//! - [`flush`]: runs a flush over many partitions with retries of transient errors.
//! - [`controller`]: the lag-adaptive flush interval.
//! - [`metrics`]: the metric names this crate emits.

pub mod batch;
pub mod controller;
pub mod dedup;
pub mod flush;
pub mod metrics;
pub mod model;
pub mod sinks;

pub use batch::{Offered, PartitionBatch};
pub use flush::{FlushOutcome, Flusher, SinkSet};
