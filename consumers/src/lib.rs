//! # The ingest service
//!
//! Kafka records flow in through one consumer group over the rank, crawl and click topics; each record
//! is decoded and validated ([`sluice_schemas::decode`]), folded into its partition's batch
//! ([`sluice_aggregator::PartitionBatch`]), and every flush interval the batches go to ClickHouse and
//! PostgreSQL ([`sluice_sinks::Flusher`]). A partition's offset moves only in the PostgreSQL
//! transaction that makes its aggregates durable; on assignment the consumer seeks to that stored offset,
//! and Kafka's own committed offset is kept in step for tooling only.
//!
//! # Layout
//! - [`config`]: settings from defaults, an optional TOML file and `SLUICE_*` environment variables.
//! - [`ingest`]: the service: poll loop, flush schedule, in-flight flush, assignment, shutdown.
//! - [`dead_letters`]: listing and re-publishing the dead-letter topic.
//! - [`provision`]: topic creation through the admin API.
//! - [`replay`]: moving stored offsets back behind a replay fence, for re-ingestion without double counts.
//! - [`telemetry`]: tracing and the Prometheus exporter.
//! - [`metrics`]: the metric names this crate records.

pub mod config;
pub mod dead_letters;
pub mod ingest;
pub mod metrics;
pub mod provision;
pub mod replay;
pub mod routing;
pub mod telemetry;

pub use config::Config;
pub use ingest::run;
