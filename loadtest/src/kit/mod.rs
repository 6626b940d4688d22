//! The test kit: what the integration tests, the load driver and the demo all do to the local stack.
//!
//! - [`IngestSetup`] / [`IngestProcess`] ([`ingest`]): `sluice-ingest` as a child — one-shot
//!   subcommands (`provision` creates topics, the one way they are made), the long-running service with
//!   its metrics on a free port, readiness (`wait_assigned`), SIGTERM and SIGKILL.
//! - [`metrics`]: GET on ingest's HTTP port and the value of a series in its exposition.
//! - [`Databases`] ([`databases`]): a throwaway PostgreSQL and ClickHouse database, created and dropped.
//! - [`kafka`]: topic deletion, high watermarks, stored offsets, lag, waiting to catch up.
//!
//! Nothing here knows about tests or reports: the callers decide names, settings and what to check.

pub mod databases;
pub mod ingest;
pub mod kafka;
pub mod metrics;

pub use databases::Databases;
pub use ingest::{IngestProcess, IngestSetup};
pub use metrics::{metric_sum, metric_value};
