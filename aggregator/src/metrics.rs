//! Names of the metrics this crate records, in one place (Prometheus conventions: units in names,
//! `_total` for counters, bounded labels only: `sink`, `table`, `error_type`).

/// Histogram: seconds one sink took to write one partition batch. Labels: `sink`.
pub const SINK_WRITE_SECONDS: &str = "sluice_sink_write_duration_seconds";
/// Counter: rows written. Labels: `sink`, `table`.
pub const SINK_ROWS: &str = "sluice_sink_rows_total";
/// Counter: failed sink attempts. Labels: `sink`, `error_type` (`transient` | `permanent` | `fenced`).
pub const SINK_ERRORS: &str = "sluice_sink_errors_total";
/// Counter: retries of transient sink errors. Labels: `sink`.
pub const SINK_RETRIES: &str = "sluice_sink_retries_total";
/// Counter: records published to the dead-letter topic. Labels: `reason`.
pub const DEAD_LETTERS: &str = "sluice_dead_letters_total";
