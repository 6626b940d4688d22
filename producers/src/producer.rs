//! Events out to Kafka. An [`Event`] becomes one record on its kind's topic: key
//! [`Event::partition_key`], value [`encode`]d in the configured [`Encoding`]; a bincode record also
//! carries the [`ENCODING_HEADER`] header naming its encoding, a JSON record no header (absent means
//! JSON: docs/events.md), which spares librdkafka a header list per record here and in every
//! consumer that reads one. One idempotent librdkafka producer carries two
//! paths: [`EventProducer::send`] awaits each record's delivery report, and [`EventProducer::enqueue`]
//! hands records to librdkafka's queue without waiting (for high rates); delivery reports of both
//! land in one callback that counts successes and failures ([`EventProducer::stats`]; failures also
//! as the `sluice_produce_delivery_errors_total{topic}` metric).
//!
//! **Unconfirmed deliveries are sent again.** librdkafka can report a record as delivered that the
//! broker never wrote: when a batch is refused (e.g. "not leader", seen on a partition that was just
//! created or is changing leader) and a later batch of the same partition is written before the
//! refused one's retry, librdkafka takes the later success as proof of the earlier batch ("implicitly
//! acked by subsequent batch success", confluent-kafka-go issue 921) and reports its records as
//! successes without an offset. A broker that has no sequence state yet for this producer on that
//! partition accepts the later batch, so the refused records are lost. Every success without an
//! offset is therefore treated as unconfirmed and the record is produced again (at most
//! [`MAX_UNCONFIRMED_RESENDS`] times): Sluice events carry idempotent keys, so a copy that did land
//! after all is dropped by ingest's dedup window, while a lost record would be lost for good.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientContext, Message};
use sluice_schemas::{encode, encode_into, Encoding, Event, EventKind, ENCODING_HEADER};
use tokio::sync::oneshot;

use crate::config::ProducerConfig;
use crate::metrics::{DELIVERY_ERRORS, UNCONFIRMED_DELIVERIES};
use crate::polled::PolledProducer;

/// How long to wait for librdkafka's local queue to drain a little when it is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// How many times one record is produced again after deliveries that librdkafka reported without an
/// offset (see the module docs); after that its delivery counts as failed.
pub const MAX_UNCONFIRMED_RESENDS: u32 = 5;

/// Whether a delivery librdkafka reported as a success confirms that the record was written: only
/// when it comes with an offset (see the module docs). Every Sluice producer decides by this.
pub fn is_confirmed(offset: i64) -> bool {
    offset >= 0
}

/// What a failed produce reports.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// librdkafka refused the configuration (unknown property, bad value).
    #[error("cannot create kafka producer: {0}")]
    Create(#[source] KafkaError),
    /// The thread that serves delivery reports could not be started.
    #[error("cannot start the kafka producer's polling thread: {0}")]
    PollThread(#[source] std::io::Error),
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
    /// Every delivery of the record was reported without an offset, [`MAX_UNCONFIRMED_RESENDS`] + 1
    /// times: it may not have been written.
    #[error("delivery to topic {topic} unconfirmed after {attempts} attempts (success reported without an offset)")]
    Unconfirmed { topic: String, attempts: u32 },
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
    /// Records the brokers acknowledged with an offset.
    pub delivered: u64,
    /// Records that failed for good (timed out, rejected, purged at shutdown, or unconfirmed more
    /// than [`MAX_UNCONFIRMED_RESENDS`] times).
    pub failed: u64,
    /// Deliveries reported as successes without an offset, whose records were produced again (see
    /// the module docs). Not part of `delivered` or `failed`: each such record ends in one of them.
    pub resent: u64,
}

/// What the delivery callback tells an awaiting [`EventProducer::send`].
#[derive(Debug)]
enum Report {
    /// Written at this (partition, offset).
    Written(i32, i64),
    /// Reported as delivered without an offset: the caller produces the record again.
    Unconfirmed,
}

/// Where an [`EventProducer::send`] caller waits for its record's report.
type Waiter = oneshot::Sender<Result<Report, KafkaError>>;

/// A record's delivery opaque: how many times it was produced again and, for a `send`, the id of its
/// waiter in [`DeliveryContext::waiters`] (0: nobody waits, the `enqueue` path). Packed into the
/// pointer-sized value librdkafka hands back with the report ([`Opaque::pack`]), so a record carries no
/// allocation of its own: a boxed opaque was one allocation per record, freed on librdkafka's polling
/// thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Opaque {
    waiter: u64,
    resends: u32,
}

// The resend count must fit the opaque's low 8 bits.
const _: () = assert!(MAX_UNCONFIRMED_RESENDS < 256);

impl Opaque {
    /// The resend count in the low 8 bits (it never exceeds [`MAX_UNCONFIRMED_RESENDS`]), the waiter id
    /// above them.
    fn pack(self) -> usize {
        ((self.waiter as usize) << 8) | (self.resends as usize & 0xFF)
    }

    fn unpack(packed: usize) -> Self {
        Opaque {
            waiter: (packed >> 8) as u64,
            resends: (packed & 0xFF) as u32,
        }
    }
}

/// A reported record's waiter (taken from the table) and how many times it was produced again.
#[derive(Debug)]
struct Pending {
    waiter: Option<Waiter>,
    resends: u32,
}

/// An `enqueue`d record whose delivery was unconfirmed, waiting to be produced again by the next
/// [`EventProducer::enqueue`] or [`EventProducer::flush`] (the delivery callback cannot produce).
struct Resend {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Option<OwnedHeaders>,
    resends: u32,
}

/// librdkafka's callbacks: delivery reports (counted, and forwarded to an awaiting `send`), and the
/// client's own logs and errors (forwarded to `tracing`).
#[derive(Default)]
struct DeliveryContext {
    delivered: AtomicU64,
    failed: AtomicU64,
    resent: AtomicU64,
    /// Records handed to librdkafka by `enqueue` and `send` (not counting their resends): each ends
    /// as one `delivered` or one `failed`.
    handed: AtomicU64,
    last_error: Mutex<Option<String>>,
    resend: Mutex<Vec<Resend>>,
    /// How many records wait in `resend` (read without the lock by every `enqueue`).
    resend_queued: AtomicUsize,
    /// The waiting `send` callers, by the id their record's opaque carries.
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// The last waiter id handed out (ids start at 1: 0 means "nobody waits").
    last_waiter: AtomicU64,
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

impl DeliveryContext {
    /// Registers a `send` caller's waiter; returns the id its record's opaque carries.
    fn add_waiter(&self, waiter: Waiter) -> u64 {
        // Ids fit the opaque's upper bits: 56 of them on 64-bit targets (never wrapping in practice).
        let limit = (usize::MAX >> 8) as u64;
        let id = self.last_waiter.fetch_add(1, Ordering::Relaxed) % limit + 1;
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(id, waiter);
        }
        id
    }

    /// Takes the waiter of id `id` out of the table (once: its record's report, or its refusal).
    fn take_waiter(&self, id: u64) -> Option<Waiter> {
        if id == 0 {
            return None;
        }
        self.waiters.lock().ok()?.remove(&id)
    }

    /// Counts a failure for good (warning on the first, then the counter tells the story).
    fn fail(&self, topic: &str, error: &dyn std::fmt::Display) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        // Failures only (never the success path); `topic` is one of the configured topics.
        metrics::counter!(DELIVERY_ERRORS, "topic" => topic.to_owned()).increment(1);
        if failed == 1 {
            tracing::warn!(%error, topic, "record delivery failed");
        } else {
            tracing::debug!(%error, topic, "record delivery failed");
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{error} (topic {topic})"));
        }
    }

    /// A success without an offset: produce the record again (see the module docs).
    fn unconfirmed(&self, msg: &rdkafka::message::BorrowedMessage<'_>, pending: Pending) {
        let topic = msg.topic();
        if pending.resends >= MAX_UNCONFIRMED_RESENDS {
            let attempts = pending.resends + 1;
            self.fail(
                topic,
                &format!("unconfirmed after {attempts} attempts (success without an offset)"),
            );
            if let Some(tx) = pending.waiter {
                let _ = tx.send(Ok(Report::Unconfirmed));
            }
            return;
        }
        let resent = self.resent.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!(UNCONFIRMED_DELIVERIES, "topic" => topic.to_owned()).increment(1);
        if resent == 1 {
            tracing::warn!(
                topic,
                partition = msg.partition(),
                "delivery reported without an offset (librdkafka's implicit ack): producing the record again"
            );
        }
        match pending.waiter {
            // The awaiting `send` produces it again itself, unless it was cancelled: then nobody
            // will, and the record settles as failed (so `flush` does not wait for it).
            Some(tx) => {
                if tx.send(Ok(Report::Unconfirmed)).is_err() {
                    self.fail(topic, &"delivery unconfirmed, and its `send` was cancelled");
                }
            }
            None => {
                let record = Resend {
                    topic: topic.to_owned(),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().unwrap_or_default().to_vec(),
                    headers: msg.headers().map(|h| h.detach()),
                    resends: pending.resends + 1,
                };
                if let Ok(mut queue) = self.resend.lock() {
                    queue.push(record);
                    self.resend_queued.store(queue.len(), Ordering::Relaxed);
                }
            }
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let Opaque { waiter, resends } = Opaque::unpack(opaque);
        let pending = Pending {
            waiter: self.take_waiter(waiter),
            resends,
        };
        let outcome = match result {
            // librdkafka reports an implicitly acked record with an invalid offset.
            Ok(msg) if !is_confirmed(msg.offset()) => return self.unconfirmed(msg, pending),
            Ok(msg) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(Report::Written(msg.partition(), msg.offset()))
            }
            Err((error, msg)) => {
                self.fail(msg.topic(), error);
                Err(error.clone())
            }
        };
        if let Some(tx) = pending.waiter {
            // The awaiting `send` may have been cancelled; its report is then nobody's business.
            let _ = tx.send(outcome);
        }
    }
}

/// An idempotent (`enable.idempotence=true`, `acks=all`) Kafka producer of Sluice events.
///
/// Cheap to share behind an `Arc`; all methods take `&self`. Dropping it purges whatever is still
/// queued (counted as failed): call [`flush`](Self::flush) first.
///
/// Delivery reports are served by a polling thread of its own ([`PolledProducer`]). Dropping the
/// producer does not wait for that thread: it stops after its current wait, and the client closes when
/// it does.
pub struct EventProducer {
    producer: PolledProducer<DeliveryContext>,
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
        let producer = PolledProducer::new(
            &config.client_config()?,
            DeliveryContext::default(),
            "produce-poll",
        )?;
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
        self.send_with(topic, Some(key.as_bytes()), &value, self.encoding_headers())
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

    /// Publishes one record exactly as given (key, value, headers) and waits for the broker's
    /// acknowledgement; returns `(partition, offset)`. For re-publishing records read from Kafka
    /// (`sluice-ingest dead-letters republish`): they get this producer's partitioner and re-sends.
    pub async fn send_record(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(i32, i64), ProduceError> {
        self.send_with(topic, key, value, Some(headers)).await
    }

    async fn send_with(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(i32, i64), ProduceError> {
        let ctx = self.producer.context();
        let mut resends = 0;
        loop {
            let (tx, rx) = oneshot::channel();
            let opaque = Opaque {
                waiter: ctx.add_waiter(tx),
                resends,
            };
            // Until librdkafka has the record, a refusal or a cancelled `send` takes the waiter back.
            let unsent = Unsent(ctx, opaque.waiter);
            let mut record = record(topic, key, value, headers.clone(), opaque);
            loop {
                match self.producer.send(record) {
                    Ok(()) => {
                        std::mem::forget(unsent);
                        break;
                    }
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
            if resends == 0 {
                ctx.handed.fetch_add(1, Ordering::Relaxed);
            }
            match rx.await {
                Ok(Ok(Report::Written(partition, offset))) => return Ok((partition, offset)),
                Ok(Ok(Report::Unconfirmed)) if resends < MAX_UNCONFIRMED_RESENDS => resends += 1,
                Ok(Ok(Report::Unconfirmed)) => {
                    return Err(ProduceError::Unconfirmed {
                        topic: topic.to_owned(),
                        attempts: resends + 1,
                    })
                }
                Ok(Err(source)) => {
                    return Err(ProduceError::Delivery {
                        topic: topic.to_owned(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ProduceError::ReportLost {
                        topic: topic.to_owned(),
                    })
                }
            }
        }
    }

    /// Hands one event to librdkafka without waiting for its delivery: the outcome shows up in
    /// [`stats`](Self::stats). When the local queue is full it serves delivery reports and retries
    /// (blocking the calling thread) instead of dropping the event. An error here means librdkafka
    /// refused the record outright; such a record is not counted in `stats`. Records whose delivery
    /// was unconfirmed are produced again first (see the module docs).
    pub fn enqueue(&self, event: &Event) -> Result<(), ProduceError> {
        self.produce_resends();
        let topic = self.config.topic(event.kind());
        // librdkafka copies key and value, so one pair of buffers per thread serves every record.
        SCRATCH.with_borrow_mut(|(key, value)| {
            event.partition_key_into(key);
            encode_into(event, self.config.encoding, value);
            self.produce_queued(
                topic,
                Some(key.as_bytes()),
                value,
                self.encoding_headers(),
                Opaque::default(),
            )
        })?;
        self.producer
            .context()
            .handed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until every record handed to this producer has its final outcome — delivered with an
    /// offset, or failed — producing unconfirmed ones again meanwhile, or until `timeout` passes.
    /// Blocks the calling thread (use `spawn_blocking` from async code that must stay responsive).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.producer
                .flush(deadline.saturating_duration_since(Instant::now()))
                .map_err(|source| ProduceError::Flush {
                    in_flight: self.in_flight(),
                    source,
                })?;
            // A report served on librdkafka's polling thread may still be queueing its record.
            let resent = self.produce_resends();
            let ctx = self.producer.context();
            let settled =
                ctx.delivered.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed);
            if resent == 0 && settled >= ctx.handed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProduceError::Flush {
                    in_flight: self.in_flight(),
                    source: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
                });
            }
            if resent == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Delivery reports so far (both paths).
    pub fn stats(&self) -> DeliveryStats {
        let ctx = self.producer.context();
        DeliveryStats {
            delivered: ctx.delivered.load(Ordering::Relaxed),
            failed: ctx.failed.load(Ordering::Relaxed),
            resent: ctx.resent.load(Ordering::Relaxed),
        }
    }

    /// Records queued or in flight, still waiting for a delivery report, and unconfirmed ones
    /// waiting to be produced again.
    pub fn in_flight(&self) -> i32 {
        let waiting = self
            .producer
            .context()
            .resend
            .lock()
            .map_or(0, |queue| queue.len());
        self.producer.in_flight_count() + i32::try_from(waiting).unwrap_or(i32::MAX)
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

    /// Hands one record to librdkafka, serving delivery reports while its local queue is full.
    fn produce_queued(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
        opaque: Opaque,
    ) -> Result<(), ProduceError> {
        let mut record = record(topic, key, payload, headers, opaque);
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

    /// Produces again the `enqueue`d records whose deliveries were unconfirmed; returns how many.
    /// One that librdkafka now refuses outright counts as failed.
    fn produce_resends(&self) -> usize {
        let ctx = self.producer.context();
        if ctx.resend_queued.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let queued = ctx
            .resend
            .lock()
            .map(|mut queue| {
                ctx.resend_queued.store(0, Ordering::Relaxed);
                std::mem::take(&mut *queue)
            })
            .unwrap_or_default();
        let n = queued.len();
        for record in queued {
            let opaque = Opaque {
                waiter: 0,
                resends: record.resends,
            };
            if let Err(err) = self.produce_queued(
                &record.topic,
                record.key.as_deref(),
                &record.payload,
                record.headers,
                opaque,
            ) {
                ctx.fail(&record.topic, &err);
            }
        }
        n
    }

    /// The headers of an event's record: none for JSON, the default a consumer assumes when the header
    /// is absent; `sluice-encoding: bincode` for bincode.
    fn encoding_headers(&self) -> Option<OwnedHeaders> {
        match self.config.encoding {
            Encoding::Json => None,
            encoding => Some(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: ENCODING_HEADER,
                value: Some(encoding.as_str()),
            })),
        }
    }
}

impl Drop for EventProducer {
    /// Purges what is still queued or in flight (each counted as failed, as its report is served
    /// here); then the polling thread is told to stop, and the client closes when that thread ends its
    /// wait. This is what rdkafka's `BaseProducer` does when dropped, done now rather than up to
    /// [`POLL_PERIOD`](crate::polled::POLL_PERIOD) later when the polling thread lets go of it (by then there is nothing left).
    fn drop(&mut self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        // Serves the purge's reports (returns at once when nothing was left).
        if let Err(error) = self.producer.flush(Duration::from_millis(500)) {
            tracing::debug!(%error, "serving the purged records' reports at drop");
        }
    }
}

/// A registered waiter whose record librdkafka does not have (yet): dropping it takes the waiter out
/// of the table, so neither a refused record nor a `send` cancelled while the queue was full leaves one
/// behind.
struct Unsent<'a>(&'a DeliveryContext, u64);

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        self.0.take_waiter(self.1);
    }
}

thread_local! {
    /// The key and value buffers [`EventProducer::enqueue`] encodes each record into.
    static SCRATCH: RefCell<(String, Vec<u8>)> = const { RefCell::new((String::new(), Vec::new())) };
}

/// One record for librdkafka, its [`Opaque`] (packed) as the opaque of its delivery report.
fn record<'a>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    headers: Option<OwnedHeaders>,
    opaque: Opaque,
) -> BaseRecord<'a, [u8], [u8], usize> {
    let mut record = BaseRecord::with_opaque_to(topic, opaque.pack()).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opaque_packs_into_one_word_and_back() {
        // Low 8 bits: resends; above: the waiter id (written out by hand).
        assert_eq!(Opaque::default().pack(), 0);
        assert_eq!(
            Opaque {
                waiter: 3,
                resends: 5
            }
            .pack(),
            3 * 256 + 5
        );
        for opaque in [
            Opaque::default(),
            Opaque {
                waiter: 0,
                resends: MAX_UNCONFIRMED_RESENDS,
            },
            Opaque {
                waiter: 1,
                resends: 0,
            },
            Opaque {
                waiter: (usize::MAX >> 8) as u64,
                resends: MAX_UNCONFIRMED_RESENDS,
            },
        ] {
            assert_eq!(Opaque::unpack(opaque.pack()), opaque);
        }
    }

    #[test]
    fn waiters_are_taken_once_and_an_unsent_record_leaves_none_behind() {
        let ctx = DeliveryContext::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        let (tx3, _rx3) = oneshot::channel();
        let (a, b, c) = (
            ctx.add_waiter(tx1),
            ctx.add_waiter(tx2),
            ctx.add_waiter(tx3),
        );
        assert_eq!((a, b, c), (1, 2, 3));
        // 0 means "nobody waits": never a registered id.
        assert!(ctx.take_waiter(0).is_none());

        let waiter = ctx.take_waiter(a).expect("a's waiter");
        waiter.send(Ok(Report::Written(4, 7))).unwrap();
        assert!(matches!(rx1.try_recv(), Ok(Ok(Report::Written(4, 7)))));
        assert!(ctx.take_waiter(a).is_none(), "taken twice");

        // A record librdkafka never got (refused, or its `send` cancelled while the queue was full).
        drop(Unsent(&ctx, b));
        assert!(ctx.take_waiter(b).is_none());
        // One it got: the guard is forgotten and the waiter stays for the report.
        std::mem::forget(Unsent(&ctx, c));
        assert!(ctx.take_waiter(c).is_some());
        assert!(ctx.waiters.lock().unwrap().is_empty());
    }
}
