//! Names of the metrics this crate records, in one place (Prometheus conventions: units in names,
//! `_total` for counters, bounded labels only: `sink`, `table`, `error_type`).

/// Histogram: seconds one sink took to write one partition batch. Labels: `sink`.
pub const SINK_WRITE_SECONDS: &str = "sluice_sink_write_duration_seconds";
/// Counter: rows written. Labels: `sink`, `table`.
pub const SINK_ROWS: &str = "sluice_sink_rows_total";
/// Counter: plain inserts of aggregate rows believed new that met an existing key, so the table's rows
/// were merged by `ON CONFLICT` instead (`postgres/known.rs`). Labels: `sink`, `table`.
pub const SINK_INSERT_FALLBACKS: &str = "sluice_sink_insert_fallbacks_total";
/// Counter: failed sink attempts. Labels: `sink`, `error_type` (`transient` | `permanent` | `data` | `fenced`).
pub const SINK_ERRORS: &str = "sluice_sink_errors_total";
/// Counter: retries of transient sink errors. Labels: `sink`.
pub const SINK_RETRIES: &str = "sluice_sink_retries_total";
/// Counter: records published to the dead-letter topic. Labels: `reason`.
pub const DEAD_LETTERS: &str = "sluice_dead_letters_total";
/// Counter: dead letters published as a truncated copy (too large for the topic whole).
pub const DEAD_LETTERS_TRUNCATED: &str = "sluice_dead_letters_truncated_total";
/// Counter: dead letters the topic could not take, stored in PostgreSQL's `sluice_dead_letters` instead.
/// Labels: `reason`.
pub const DEAD_LETTERS_PARKED: &str = "sluice_dead_letters_parked_total";
/// Counter: events a database refused after validation, isolated and dead-lettered (`sink_refused`).
/// Labels: `sink`.
pub const SINK_REFUSED_EVENTS: &str = "sluice_sink_refused_events_total";
