//! # The sinks: where a flushed batch becomes durable
//!
//! A flush hands [`flush::Flusher::flush`] the batches of many partitions (built by `sluice-aggregator`).
//! For each partition it publishes the refused records to the dead-letter topic ([`dead_letter`]), writes
//! the raw events to ClickHouse ([`clickhouse`], idempotent by `event_id`), and then, in one PostgreSQL
//! transaction ([`postgres`]), merges the partial aggregates into the OLTP tables, stores the idempotency
//! window and moves the partition's stored offset with a compare-and-swap — so the aggregates and the
//! offset range they cover become durable together, or not at all. The answer per partition is a
//! [`flush::FlushOutcome`].
//!
//! # Layout
//! - [`flush`]: one flush over many partitions: order of the sinks, retries, isolation of refused events.
//! - [`retry`]: the backoff every retry loop uses (full jitter, bounded).
//! - [`error`]: [`SinkError`]: class (transient, data, permanent), the database's code, redacted message.
//! - [`postgres`]: migrations, stored offsets, batched upserts (the exactly-once commit point), rewind.
//! - [`clickhouse`]: migrations, retention, row encoders and raw-event inserts.
//! - [`dead_letter`]: refused records, re-published with their reason and source coordinates.
//! - [`metrics`]: the metric names this crate emits.

pub mod clickhouse;
pub mod dead_letter;
pub mod error;
pub mod flush;
pub mod metrics;
pub mod postgres;
pub mod retry;

pub use clickhouse::{ClickHouseConfig, ClickHouseSink};
pub use dead_letter::DeadLetterSink;
pub use error::{ErrorClass, Result, SinkError};
pub use flush::{FlushOutcome, Flusher, RetryPolicy, SinkSet};
pub use postgres::{PostgresSink, Stored};
