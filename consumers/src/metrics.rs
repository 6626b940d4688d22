//! Names of the metrics the ingest service records, in one place. Labels are bounded: `topic`,
//! `partition`, `kind`, `reason`, `outcome` — never event ids or URLs. Hot-loop counts are accumulated
//! locally and published once per loop tick, not per event. [`register`] describes every family and
//! creates the known series at zero at start-up.
//!
//! Every name is `sluice_<component>_<what>[_<unit>][_total]` with a component of [`COMPONENTS`]
//! (docs/observability.md "Naming"); [`follows_scheme`] checks one.

use sluice_schemas::{EventKind, RejectReason};

/// Counter: records read from Kafka. Labels: `kind`.
pub const RECORDS_CONSUMED: &str = "sluice_ingest_records_consumed_total";
/// Counter: events accepted into an aggregate. Labels: `kind`.
pub const EVENTS_AGGREGATED: &str = "sluice_ingest_events_aggregated_total";
/// Counter: re-deliveries dropped by the dedup window. Labels: `kind`.
pub const DUPLICATES: &str = "sluice_ingest_duplicates_total";
/// Counter: records read again below a replay fence (`sluice-ingest replay`): re-sent to ClickHouse,
/// not applied to PostgreSQL again. Labels: `kind`.
pub const RECORDS_REPLAYED: &str = "sluice_ingest_records_replayed_total";
/// Gauge: keys held in dedup windows.
pub const DEDUP_KEYS: &str = "sluice_buffer_dedup_keys";
/// Gauge: bytes the dedup windows hold (their tables' slots and control bytes).
pub const DEDUP_BYTES: &str = "sluice_buffer_dedup_bytes";
/// Counter: records rejected by decoding or validation. Labels: `kind`, `reason`.
pub const RECORDS_REJECTED: &str = "sluice_ingest_records_rejected_total";
/// Counter: partition flushes by outcome (`committed`, `fenced`, `aborted`, `failed`).
pub const FLUSHES: &str = "sluice_flush_partitions_total";
/// Histogram: seconds from the start of a flush to its last partition's outcome.
pub const FLUSH_SECONDS: &str = "sluice_flush_duration_seconds";
/// Gauge: the current flush interval in seconds.
pub const FLUSH_INTERVAL_SECONDS: &str = "sluice_flush_interval_seconds";
/// Gauge: bytes held in partition batches.
pub const BUFFERED_BYTES: &str = "sluice_buffer_bytes";
/// Gauge: bytes held in the batches of the flush in flight (they count toward the memory budget until
/// it ends).
pub const FLUSHING_BYTES: &str = "sluice_buffer_flushing_bytes";
/// Gauge: bytes the batches may hold now (accumulating and in flight): the batch budget less the
/// dedup windows' bytes, at least an eighth of it.
pub const BATCH_BUDGET_BYTES: &str = "sluice_buffer_batch_budget_bytes";
/// Gauge: events held in partition batches.
pub const BUFFERED_EVENTS: &str = "sluice_buffer_events";
/// Gauge: 1 while fetching is paused for the memory budget.
pub const PAUSED: &str = "sluice_consumer_paused";
/// Counter: rebalance events. Labels: `kind` (`assign`, `revoke`).
pub const REBALANCES: &str = "sluice_consumer_rebalances_total";
/// Gauge: partitions currently assigned.
pub const ASSIGNED_PARTITIONS: &str = "sluice_consumer_assigned_partitions";
/// Gauge: records written but not yet read, per partition. Labels: `topic`, `partition`.
pub const FETCH_LAG: &str = "sluice_consumer_fetch_lag_records";
/// Gauge: records written but not yet durably processed (high watermark − committed), per partition.
/// Labels: `topic`, `partition`.
pub const CONSUMER_LAG: &str = "sluice_consumer_lag_records";
/// Gauge: aggregate rows held in partition batches.
pub const BUFFERED_KEYS: &str = "sluice_buffer_keys";
/// Counter: decoded records that are not on the partition Kafka's murmur2 assigns to their key
/// (`{tenant_id}/{entity}`): still aggregated, but outside the reach of the first copy's dedup window.
/// Labels: `kind`, `reason` (`no_key`, `key_mismatch`, `wrong_partition`).
pub const MISROUTED: &str = "sluice_ingest_misrouted_records_total";
/// Gauge: seconds since this process read the oldest record of the partition that is not yet durably
/// committed (stored offset in PostgreSQL); 0 when every record read is committed. Labels: `topic`,
/// `partition`.
pub const OLDEST_UNCOMMITTED_AGE: &str = "sluice_flush_oldest_uncommitted_age_seconds";
/// Gauge: 1 when the process is ready (joined its group, both sinks reachable), else 0.
pub const READY: &str = "sluice_health_ready";

/// The components a metric name may start with, after `sluice_`: `ingest` (records the poll loop read
/// and what became of them), `consumer` (the Kafka consumer: lag, pause, rebalances, assignment),
/// `buffer` (what is held in memory between flushes), `flush` (flushes, their timing and what waits for
/// them), `sink` (per-sink writes, errors, retries, refusals), `dead_letters` (the dead-letter path),
/// `health`, `produce` (the producer library).
pub const COMPONENTS: &[&str] = &[
    "ingest",
    "consumer",
    "buffer",
    "flush",
    "sink",
    "dead_letters",
    "health",
    "produce",
];

/// Whether `name` is `sluice_<component>_<what>...` with a component of [`COMPONENTS`] and a
/// non-empty rest of lowercase ASCII letters, digits and underscores.
pub fn follows_scheme(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("sluice_") else {
        return false;
    };
    COMPONENTS.iter().any(|c| {
        rest.strip_prefix(c)
            .and_then(|r| r.strip_prefix('_'))
            .is_some_and(|what| {
                !what.is_empty()
                    && !what.starts_with('_')
                    && what
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
            })
    })
}

/// Describes every family the ingest process exports (the `# HELP` lines) and creates, at zero, the
/// series whose label values are known up front: the counters of the configured kinds, every flush
/// outcome, every sink's errors and retries, every reject and dead-letter reason, the paused gauge and
/// both histograms. So each family is exported from start-up on, before its first event. That matters
/// to alerting: a counter born at 1 has no earlier sample, so `increase()` misses its first event, and
/// a series that does not exist makes `rate(...) == 0` return nothing instead of firing. Call once,
/// after the recorder is installed.
pub fn register(kinds: &[EventKind], clickhouse: bool, dead_letters: bool) {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use sluice_sinks::metrics as sink;

    describe_counter!(
        RECORDS_CONSUMED,
        Unit::Count,
        "Records read from Kafka, by kind."
    );
    describe_counter!(
        EVENTS_AGGREGATED,
        Unit::Count,
        "Events accepted into an aggregate, by kind."
    );
    describe_counter!(
        DUPLICATES,
        Unit::Count,
        "Re-deliveries dropped by the dedup window, by kind."
    );
    describe_counter!(
        RECORDS_REPLAYED,
        Unit::Count,
        "Records read again below a replay fence (re-sent to ClickHouse only), by kind."
    );
    describe_counter!(
        RECORDS_REJECTED,
        Unit::Count,
        "Records refused by decoding or validation, by kind and reason."
    );
    describe_counter!(
        FLUSHES,
        Unit::Count,
        "Partition flushes by outcome (committed, fenced, aborted, failed)."
    );
    describe_histogram!(
        FLUSH_SECONDS,
        Unit::Seconds,
        "Seconds from the start of a flush to its last partition's outcome."
    );
    describe_gauge!(
        FLUSH_INTERVAL_SECONDS,
        Unit::Seconds,
        "The flush interval the lag-adaptive controller currently uses."
    );
    describe_gauge!(
        BUFFERED_BYTES,
        Unit::Bytes,
        "Bytes held in partition batches."
    );
    describe_gauge!(
        FLUSHING_BYTES,
        Unit::Bytes,
        "Bytes held in the batches of the flush in flight."
    );
    describe_gauge!(
        BUFFERED_EVENTS,
        Unit::Count,
        "Events held in partition batches."
    );
    describe_gauge!(
        BUFFERED_KEYS,
        Unit::Count,
        "Aggregate rows held in partition batches."
    );
    describe_gauge!(DEDUP_KEYS, Unit::Count, "Keys held in the dedup windows.");
    describe_gauge!(
        DEDUP_BYTES,
        Unit::Bytes,
        "Bytes the dedup windows hold (their tables' slots and control bytes)."
    );
    describe_gauge!(
        BATCH_BUDGET_BYTES,
        Unit::Bytes,
        "Bytes the batches may hold now: max_buffered_bytes less librdkafka's share and the dedup windows, at least an eighth of the batches' share."
    );
    describe_gauge!(
        PAUSED,
        Unit::Count,
        "1 while fetching is paused for the memory budget, else 0."
    );
    describe_counter!(
        REBALANCES,
        Unit::Count,
        "Rebalance events (assign, revoke)."
    );
    describe_gauge!(
        ASSIGNED_PARTITIONS,
        Unit::Count,
        "Partitions currently assigned."
    );
    describe_gauge!(
        FETCH_LAG,
        Unit::Count,
        "Records written but not yet read, per assigned partition."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Records written but not yet durably processed (high watermark - committed offset), per assigned partition."
    );
    describe_counter!(
        MISROUTED,
        Unit::Count,
        "Decoded records not on the partition Kafka's murmur2 assigns to their key, by kind and reason (no_key, key_mismatch, wrong_partition)."
    );
    describe_gauge!(
        OLDEST_UNCOMMITTED_AGE,
        Unit::Seconds,
        "Seconds since this process read the oldest record of the partition not yet committed to PostgreSQL (0 when none), per assigned partition."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 when ready (joined the group, sinks reachable, not stopping), else 0."
    );
    describe_histogram!(
        sink::SINK_WRITE_SECONDS,
        Unit::Seconds,
        "Seconds one sink took to write one partition batch, by sink."
    );
    describe_counter!(
        sink::SINK_ROWS,
        Unit::Count,
        "Rows written, by sink and table."
    );
    describe_counter!(
        sink::SINK_INSERT_FALLBACKS,
        Unit::Count,
        "Plain inserts of aggregate rows believed new that met an existing key (the table's rows then merged by ON CONFLICT), by sink and table."
    );
    describe_counter!(
        sink::SINK_ERRORS,
        Unit::Count,
        "Failed sink attempts, by sink and error_type (transient, permanent, data, fenced)."
    );
    describe_counter!(
        sink::SINK_RETRIES,
        Unit::Count,
        "Retries of transient sink errors, by sink."
    );
    describe_counter!(
        sink::DEAD_LETTERS,
        Unit::Count,
        "Records published to the dead-letter topic, by reason."
    );
    describe_counter!(
        sink::DEAD_LETTERS_TRUNCATED,
        Unit::Count,
        "Dead letters published as a truncated copy (too large for the topic whole)."
    );
    describe_counter!(
        sink::DEAD_LETTERS_PARKED,
        Unit::Count,
        "Dead letters the topic could not take, stored in PostgreSQL (sluice_dead_letters), by reason."
    );
    describe_counter!(
        sink::SINK_REFUSED_EVENTS,
        Unit::Count,
        "Validated events a database refused, isolated and dead-lettered (sink_refused), by sink."
    );

    for &kind in kinds {
        let k = kind.as_str();
        metrics::counter!(RECORDS_CONSUMED, "kind" => k).increment(0);
        metrics::counter!(EVENTS_AGGREGATED, "kind" => k).increment(0);
        metrics::counter!(DUPLICATES, "kind" => k).increment(0);
        metrics::counter!(RECORDS_REPLAYED, "kind" => k).increment(0);
        for reason in crate::routing::Misrouted::ALL {
            metrics::counter!(MISROUTED, "kind" => k, "reason" => reason.as_str()).increment(0);
        }
        for reason in RejectReason::ALL {
            metrics::counter!(RECORDS_REJECTED, "kind" => k, "reason" => reason.as_str())
                .increment(0);
        }
        let (pg_table, ch_table) = match kind {
            EventKind::Rank => ("rank_daily", "rank_events"),
            EventKind::Crawl => ("crawl_hourly", "crawl_events"),
            EventKind::Click => ("click_daily", "click_events"),
        };
        metrics::counter!(sink::SINK_ROWS, "sink" => "postgres", "table" => pg_table).increment(0);
        metrics::counter!(sink::SINK_INSERT_FALLBACKS, "sink" => "postgres", "table" => pg_table)
            .increment(0);
        if clickhouse {
            metrics::counter!(sink::SINK_ROWS, "sink" => "clickhouse", "table" => ch_table)
                .increment(0);
        }
    }
    for outcome in ["committed", "fenced", "aborted", "failed"] {
        metrics::counter!(FLUSHES, "outcome" => outcome).increment(0);
    }
    for kind in ["assign", "revoke"] {
        metrics::counter!(REBALANCES, "kind" => kind).increment(0);
    }
    let mut sinks = vec!["postgres"];
    sinks.extend(clickhouse.then_some("clickhouse"));
    sinks.extend(dead_letters.then_some("dead_letter"));
    for s in &sinks {
        for error_type in ["transient", "permanent", "data"] {
            metrics::counter!(sink::SINK_ERRORS, "sink" => *s, "error_type" => error_type)
                .increment(0);
        }
        metrics::counter!(sink::SINK_RETRIES, "sink" => *s).increment(0);
        // Registered without a sample: exported with zero counts.
        let _ = metrics::histogram!(sink::SINK_WRITE_SECONDS, "sink" => *s);
    }
    metrics::counter!(sink::SINK_ERRORS, "sink" => "postgres", "error_type" => "fenced")
        .increment(0);
    if dead_letters {
        for reason in RejectReason::ALL {
            metrics::counter!(sink::DEAD_LETTERS, "reason" => reason.as_str()).increment(0);
        }
        metrics::counter!(sink::DEAD_LETTERS_TRUNCATED).increment(0);
    }
    for s in sinks.iter().filter(|s| **s != "dead_letter") {
        metrics::counter!(sink::SINK_REFUSED_EVENTS, "sink" => *s).increment(0);
    }
    let _ = metrics::histogram!(FLUSH_SECONDS);
    metrics::gauge!(PAUSED).set(0.0);
    metrics::gauge!(READY).set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sinks::metrics as sink;

    #[test]
    fn every_name_follows_the_scheme() {
        let names = [
            RECORDS_CONSUMED,
            EVENTS_AGGREGATED,
            DUPLICATES,
            RECORDS_REPLAYED,
            DEDUP_KEYS,
            DEDUP_BYTES,
            RECORDS_REJECTED,
            FLUSHES,
            FLUSH_SECONDS,
            FLUSH_INTERVAL_SECONDS,
            BUFFERED_BYTES,
            FLUSHING_BYTES,
            BATCH_BUDGET_BYTES,
            BUFFERED_EVENTS,
            PAUSED,
            REBALANCES,
            ASSIGNED_PARTITIONS,
            FETCH_LAG,
            CONSUMER_LAG,
            BUFFERED_KEYS,
            MISROUTED,
            OLDEST_UNCOMMITTED_AGE,
            READY,
            sink::SINK_WRITE_SECONDS,
            sink::SINK_ROWS,
            sink::SINK_INSERT_FALLBACKS,
            sink::SINK_ERRORS,
            sink::SINK_RETRIES,
            sink::DEAD_LETTERS,
            sink::DEAD_LETTERS_TRUNCATED,
            sink::DEAD_LETTERS_PARKED,
            sink::SINK_REFUSED_EVENTS,
            sluice_producers::metrics::DELIVERY_ERRORS,
        ];
        let outside: Vec<&str> = names.into_iter().filter(|n| !follows_scheme(n)).collect();
        assert!(outside.is_empty(), "outside the naming scheme: {outside:?}");
        let unique: std::collections::BTreeSet<&str> = names.into_iter().collect();
        assert_eq!(unique.len(), names.len(), "a name is defined twice");
    }

    #[test]
    fn the_scheme_check_itself() {
        for good in [
            "sluice_buffer_bytes",
            "sluice_flush_partitions_total",
            "sluice_dead_letters_total",
            "sluice_health_ready",
            "sluice_produce_delivery_errors_total",
        ] {
            assert!(follows_scheme(good), "{good}");
        }
        for bad in [
            "sluice_up",
            "sluice_queue_bytes",
            "sluice_flushing_total",
            "sluice_sinks_rows_total",
            "sluice_producer_errors_total",
            "sluice_flush",
            "sluice_flush_",
            "sluice_flush__x",
            "sluice_Flush_x",
            "other_flush_x",
        ] {
            assert!(!follows_scheme(bad), "{bad}");
        }
    }
}
