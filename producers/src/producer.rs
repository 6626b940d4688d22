//! Events out to Kafka. An [`Event`] becomes one record on its kind's topic: key
//! [`Event::partition_key`], value [`encode`]d in the configured [`Encoding`], and the
//! [`ENCODING_HEADER`] header naming that encoding. One idempotent librdkafka producer carries two
//! paths: [`EventProducer::send`] awaits each record's delivery report, and [`EventProducer::enqueue`]
//! hands records to librdkafka's queue without waiting (for high rates); delivery reports of both
//! land in one callback that counts successes and failures ([`EventProducer::stats`]; failures also
//! as the `sluice_produce_delivery_errors_total{topic}` metric).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use sluice_schemas::{encode, Encoding, Event, EventKind, ENCODING_HEADER};
use tokio::sync::oneshot;

use crate::config::ProducerConfig;
use crate::metrics::DELIVERY_ERRORS;

/// How long to wait for librdkafka's local queue to drain a little when it is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// What a failed produce reports.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// librdkafka refused the configuration (unknown property, bad value).
    #[error("cannot create kafka producer: {0}")]
    Create(#[source] KafkaError),
    /// The SASL password file (`sasl_password_file`, `--kafka-sasl-password-file`) cannot be read.
    #[error("cannot read the kafka SASL password file (--kafka-sasl-password-file, env SLUICE_KAFKA_SASL_PASSWORD_FILE) {}: {source}", path.display())]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// librdkafka refused the record before queueing it (too large, unknown partition, fatal state).
    #[error("cannot enqueue record for topic {topic}: {source}")]
    Enqueue {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The broker did not acknowledge the record (timed out, rejected, producer fenced).
    #[error("delivery to topic {topic} failed: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The delivery report never came: the producer was dropped with the record in flight.
    #[error("delivery report for topic {topic} was lost (producer shut down)")]
    ReportLost { topic: String },
    /// `flush` ran out of time with records still queued or in flight.
    #[error("flush did not finish: {in_flight} records still in flight: {source}")]
    Flush {
        in_flight: i32,
        #[source]
        source: KafkaError,
    },
}

/// Delivery reports received so far, over every record this producer sent by any path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryStats {
    /// Records the brokers acknowledged.
    pub delivered: u64,
    /// Records that failed for good (timed out, rejected, purged at shutdown).
    pub failed: u64,
}

/// Where and whether a [`EventProducer::send`] caller waits for its record's report.
type Waiter = Option<oneshot::Sender<Result<(i32, i64), KafkaError>>>;

/// librdkafka's callbacks: delivery reports (counted, and forwarded to an awaiting `send`), and the
/// client's own logs and errors (forwarded to `tracing`).
#[derive(Debug, Default)]
struct DeliveryContext {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, detail = log_message, "librdkafka log")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(facility = fac, detail = log_message, "librdkafka log")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, detail = log_message, "librdkafka log")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(facility = fac, detail = log_message, "librdkafka log")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Waiter>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Box<Waiter>) {
        let outcome = match result {
            Ok(msg) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                Ok((msg.partition(), msg.offset()))
            }
            Err((error, msg)) => {
                let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
                // Failures only (never the success path); `topic` is one of the configured topics.
                metrics::counter!(DELIVERY_ERRORS, "topic" => msg.topic().to_owned()).increment(1);
                // The first failure is worth a warning; after that the counter tells the story.
                if failed == 1 {
                    tracing::warn!(%error, topic = msg.topic(), "record delivery failed");
                } else {
                    tracing::debug!(%error, topic = msg.topic(), "record delivery failed");
                }
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(format!("{} (topic {})", error, msg.topic()));
                }
                Err(error.clone())
            }
        };
        if let Some(tx) = *waiter {
            // The awaiting `send` may have been cancelled; its report is then nobody's business.
            let _ = tx.send(outcome);
        }
    }
}

/// An idempotent (`enable.idempotence=true`, `acks=all`) Kafka producer of Sluice events.
///
/// Cheap to share behind an `Arc`; all methods take `&self`. Dropping it purges whatever is still
/// queued (counted as failed): call [`flush`](Self::flush) first.
pub struct EventProducer {
    producer: ThreadedProducer<DeliveryContext>,
    config: ProducerConfig,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EventProducer {
    /// Creates the producer. Connecting happens in the background: an unreachable broker shows up
    /// as delivery failures after `message.timeout.ms`, not here.
    pub fn new(config: ProducerConfig) -> Result<Self, ProduceError> {
        let producer = ThreadedProducer::from_config_and_context(
            &config.client_config()?,
            DeliveryContext::default(),
        )
        .map_err(ProduceError::Create)?;
        tracing::debug!(brokers = %config.brokers, encoding = config.encoding.as_str(), "kafka producer created");
        Ok(EventProducer { producer, config })
    }

    /// The settings this producer was built with.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The topic events of `kind` are written to.
    pub fn topic(&self, kind: EventKind) -> &str {
        self.config.topic(kind)
    }

    /// The encoding of record values.
    pub fn encoding(&self) -> Encoding {
        self.config.encoding
    }

    /// Publishes one event and waits for the broker's acknowledgement; returns `(partition, offset)`.
    /// Waits (without dropping the record) while librdkafka's local queue is full.
    pub async fn send(&self, event: &Event) -> Result<(i32, i64), ProduceError> {
        let key = event.partition_key();
        let value = encode(event, self.config.encoding);
        let topic = self.config.topic(event.kind());
        self.send_record(topic, Some(key.as_bytes()), &value, self.encoding_headers())
            .await
    }

    /// Publishes arbitrary bytes (for tests that need malformed records: invalid JSON, wrong or
    /// missing headers, no key) and waits for the acknowledgement; returns `(partition, offset)`.
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(i32, i64), ProduceError> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for &(name, header_value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(header_value),
            });
        }
        self.send_record(topic, key, value, owned).await
    }

    /// Hands one event to librdkafka without waiting for its delivery: the outcome shows up in
    /// [`stats`](Self::stats). When the local queue is full it serves delivery reports and retries
    /// (blocking the calling thread) instead of dropping the event. An error here means librdkafka
    /// refused the record outright; such a record is not counted in `stats`.
    pub fn enqueue(&self, event: &Event) -> Result<(), ProduceError> {
        let key = event.partition_key();
        let value = encode(event, self.config.encoding);
        let topic = self.config.topic(event.kind());
        let mut record: BaseRecord<'_, [u8], [u8], Box<Waiter>> =
            BaseRecord::with_opaque_to(topic, Box::new(None))
                .key(key.as_bytes())
                .payload(&value[..])
                .headers(self.encoding_headers());
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    self.producer.poll(QUEUE_FULL_BACKOFF);
                }
                Err((source, _)) => {
                    return Err(ProduceError::Enqueue {
                        topic: topic.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Waits until every queued record has a delivery report, or `timeout` passes. Blocks the
    /// calling thread (use `spawn_blocking` from async code that must stay responsive).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer
            .flush(timeout)
            .map_err(|source| ProduceError::Flush {
                in_flight: self.producer.in_flight_count(),
                source,
            })
    }

    /// Delivery reports so far (both paths).
    pub fn stats(&self) -> DeliveryStats {
        let ctx = self.producer.context();
        DeliveryStats {
            delivered: ctx.delivered.load(Ordering::Relaxed),
            failed: ctx.failed.load(Ordering::Relaxed),
        }
    }

    /// Records queued or in flight, still waiting for a delivery report.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// The most recent delivery failure, for a final error message.
    pub fn last_delivery_error(&self) -> Option<String> {
        self.producer
            .context()
            .last_error
            .lock()
            .ok()
            .and_then(|last| last.clone())
    }

    fn encoding_headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(1).insert(Header {
            key: ENCODING_HEADER,
            value: Some(self.config.encoding.as_str()),
        })
    }

    async fn send_record(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(i32, i64), ProduceError> {
        let (tx, rx) = oneshot::channel();
        let mut record: BaseRecord<'_, [u8], [u8], Box<Waiter>> =
            BaseRecord::with_opaque_to(topic, Box::new(Some(tx)))
                .payload(value)
                .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((source, _)) => {
                    return Err(ProduceError::Enqueue {
                        topic: topic.to_owned(),
                        source,
                    })
                }
            }
        }
        match rx.await {
            Ok(Ok(position)) => Ok(position),
            Ok(Err(source)) => Err(ProduceError::Delivery {
                topic: topic.to_owned(),
                source,
            }),
            Err(_) => Err(ProduceError::ReportLost {
                topic: topic.to_owned(),
            }),
        }
    }
}
