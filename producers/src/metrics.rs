//! Names of the metrics this crate records, in one place (Prometheus conventions: units in names,
//! `_total` for counters, bounded labels only). They go to whatever `metrics` recorder the embedding
//! process installed; with none (the `sluice-produce` CLI), recording is a no-op and
//! [`EventProducer::stats`](crate::EventProducer::stats) is the way to read the counts. Names follow the
//! project's scheme `sluice_<component>_<what>[_<unit>][_total]` (docs/observability.md "Naming"); this
//! crate's component is `produce`.

/// Counter: records whose delivery failed for good (timed out, rejected by the broker, purged at
/// shutdown), counted in the delivery callback. Labels: `topic` (the producer's configured topics).
pub const DELIVERY_ERRORS: &str = "sluice_produce_delivery_errors_total";

/// Counter: deliveries librdkafka reported as successes without an offset (implicitly acked after a
/// refused batch), whose records the producer sent again (crate `producer` module docs). Labels:
/// `topic`.
pub const UNCONFIRMED_DELIVERIES: &str = "sluice_produce_unconfirmed_deliveries_total";
