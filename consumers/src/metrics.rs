//! Names of the metrics the ingest service records, in one place. Labels are bounded: `topic`,
//! `partition`, `kind`, `reason`, `outcome` — never event ids or URLs. Hot-loop counts are accumulated
//! locally and published once per loop tick, not per event.

/// Counter: records read from Kafka. Labels: `kind`.
pub const RECORDS_CONSUMED: &str = "sluice_ingest_records_consumed_total";
/// Counter: events accepted into an aggregate. Labels: `kind`.
pub const EVENTS_AGGREGATED: &str = "sluice_ingest_events_aggregated_total";
/// Counter: re-deliveries dropped by the dedup window. Labels: `kind`.
pub const DUPLICATES: &str = "sluice_ingest_duplicates_total";
/// Gauge: keys held in dedup windows.
pub const DEDUP_KEYS: &str = "sluice_dedup_keys";
/// Counter: records rejected by decoding or validation. Labels: `kind`, `reason`.
pub const RECORDS_REJECTED: &str = "sluice_ingest_records_rejected_total";
/// Counter: partition flushes by outcome (`committed`, `fenced`, `aborted`, `failed`).
pub const FLUSHES: &str = "sluice_flushes_total";
/// Histogram: seconds from the start of a flush to its last partition's outcome.
pub const FLUSH_SECONDS: &str = "sluice_flush_duration_seconds";
/// Gauge: the current flush interval in seconds.
pub const FLUSH_INTERVAL_SECONDS: &str = "sluice_flush_interval_seconds";
/// Gauge: bytes held in partition batches.
pub const BUFFERED_BYTES: &str = "sluice_buffered_bytes";
/// Gauge: events held in partition batches.
pub const BUFFERED_EVENTS: &str = "sluice_buffered_events";
/// Gauge: 1 while fetching is paused for the memory budget.
pub const PAUSED: &str = "sluice_consumer_paused";
/// Counter: rebalance events. Labels: `kind` (`assign`, `revoke`).
pub const REBALANCES: &str = "sluice_rebalances_total";
/// Gauge: partitions currently assigned.
pub const ASSIGNED_PARTITIONS: &str = "sluice_assigned_partitions";
/// Gauge: records written but not yet read, per partition. Labels: `topic`, `partition`.
pub const FETCH_LAG: &str = "sluice_consumer_fetch_lag_records";
/// Gauge: records written but not yet durably processed (high watermark − committed), per partition.
/// Labels: `topic`, `partition`.
pub const CONSUMER_LAG: &str = "sluice_consumer_lag_records";
/// Gauge: aggregate rows held in partition batches.
pub const BUFFERED_KEYS: &str = "sluice_buffered_keys";
/// Gauge: 1 when the process is ready (joined its group, both sinks reachable), else 0.
pub const READY: &str = "sluice_ready";
