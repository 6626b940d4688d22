//! The dead-letter sink: records that failed decoding or validation are re-published, byte for byte,
//! to the dead-letter topic with headers naming why and where from; events a database refused after
//! validation (`sink_refused`) are published as the event re-encoded in JSON (the raw bytes of accepted
//! records are not kept after decoding). It is written before the partition's offset may move past
//! those records (step one of a partition flush), so a poison record is never dropped silently; a replay
//! may publish it twice (dead letters are at-least-once — the source coordinates in the headers
//! identify a duplicate).
//!
//! The path never blocks: a record too large for the client's `message.max.bytes` (headers included)
//! is sent as a truncated copy — a prefix of its value, with headers giving the original size and the
//! SHA-256 of the original value — and when the broker refuses a copy as too large, a smaller one is
//! tried ([`FORMS`]). A publish error that retrying cannot fix (too large even when truncated, topic
//! unknown or not authorised, invalid record) is not retried: the letter comes back to the caller as
//! [`Parked`], which stores it in PostgreSQL (`sluice_dead_letters`) in the transaction that moves the
//! offset. Transient errors are the caller's to retry, within a bound (`flush`). So is a letter that
//! librdkafka reports as delivered without an offset (its "implicit ack" of a refused batch that a later
//! one overtook: the letter may never have been written, docs/events.md "Unconfirmed deliveries").
//!
//! The sink's two librdkafka producers are [`PolledProducer`]s, whose polling threads wait up to a
//! second per call. They were rdkafka `FutureProducer`s, whose polling threads spin through the last
//! millisecond of every 100 ms poll (docs/BENCHMARKS.md, sessions 18 and 21): about 2 % of a busy
//! ingest's CPU, from the first letter on. They are created when the first letter comes, not at start,
//! so an ingest that dead-letters nothing has neither the threads nor the clients; the settings are
//! still checked at start ([`DeadLetterSink::new`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::util::Timeout;
use sha2::{Digest, Sha256};
use sluice_producers::{Awaited, PolledProducer};

pub use sluice_aggregator::DeadLetter;

use crate::error::{Result, SinkError};

const SINK: &str = "dead_letter";

/// Header names on dead-letter records.
pub mod headers {
    pub const REASON: &str = "sluice-dlq-reason";
    pub const DETAIL: &str = "sluice-dlq-detail";
    pub const SOURCE_TOPIC: &str = "sluice-dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "sluice-dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "sluice-dlq-source-offset";
    /// On a truncated copy only: `true`.
    pub const TRUNCATED: &str = "sluice-dlq-truncated";
    /// On a truncated copy only: the original value's length in bytes.
    pub const ORIGINAL_SIZE: &str = "sluice-dlq-original-size";
    /// On a truncated copy only: the SHA-256 of the original value, lowercase hex.
    pub const SHA256: &str = "sluice-dlq-sha256";
    /// Prefix of every header Sluice adds; everything else is the original record's.
    pub const PREFIX: &str = "sluice-dlq-";
}

/// A dead letter the topic could not take, with why: the caller stores it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub letter: DeadLetter,
    /// The publish error (Kafka error name and text).
    pub cause: String,
}

/// librdkafka's default `message.max.bytes`: the largest record (key, value and headers) the client
/// sends.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// What each record carries besides key, value and headers, plus slack (librdkafka counts a record's
/// wire size with its framing).
const RECORD_OVERHEAD: usize = 1024;

/// The shapes a dead letter is tried in, in order, each only after the previous was refused as too
/// large (all but the first through a producer that sends each record in a batch of its own: the
/// topic's `max.message.bytes` limits a whole batch, so a small copy batched with a large record
/// would be refused with it): `None` is the whole record (when it fits the client's limit); `Some(n)`
/// a truncated copy whose value is at most `n` bytes (the first one also at most what fits the client's limit), with the
/// original headers only if they fit in [`KEPT_HEADER_BYTES`], the key at most [`KEPT_KEY_BYTES`] and
/// the detail at most [`KEPT_DETAIL_BYTES`].
pub const FORMS: [Option<usize>; 5] = [None, None, Some(usize::MAX), Some(16 * 1024), Some(512)];
pub const KEPT_HEADER_BYTES: usize = 4 * 1024;
pub const KEPT_KEY_BYTES: usize = 1024;
pub const KEPT_DETAIL_BYTES: usize = 1024;

/// How a publish error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The record is too large for the client or the broker: try a smaller copy.
    TooLarge,
    /// Retrying cannot fix it (topic unknown, not authorised, record invalid): park the letter.
    Permanent,
    /// May pass (broker unreachable, leader moving, queue full, timed out): retry, within a bound.
    Transient,
}

/// Classifies a producer error by its librdkafka code.
pub fn classify_publish(e: &KafkaError) -> PublishError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => {
            PublishError::TooLarge
        }
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::InvalidTopic
            | C::InvalidRecord
            | C::InvalidMessage
            | C::UnsupportedForMessageFormat
            | C::PolicyViolation
            | C::InvalidRequiredAcks
            | C::InvalidArgument
            | C::Fatal,
        ) => PublishError::Permanent,
        _ => PublishError::Transient,
    }
}

/// Publishes dead letters to one topic.
#[derive(Clone)]
pub struct DeadLetterSink {
    config: ClientConfig,
    /// Created with the first letter (see the module doc); shared by the clones.
    producers: Arc<OnceLock<Producers>>,
    topic: String,
    max_record_bytes: usize,
}

struct Producers {
    batched: PolledProducer<Awaited>,
    /// Sends each record in a batch of its own (`batch.num.messages=1`): for the retries of a record
    /// refused as too large.
    single: PolledProducer<Awaited>,
}

impl Producers {
    fn create(config: &ClientConfig) -> Result<Producers> {
        let create = |config: &ClientConfig, thread: &str| {
            PolledProducer::new(config, Awaited, thread)
                .map_err(|e| SinkError::permanent(SINK, e.to_string()))
        };
        let batched = create(config, "dlq-poll-batch")?;
        let single = create(
            config
                .clone()
                .set("client.id", "sluice-dead-letters-single")
                .set("batch.num.messages", "1")
                .set("linger.ms", "0"),
            "dlq-poll-single",
        )?;
        Ok(Producers { batched, single })
    }
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("topic", &self.topic)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

/// What became of one letter in one attempt.
enum Sent {
    Delivered { truncated: bool },
    Parked(String),
    Transient(String),
}

impl DeadLetterSink {
    /// `properties` are extra librdkafka settings (TLS, SASL) shared with the consumer; a
    /// `message.max.bytes` among them sets the size above which a dead letter is truncated.
    pub fn new(brokers: &str, topic: &str, properties: &[(String, String)]) -> Result<Self> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("client.id", "sluice-dead-letters")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        let mut max_record_bytes = DEFAULT_MAX_RECORD_BYTES;
        for (k, v) in properties {
            cc.set(k, v);
            if k == "message.max.bytes" {
                max_record_bytes = v.parse().map_err(|_| {
                    SinkError::permanent(
                        SINK,
                        format!("invalid librdkafka property message.max.bytes={v:?}: expected a number of bytes"),
                    )
                })?;
            }
        }
        // Idempotent, and keyed letters on murmur2's partition like every Sluice producer.
        let config = sluice_producers::require_contract(cc);
        // A setting librdkafka refuses fails here, at start, not with the first letter: the producers
        // are created once to check them, and dropped.
        drop(Producers::create(&config)?);
        Ok(DeadLetterSink {
            config,
            producers: Arc::new(OnceLock::new()),
            topic: topic.to_owned(),
            max_record_bytes,
        })
    }

    /// The producers, created on first use. `Err` only if librdkafka refuses settings it took at
    /// start (then nothing is published and the letters are retried as a transient failure).
    fn producers(&self) -> std::result::Result<&Producers, String> {
        if let Some(producers) = self.producers.get() {
            return Ok(producers);
        }
        let created = Producers::create(&self.config).map_err(|e| e.to_string())?;
        // Another letter may have created them meanwhile: its pair is kept, this one dropped.
        Ok(self.producers.get_or_init(|| created))
    }

    /// Whether the producers exist yet (they are created with the first letter).
    #[cfg(test)]
    fn started(&self) -> bool {
        self.producers.get().is_some()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes every dead letter of one source partition and waits for all acknowledgements. Returns
    /// the letters the topic cannot take (see the module doc), for the caller to park; `Err` is a
    /// transient error (some letters may have been published: retrying publishes them again).
    pub async fn publish(
        &self,
        source_topic: &str,
        source_partition: i32,
        letters: &[DeadLetter],
    ) -> Result<Vec<Parked>> {
        let sends = letters
            .iter()
            .map(|letter| self.publish_one(source_topic, source_partition, letter));
        let results = join_all(sends).await;
        let mut parked = Vec::new();
        let mut transient = None;
        for (letter, sent) in letters.iter().zip(results) {
            match sent {
                Sent::Delivered { truncated } => {
                    metrics::counter!(crate::metrics::DEAD_LETTERS, "reason" => letter.reason)
                        .increment(1);
                    if truncated {
                        metrics::counter!(crate::metrics::DEAD_LETTERS_TRUNCATED).increment(1);
                    }
                }
                Sent::Parked(cause) => {
                    tracing::warn!(
                        source_topic,
                        source_partition,
                        offset = letter.offset,
                        reason = letter.reason,
                        %cause,
                        "dead-letter topic cannot take the record; it is parked in PostgreSQL"
                    );
                    parked.push(Parked {
                        letter: letter.clone(),
                        cause,
                    });
                }
                Sent::Transient(e) => transient = Some(e),
            }
        }
        match transient {
            Some(message) => Err(SinkError::transient(SINK, message)),
            None => Ok(parked),
        }
    }

    /// One letter through the [`FORMS`] ladder.
    async fn publish_one(&self, source_topic: &str, partition: i32, letter: &DeadLetter) -> Sent {
        let partition = partition.to_string();
        let offset = letter.offset.to_string();
        let producers = match self.producers() {
            Ok(producers) => producers,
            Err(e) => return Sent::Transient(format!("creating the dead-letter producers: {e}")),
        };
        let mut last = String::new();
        for (attempt, form) in FORMS.into_iter().enumerate() {
            let producer = if attempt == 0 {
                &producers.batched
            } else {
                &producers.single
            };
            let copy = match form {
                None if full_size(letter) <= self.max_record_bytes => Copy::whole(letter),
                None => continue,
                Some(cap) => Copy::truncated(letter, cap, self.max_record_bytes),
            };
            let mut hs = OwnedHeaders::new_with_capacity(copy.headers.len() + 8);
            for (k, v) in copy.headers {
                hs = hs.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut sluice = vec![
                (headers::REASON, letter.reason.as_bytes()),
                (headers::DETAIL, copy.detail.as_bytes()),
                (headers::SOURCE_TOPIC, source_topic.as_bytes()),
                (headers::SOURCE_PARTITION, partition.as_bytes()),
                (headers::SOURCE_OFFSET, offset.as_bytes()),
            ];
            if let Some((size, hash)) = &copy.original {
                sluice.push((headers::TRUNCATED, b"true"));
                sluice.push((headers::ORIGINAL_SIZE, size.as_bytes()));
                sluice.push((headers::SHA256, hash.as_bytes()));
            }
            for (k, v) in sluice {
                hs = hs.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic)
                .payload(copy.value)
                .headers(hs);
            if let Some(key) = copy.key {
                record = record.key(key);
            }
            if let Some(ts) = letter.timestamp_ms {
                record = record.timestamp(ts);
            }
            let result = match producer.send_awaited(record) {
                Ok(delivery) => match delivery.await {
                    // librdkafka's implicit ack: reported delivered, maybe never written
                    // (sluice_producers' module docs). Sent again with the batch.
                    Ok((_, offset)) if !sluice_producers::is_confirmed(offset) => {
                        return Sent::Transient(format!(
                            "dead letter for {source_topic}[{partition}]@{offset_text} reported delivered without an offset (unconfirmed)",
                            offset_text = letter.offset
                        ))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let e = match result {
                Ok(()) => {
                    return Sent::Delivered {
                        truncated: copy.original.is_some(),
                    }
                }
                Err(e) => e,
            };
            last = e.to_string();
            match classify_publish(&e) {
                PublishError::TooLarge => continue,
                PublishError::Permanent => return Sent::Parked(last),
                PublishError::Transient => return Sent::Transient(last),
            }
        }
        Sent::Parked(format!(
            "too large for the dead-letter topic even truncated: {last}"
        ))
    }

    /// Waits for queued records (used at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Some(p) = self.producers.get() {
            let _ = p.batched.flush(Timeout::After(timeout));
            let _ = p.single.flush(Timeout::After(timeout));
        }
    }
}

/// Bytes of a record as the client counts it, with slack for the framing.
fn full_size(letter: &DeadLetter) -> usize {
    letter.value.len()
        + letter.key.as_ref().map_or(0, Vec::len)
        + header_bytes(&letter.headers)
        + letter.detail.len()
        + RECORD_OVERHEAD
}

fn header_bytes(hs: &[(String, Vec<u8>)]) -> usize {
    hs.iter().map(|(k, v)| k.len() + v.len() + 8).sum()
}

/// The record actually sent for a letter.
struct Copy<'a> {
    key: Option<&'a [u8]>,
    value: &'a [u8],
    headers: &'a [(String, Vec<u8>)],
    detail: &'a str,
    /// For a truncated copy: the original value's size and SHA-256 (hex).
    original: Option<(String, String)>,
}

impl<'a> Copy<'a> {
    fn whole(letter: &'a DeadLetter) -> Self {
        Copy {
            key: letter.key.as_deref(),
            value: &letter.value,
            headers: &letter.headers,
            detail: &letter.detail,
            original: None,
        }
    }

    /// A copy whose value is the first bytes of the original: at most `cap`, and at most what leaves
    /// room within `max_record` for the kept key, headers and detail.
    fn truncated(letter: &'a DeadLetter, cap: usize, max_record: usize) -> Self {
        let headers: &[(String, Vec<u8>)] = if header_bytes(&letter.headers) <= KEPT_HEADER_BYTES {
            &letter.headers
        } else {
            &[]
        };
        let key = letter
            .key
            .as_deref()
            .map(|k| &k[..k.len().min(KEPT_KEY_BYTES)]);
        let detail = prefix_str(&letter.detail, KEPT_DETAIL_BYTES);
        let used =
            key.map_or(0, <[u8]>::len) + header_bytes(headers) + detail.len() + 2 * RECORD_OVERHEAD;
        let room = max_record.saturating_sub(used);
        let keep = letter.value.len().min(cap).min(room);
        Copy {
            key,
            value: &letter.value[..keep],
            headers,
            detail,
            original: Some((letter.value.len().to_string(), sha256_hex(&letter.value))),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(value_len: usize, headers: usize) -> DeadLetter {
        DeadLetter {
            offset: 7,
            key: Some(vec![b'k'; 3000]),
            value: vec![b'v'; value_len],
            headers: (0..headers)
                .map(|i| (format!("h{i}"), vec![b'x'; 100]))
                .collect(),
            timestamp_ms: None,
            reason: "invalid_encoding",
            detail: "é".repeat(1000),
        }
    }

    #[test]
    fn a_truncated_copy_fits_and_names_the_original() {
        let big = letter(3_000_000, 2);
        assert!(full_size(&big) > DEFAULT_MAX_RECORD_BYTES);
        let copy = Copy::truncated(&big, usize::MAX, DEFAULT_MAX_RECORD_BYTES);
        let size = copy.value.len()
            + copy.key.map_or(0, <[u8]>::len)
            + header_bytes(copy.headers)
            + copy.detail.len()
            + RECORD_OVERHEAD;
        assert!(size <= DEFAULT_MAX_RECORD_BYTES, "{size}");
        // Room used up: the value is as long as fits.
        assert!(copy.value.len() > 990_000, "{}", copy.value.len());
        assert_eq!(copy.key.unwrap().len(), KEPT_KEY_BYTES);
        assert_eq!(copy.headers.len(), 2, "small original headers are kept");
        // 'é' is two bytes: the detail is cut on a character boundary.
        assert_eq!(copy.detail.len(), KEPT_DETAIL_BYTES);
        assert_eq!(copy.original.as_ref().unwrap().0, "3000000");
        assert_eq!(copy.original.unwrap().1, sha256_hex(&big.value));

        let many_headers = letter(3_000_000, 100);
        let small = Copy::truncated(&many_headers, 512, DEFAULT_MAX_RECORD_BYTES);
        assert_eq!(small.value.len(), 512);
        assert!(
            small.headers.is_empty(),
            "10 KB of original headers dropped"
        );
    }

    /// A small letter refused for its encoding, from `offset`.
    fn not_json(offset: i64) -> DeadLetter {
        DeadLetter {
            offset,
            key: None,
            value: b"not json".to_vec(),
            headers: Vec::new(),
            timestamp_ms: None,
            reason: "invalid_encoding",
            detail: String::new(),
        }
    }

    /// The producers are created with the first letter, not at start (an idle client still has its
    /// threads, which wake every second); a setting librdkafka refuses still fails at start, naming the
    /// key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_sink_creates_its_producers_with_the_first_letter() {
        use rdkafka::mocking::MockCluster;
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("dead-letters", 1, 1).expect("topic");
        let sink =
            DeadLetterSink::new(&cluster.bootstrap_servers(), "dead-letters", &[]).expect("sink");
        assert!(!sink.started());
        sink.flush(Duration::from_millis(10));
        assert!(!sink.started(), "flushing creates nothing");
        let parked = sink.clone().publish("clicks", 0, &[not_json(7)]).await;
        assert!(matches!(parked, Ok(ref p) if p.is_empty()), "{parked:?}");
        assert!(sink.started(), "the clones share the producers");

        let bad = [("linger.ms".to_owned(), "forever".to_owned())];
        let err = DeadLetterSink::new(&cluster.bootstrap_servers(), "dead-letters", &bad)
            .expect_err("an invalid linger.ms");
        assert!(err.to_string().contains("linger.ms"), "{err}");
    }

    /// librdkafka's mock cluster refuses a batch of letters and its retry ("not leader") while a later
    /// batch gets through: librdkafka then reports the refused letters as delivered, without an
    /// offset, although they were never written. Their `publish` must fail (transient, to be sent
    /// again), not succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn letters_reported_delivered_without_an_offset_are_a_transient_failure() {
        use rdkafka::mocking::MockCluster;
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("dead-letters", 1, 1).expect("topic");
        let backoff = [
            ("retry.backoff.ms".to_owned(), "400".to_owned()),
            ("retry.backoff.max.ms".to_owned(), "400".to_owned()),
        ];
        let sink = DeadLetterSink::new(&cluster.bootstrap_servers(), "dead-letters", &backoff)
            .expect("sink");
        // Connected, with a producer id, before the faults begin.
        sink.publish("clicks", 0, &[not_json(0)])
            .await
            .expect("warm-up");
        cluster
            .broker_round_trip_time(1, Duration::from_millis(30))
            .expect("rtt");
        let not_leader = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
        cluster.request_errors(RDKafkaApiKey::Produce, &[not_leader, not_leader]);
        let first = {
            let sink = sink.clone();
            tokio::spawn(
                async move { sink.publish("clicks", 0, &[not_json(1), not_json(2)]).await },
            )
        };
        // The first batch's refusal has come back; its retry waits `retry.backoff.ms` (400).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = sink
            .publish("clicks", 0, &[not_json(3), not_json(4), not_json(5)])
            .await;
        assert!(
            matches!(second, Ok(ref parked) if parked.is_empty()),
            "{second:?}"
        );
        let err = first
            .await
            .expect("task")
            .expect_err("the first batch was never written");
        assert!(err.to_string().contains("without an offset"), "{err}");
    }

    /// A keyed letter goes where every Sluice producer puts its key: Kafka's murmur2 partition, also
    /// when the deployment's librdkafka properties name another partitioner. The key is one librdkafka's
    /// default (CRC32, checked with the `crc` crate) would put elsewhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_letters_land_on_the_partition_murmur2_gives_their_key() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        use rdkafka::mocking::MockCluster;
        const PARTITIONS: u32 = 3;
        let crc32 = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        let murmur2 =
            |key: &[u8]| (murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff) % PARTITIONS;
        let key = (0..100)
            .map(|i| format!("tenant/entity-{i}"))
            .find(|k| crc32.checksum(k.as_bytes()) % PARTITIONS != murmur2(k.as_bytes()))
            .expect("some key differs");
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic("dead-letters", PARTITIONS as i32, 1)
            .expect("topic");
        let crc = [("partitioner".to_owned(), "consistent_random".to_owned())];
        let sink =
            DeadLetterSink::new(&cluster.bootstrap_servers(), "dead-letters", &crc).expect("sink");
        let mut keyed = letter(10, 0);
        keyed.key = Some(key.clone().into_bytes());
        sink.publish("clicks", 0, &[keyed]).await.expect("publish");

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "dead-letter-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["dead-letters"]).expect("subscribe");
        // `poll` also returns empty-handed after serving the group's rebalance.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let message = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no letter within 30 s"
            );
            if let Some(m) = consumer.poll(Duration::from_secs(1)) {
                break m.expect("consume").detach();
            }
        };
        assert_eq!(message.key(), Some(key.as_bytes()));
        assert_eq!(message.partition() as u32, murmur2(key.as_bytes()));
    }

    #[test]
    fn sha256_is_the_standard_digest() {
        // sha256sum of the empty input and of "abc".
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn classifies_publish_errors() {
        use RDKafkaErrorCode as C;
        let produce = |c| KafkaError::MessageProduction(c);
        assert_eq!(
            classify_publish(&produce(C::MessageSizeTooLarge)),
            PublishError::TooLarge
        );
        assert_eq!(
            classify_publish(&produce(C::MessageBatchTooLarge)),
            PublishError::TooLarge
        );
        for permanent in [
            C::TopicAuthorizationFailed,
            C::UnknownTopicOrPartition,
            C::UnknownTopic,
            C::InvalidRecord,
            C::PolicyViolation,
        ] {
            assert_eq!(
                classify_publish(&produce(permanent)),
                PublishError::Permanent,
                "{permanent:?}"
            );
        }
        for transient in [
            C::MessageTimedOut,
            C::QueueFull,
            C::NotLeaderForPartition,
            C::AllBrokersDown,
            C::NotEnoughReplicas,
        ] {
            assert_eq!(
                classify_publish(&produce(transient)),
                PublishError::Transient,
                "{transient:?}"
            );
        }
        assert_eq!(
            classify_publish(&KafkaError::Canceled),
            PublishError::Transient
        );
    }
}
