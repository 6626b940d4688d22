//! Acceptance tests against the real local stack (`make up`: Kafka, PostgreSQL, ClickHouse). All in one
//! binary; each test gets its own topics, consumer group, PostgreSQL database and ClickHouse database,
//! and runs the real `sluice-ingest` binary as a child process.

mod analytics;
mod boundaries;
mod clock_skew;
mod e2e;
mod exactness;
mod failover;
mod flush_control;
mod health;
mod hostile;
mod isolation;
mod observability;
mod partitioning;
mod producers;
mod properties;
mod replay;
mod scale_out;
mod secrets;
mod static_membership;
mod support;
mod writer_role;
