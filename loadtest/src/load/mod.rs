//! Load runs: `sluice-load` drives the whole pipeline at a target rate on the local stack and reports
//! what it achieved, how fast events became queryable, what each process spent, and whether every
//! event landed exactly once.
//!
//! # Layout
//! - [`run`]: the driver (`sluice-load run`): isolation, baselines, the run, drain, report.
//! - [`generate`]: one generator process (`sluice-load generate --share k/N`) and exact regeneration.
//! - [`generators`]: the driver's side of the generator processes.
//! - [`drain`]: the bare-reader baseline R0 (`sluice-load drain`).
//! - [`latency`]: event → queryable latency samples and their pollers.
//! - [`accounting`]: totals per table and the full verifier over regenerated events.
//! - [`procstat`]: CPU and memory of processes from `/proc`.
//! - [`report`], [`chart`]: `report.{md,json}` and `rates.png`.

pub mod accounting;
pub mod chart;
pub mod drain;
pub mod generate;
pub mod generators;
pub mod latency;
pub mod procstat;
pub mod report;
pub mod run;
