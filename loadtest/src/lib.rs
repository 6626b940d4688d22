//! # Load runs and verification
//!
//! The verifier ([`verify`]) is the project's independent oracle: from the list of events that were
//! published it computes, with its own straightforward code (no aggregator code is shared), what every
//! PostgreSQL aggregate row and every ClickHouse raw row must be, and compares that with what the
//! databases hold. End-to-end tests and load runs both end with it.
//!
//! [`load`] is the load-run driver behind the `sluice-load` binary: isolated topics and databases,
//! generator processes, baselines, latency sampling, per-process CPU and memory, and a report.
//!
//! [`kit`] is what the integration tests, the load driver and the demo share: `sluice-ingest` as a child
//! process, its metrics, throwaway databases and topics. [`demo`] is `make run`'s bounded demo
//! (`sluice-load demo`) on it.

pub mod demo;
pub mod kit;
pub mod load;
pub mod verify;
