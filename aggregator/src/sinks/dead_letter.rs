//! The dead-letter sink: records that failed decoding or validation are re-published, byte for byte,
//! to the dead-letter topic with headers naming why and where from. It is written before the partition's
//! offset may move past those records (step one of a partition flush), so a poison record is never
//! dropped silently; a replay may publish it twice (dead letters are at-least-once — the source
//! coordinates in the headers identify a duplicate).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::{Result, SinkError};

const SINK: &str = "dead_letter";

/// Header names on dead-letter records.
pub mod headers {
    pub const REASON: &str = "sluice-dlq-reason";
    pub const DETAIL: &str = "sluice-dlq-detail";
    pub const SOURCE_TOPIC: &str = "sluice-dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "sluice-dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "sluice-dlq-source-offset";
    /// Prefix of every header Sluice adds; everything else is the original record's.
    pub const PREFIX: &str = "sluice-dlq-";
}

/// A refused record, kept whole until it is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
    /// Low-cardinality reason (a `RejectReason` name).
    pub reason: &'static str,
    pub detail: String,
}

impl DeadLetter {
    pub fn approx_bytes(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, Vec::len) + self.detail.len() + 128
    }
}

/// Publishes dead letters to one topic.
#[derive(Clone)]
pub struct DeadLetterSink {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterSink {
    /// `properties` are extra librdkafka settings (TLS, SASL) shared with the consumer.
    pub fn new(brokers: &str, topic: &str, properties: &[(String, String)]) -> Result<Self> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("client.id", "sluice-dead-letters")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (k, v) in properties {
            cc.set(k, v);
        }
        let producer = cc.create().map_err(|e| SinkError::Permanent {
            sink: SINK,
            message: e.to_string(),
        })?;
        Ok(DeadLetterSink {
            producer,
            topic: topic.to_owned(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes every dead letter of one source partition and waits for all acknowledgements.
    pub async fn publish(
        &self,
        source_topic: &str,
        source_partition: i32,
        letters: &[DeadLetter],
    ) -> Result<()> {
        let mut pending = Vec::with_capacity(letters.len());
        for letter in letters {
            let partition = source_partition.to_string();
            let offset = letter.offset.to_string();
            let mut hs = OwnedHeaders::new_with_capacity(letter.headers.len() + 5);
            for (k, v) in &letter.headers {
                hs = hs.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            hs = hs
                .insert(Header {
                    key: headers::REASON,
                    value: Some(letter.reason),
                })
                .insert(Header {
                    key: headers::DETAIL,
                    value: Some(&letter.detail),
                })
                .insert(Header {
                    key: headers::SOURCE_TOPIC,
                    value: Some(source_topic),
                })
                .insert(Header {
                    key: headers::SOURCE_PARTITION,
                    value: Some(&partition),
                })
                .insert(Header {
                    key: headers::SOURCE_OFFSET,
                    value: Some(&offset),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .payload(&letter.value)
                .headers(hs);
            if let Some(key) = &letter.key {
                record = record.key(key.as_slice());
            }
            if let Some(ts) = letter.timestamp_ms {
                record = record.timestamp(ts);
            }
            // send_result enqueues without waiting; the futures resolve on delivery.
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    return Err(SinkError::Transient {
                        sink: SINK,
                        message: e.to_string(),
                    })
                }
            }
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(SinkError::Transient {
                        sink: SINK,
                        message: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(SinkError::Transient {
                        sink: SINK,
                        message: "delivery report lost".into(),
                    })
                }
            }
        }
        for letter in letters {
            metrics::counter!(crate::metrics::DEAD_LETTERS, "reason" => letter.reason).increment(1);
        }
        Ok(())
    }

    /// Waits for queued records (used at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = rdkafka::producer::Producer::flush(&self.producer, Timeout::After(timeout));
    }
}
