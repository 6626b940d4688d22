//! The rdkafka context: it only forwards what librdkafka reports, on the poll thread. Rebalances go to
//! [`Partitions`] (`assignment`); client errors and statistics update health and the lag gauges, and the
//! total fetch lag the flush schedule reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use super::partitions::Partitions;
use crate::metrics::{CONSUMER_LAG, FETCH_LAG};

/// The rdkafka context: routes rebalances to [`Partitions`] and logs client errors.
#[derive(Debug, Clone)]
pub struct IngestContext {
    pub partitions: Arc<Partitions>,
}

impl ClientContext for IngestContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.partitions.health.brokers_down();
        }
    }

    /// librdkafka's statistics (every `statistics.interval.ms`, on the poll thread): per assigned
    /// partition, the fetch lag (high watermark − next record for the application) feeds the flush
    /// controller, and the commit lag (high watermark − committed offset, i.e. records not yet durable)
    /// is exported.
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Readiness: is any broker connection up? (Bootstrap entries included: a client that never
        // reached one has nothing else.)
        if statistics.brokers.values().any(|b| b.state == "UP") {
            self.partitions.health.brokers_up();
        } else {
            self.partitions.health.brokers_down();
        }
        let assigned: std::collections::HashSet<(usize, i32)> =
            self.partitions.lock().batches.keys().copied().collect();
        let mut fetch_lag_total = 0u64;
        for (topic, t) in &statistics.topics {
            let Some(index) = self.partitions.topics.index(topic) else {
                continue;
            };
            for (&partition, p) in &t.partitions {
                if partition < 0 || !assigned.contains(&(index, partition)) || p.hi_offset < 0 {
                    continue;
                }
                let position = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.committed_offset
                };
                let fetch_lag = if position >= 0 {
                    (p.hi_offset - position).max(0)
                } else {
                    0
                };
                fetch_lag_total += fetch_lag as u64;
                let labels = [
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                metrics::gauge!(FETCH_LAG, &labels).set(fetch_lag as f64);
                if p.consumer_lag >= 0 {
                    metrics::gauge!(CONSUMER_LAG, &labels).set(p.consumer_lag as f64);
                }
            }
        }
        self.partitions
            .fetch_lag
            .store(fetch_lag_total, Ordering::Relaxed);
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.partitions.refresh_partition_counts(consumer, tpl);
                self.partitions.on_assign(tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.partitions.on_revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
    }
}
