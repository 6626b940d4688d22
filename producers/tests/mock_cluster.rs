//! The producer against librdkafka's in-process mock cluster: what `send`, `enqueue` and `send_raw`
//! write is consumed back with a plain consumer and compared field by field (topic, key, encoding
//! header, decoded value, partition and offset).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_producers::{
    DeliveryStats, EventProducer, ProduceError, ProducerConfig, Synth, SynthConfig,
};
use sluice_schemas::{
    decode, ClickEvent, CrawlEvent, Encoding, Event, EventKind, Limits, RankEvent, ENCODING_HEADER,
    SCHEMA_VERSION,
};

const PARTITIONS: i32 = 3;

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for kind in EventKind::ALL {
        cluster
            .create_topic(kind.default_topic(), PARTITIONS, 1)
            .expect("create topic");
    }
    cluster
}

fn producer(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    encoding: Encoding,
) -> EventProducer {
    EventProducer::new(ProducerConfig {
        brokers: cluster.bootstrap_servers(),
        encoding,
        ..ProducerConfig::default()
    })
    .expect("producer")
}

/// Reads partitions `0..partitions` of `topics` from the beginning until `n` records arrived.
fn consume(bootstrap: &str, topics: &[&str], partitions: i32, n: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "producer-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("offset");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            out.push(msg.expect("consume").detach());
        }
    }
    // Nothing beyond what was produced.
    let extra = consumer.poll(Duration::from_millis(500));
    assert!(extra.is_none(), "unexpected extra record: {extra:?}");
    assert_eq!(out.len(), n, "consumed {} of {n} records", out.len());
    out
}

fn header<'a>(msg: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

fn at(minutes_ago: i64) -> DateTime<Utc> {
    sluice_schemas::time::truncate_to_micros(Utc::now() - TimeDelta::minutes(minutes_ago))
}

/// Hand-built events with known keys.
fn fixed_events() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::Rank(RankEvent {
                schema_version: SCHEMA_VERSION,
                event_id: "fixed-rank".into(),
                tenant_id: "acme".into(),
                occurred_at: at(5),
                campaign_id: "spring".into(),
                keyword: "running shoes".into(),
                geo: "de".into(),
                engine: "google".into(),
                device: "mobile".into(),
                url: None,
                position: None,
            }),
            "acme/spring",
        ),
        (
            Event::Crawl(CrawlEvent {
                schema_version: SCHEMA_VERSION,
                event_id: "fixed-crawl".into(),
                tenant_id: "acme".into(),
                occurred_at: at(4),
                campaign_id: "spring".into(),
                url: "https://WWW.Example-3.COM/path/1".into(),
                status_code: 503,
                fetch_ms: 1234,
                bytes: 0,
                content_hash: None,
            }),
            "acme/spring",
        ),
        (
            Event::Click(ClickEvent {
                schema_version: SCHEMA_VERSION,
                event_id: "fixed-click".into(),
                tenant_id: "globex".into(),
                occurred_at: at(3),
                short_code: "Ab3xYz9".into(),
                referrer: Some("https://t.co/".into()),
                country: Some("fr".into()),
                user_agent: None,
                visitor_id: Some("v-1".into()),
            }),
            "globex/Ab3xYz9",
        ),
    ]
}

/// `tenant/entity` spelled out per kind, independently of `Event::partition_key`.
fn expected_key(event: &Event) -> String {
    match event {
        Event::Rank(e) => format!("{}/{}", e.tenant_id, e.campaign_id),
        Event::Crawl(e) => format!("{}/{}", e.tenant_id, e.campaign_id),
        Event::Click(e) => format!("{}/{}", e.tenant_id, e.short_code),
    }
}

async fn send_enqueue_and_consume_back(encoding: Encoding) {
    let cluster = cluster();
    let producer = producer(&cluster, encoding);

    let fixed = fixed_events();
    let mut positions = HashMap::new();
    for (event, _) in &fixed {
        let position = producer.send(event).await.expect("send");
        positions.insert(event.event_id().to_owned(), position);
    }
    // The rank and crawl events share the key acme/spring: the key hash picks the same partition
    // number on both (equally partitioned) topics. Each is the first record of its topic.
    assert_eq!(positions["fixed-rank"].0, positions["fixed-crawl"].0);
    assert!(
        positions
            .values()
            .all(|&(p, offset)| (0..PARTITIONS).contains(&p) && offset == 0),
        "{positions:?}"
    );

    let mut synth = Synth::new(
        SynthConfig {
            seed: 9,
            ..SynthConfig::default()
        },
        "mock",
    )
    .expect("synth");
    let enqueued: Vec<Event> = (0..60).map(|_| synth.next(Utc::now())).collect();
    for event in &enqueued {
        producer.enqueue(event).expect("enqueue");
    }
    producer.flush(Duration::from_secs(20)).expect("flush");
    assert_eq!(
        producer.stats(),
        DeliveryStats {
            delivered: 63,
            failed: 0,
            resent: 0
        }
    );
    assert_eq!(producer.in_flight(), 0);

    let mut expected: HashMap<String, (Event, String)> = fixed
        .iter()
        .map(|(e, key)| (e.event_id().to_owned(), (e.clone(), (*key).to_owned())))
        .chain(
            enqueued
                .iter()
                .map(|e| (e.event_id().to_owned(), (e.clone(), expected_key(e)))),
        )
        .collect();
    assert_eq!(expected.len(), 63);

    let topics: Vec<&str> = EventKind::ALL.iter().map(|k| k.default_topic()).collect();
    let records = consume(&cluster.bootstrap_servers(), &topics, PARTITIONS, 63);
    let now = Utc::now();
    for msg in &records {
        // JSON records carry no header at all (absent means JSON); bincode ones name their encoding.
        match encoding {
            Encoding::Json => assert_eq!(msg.headers().map(|h| h.count()).unwrap_or(0), 0),
            Encoding::Bincode => assert_eq!(header(msg, ENCODING_HEADER), Some(&b"bincode"[..])),
        }
        let kind = EventKind::ALL
            .into_iter()
            .find(|k| k.default_topic() == msg.topic())
            .expect("known topic");
        let event = decode(
            kind,
            encoding,
            msg.payload().expect("payload"),
            &Limits::default(),
            now,
        )
        .unwrap_or_else(|r| panic!("{r}"));
        let (original, key) = expected
            .remove(event.event_id())
            .expect("an event we produced, once");
        assert_eq!(event, original);
        assert_eq!(msg.key(), Some(key.as_bytes()));
        if let Some(&(partition, offset)) = positions.get(event.event_id()) {
            assert_eq!(
                (msg.partition(), msg.offset()),
                (partition, offset),
                "{}",
                event.event_id()
            );
        }
    }
    assert!(
        expected.is_empty(),
        "never consumed: {:?}",
        expected.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_events_round_trip_through_kafka() {
    send_enqueue_and_consume_back(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bincode_events_round_trip_through_kafka() {
    send_enqueue_and_consume_back(Encoding::Bincode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_raw_publishes_bytes_verbatim() {
    let cluster = cluster();
    let producer = producer(&cluster, Encoding::Json);
    let topic = EventKind::Click.default_topic();
    let (p1, o1) = producer
        .send_raw(
            topic,
            None,
            b"{not json",
            &[(ENCODING_HEADER, b"json"), ("x-test", b"1")],
        )
        .await
        .expect("send_raw");
    let (p2, o2) = producer
        .send_raw(topic, Some(b"t/k"), b"\x00\xff", &[])
        .await
        .expect("send_raw");
    let records = consume(&cluster.bootstrap_servers(), &[topic], PARTITIONS, 2);
    let first = records
        .iter()
        .find(|m| m.payload() == Some(&b"{not json"[..]))
        .expect("first record");
    assert_eq!((first.partition(), first.offset()), (p1, o1));
    assert_eq!(first.key(), None);
    assert_eq!(header(first, ENCODING_HEADER), Some(&b"json"[..]));
    assert_eq!(header(first, "x-test"), Some(&b"1"[..]));
    let second = records
        .iter()
        .find(|m| m.payload() == Some(&b"\x00\xff"[..]))
        .expect("second record");
    assert_eq!((second.partition(), second.offset()), (p2, o2));
    assert_eq!(second.key(), Some(&b"t/k"[..]));
    assert!(second.headers().is_none_or(|h| h.count() == 0));
    assert_eq!(
        producer.stats(),
        DeliveryStats {
            delivered: 2,
            failed: 0,
            resent: 0
        }
    );
}

#[test]
fn full_local_queue_blocks_instead_of_dropping() {
    let cluster = cluster();
    let mut cfg = ProducerConfig {
        brokers: cluster.bootstrap_servers(),
        ..ProducerConfig::default()
    };
    cfg.extra
        .insert("queue.buffering.max.messages".into(), "5".into());
    let producer = EventProducer::new(cfg).expect("producer");
    let mut synth = Synth::new(SynthConfig::default(), "qf").expect("synth");
    for _ in 0..500 {
        producer.enqueue(&synth.next(Utc::now())).expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(
        producer.stats(),
        DeliveryStats {
            delivered: 500,
            failed: 0,
            resent: 0
        }
    );
    let topics: Vec<&str> = EventKind::ALL.iter().map(|k| k.default_topic()).collect();
    assert_eq!(
        consume(&cluster.bootstrap_servers(), &topics, PARTITIONS, 500).len(),
        500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_counts_failures() {
    let cluster = cluster();
    cluster.broker_down(1).expect("broker down");
    let mut cfg = ProducerConfig {
        brokers: cluster.bootstrap_servers(),
        ..ProducerConfig::default()
    };
    cfg.extra.insert("message.timeout.ms".into(), "1500".into());
    // The only test here that installs a recorder, and the only one whose deliveries fail.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let producer = EventProducer::new(cfg).expect("producer");
    let (event, _) = fixed_events().remove(0);
    let err = producer
        .send(&event)
        .await
        .expect_err("no broker, no delivery");
    assert!(
        matches!(err, ProduceError::Delivery { ref topic, .. } if topic == "rank-events"),
        "{err}"
    );
    for _ in 0..4 {
        producer.enqueue(&event).expect("enqueue");
    }
    producer
        .flush(Duration::from_secs(20))
        .expect("flush returns once all timed out");
    assert_eq!(
        producer.stats(),
        DeliveryStats {
            delivered: 0,
            failed: 5,
            resent: 0
        }
    );
    let last = producer.last_delivery_error().expect("a last error");
    assert!(last.contains("rank-events"), "{last}");
    let exposition = recorder.render();
    assert!(
        exposition
            .lines()
            .any(|l| l == "sluice_produce_delivery_errors_total{topic=\"rank-events\"} 5"),
        "{exposition}"
    );
}

/// `send` and `send_raw` futures can be `tokio::spawn`ed.
#[test]
fn send_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let producer = EventProducer::new(ProducerConfig {
        brokers: "127.0.0.1:1".into(),
        ..ProducerConfig::default()
    })
    .expect("producer");
    let (event, _) = fixed_events().remove(0);
    assert_send(&producer.send(&event));
    assert_send(&producer.send_raw("t", None, b"", &[]));
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<EventProducer>();
}

/// A batch the broker refused as "not leader" while a later batch of the same partition got through
/// (the broker has no sequence state yet for a new producer id, so it takes any first sequence):
/// librdkafka then reports the refused batch's records as delivered ("implicitly acked by subsequent
/// batch success"), with no offset, although they were never written. Seen on a real Kafka 4 broker
/// right after topic creation (docs/events.md, "Unconfirmed deliveries").
///
/// Returns a producer on a one-partition click topic, connected and warmed up (one event written),
/// whose broker now answers after 60 ms and refuses the next two produce requests: the first batch
/// and its retry (which waits `retry.backoff.ms`, 400). A second batch sent 200 ms after the first
/// goes right behind that retry and is accepted. Also five click events to publish, two then three.
fn overtaken_batch() -> (
    MockCluster<'static, DefaultProducerContext>,
    EventProducer,
    Vec<Event>,
) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(EventKind::Click.default_topic(), 1, 1)
        .expect("create topic");
    cluster
        .create_topic(EventKind::Rank.default_topic(), 1, 1)
        .expect("create topic");
    let mut cfg = ProducerConfig {
        brokers: cluster.bootstrap_servers(),
        ..ProducerConfig::default()
    };
    cfg.linger_ms = 1;
    cfg.extra.insert("retry.backoff.ms".into(), "400".into());
    cfg.extra
        .insert("retry.backoff.max.ms".into(), "400".into());
    let producer = EventProducer::new(cfg).expect("producer");
    let mut synth = Synth::new(SynthConfig::default(), "overtaken").expect("synth");
    let clicks = std::iter::from_fn(|| Some(synth.next(Utc::now())))
        .filter(|e| e.kind() == EventKind::Click)
        .take(5)
        .collect();
    // Connected, with a producer id, before the faults begin.
    let (warm_up, _) = fixed_events().remove(0);
    producer.enqueue(&warm_up).expect("enqueue");
    producer.flush(Duration::from_secs(10)).expect("flush");

    cluster
        .broker_round_trip_time(1, Duration::from_millis(30))
        .expect("rtt");
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::Produce,
        &[
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    (cluster, producer, clicks)
}

/// After an [`overtaken_batch`]: the first batch's two records were reported without an offset and
/// produced again, so all six (the warm-up included) were written, and the click topic holds exactly
/// the five clicks, once each.
fn assert_overtaken_batch_written(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    producer: &EventProducer,
    clicks: &[Event],
) {
    assert_eq!(
        producer.stats(),
        DeliveryStats {
            delivered: 6,
            failed: 0,
            resent: 2
        }
    );
    let mut written: Vec<String> = consume(
        &cluster.bootstrap_servers(),
        &[EventKind::Click.default_topic()],
        1,
        clicks.len(),
    )
    .iter()
    .map(|msg| {
        let value = msg.payload().expect("value");
        decode(
            EventKind::Click,
            Encoding::Json,
            value,
            &Limits::default(),
            Utc::now(),
        )
        .expect("decode")
        .event_id()
        .to_owned()
    })
    .collect();
    written.sort();
    let mut sent: Vec<String> = clicks.iter().map(|e| e.event_id().to_owned()).collect();
    sent.sort();
    assert_eq!(written, sent);
}

/// The `enqueue` path: unconfirmed records are produced again by `flush`.
#[test]
fn a_refused_batch_overtaken_by_a_later_one_is_sent_again() {
    let (cluster, producer, clicks) = overtaken_batch();
    for event in &clicks[..2] {
        producer.enqueue(event).expect("enqueue");
    }
    std::thread::sleep(Duration::from_millis(200));
    for event in &clicks[2..] {
        producer.enqueue(event).expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    assert_overtaken_batch_written(&cluster, &producer, &clicks);
}

/// The `send` path (which `send_raw`, `send_record` and so `dead-letters republish` take): each
/// awaiting send produces its unconfirmed record again and returns only once it has an offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_send_overtaken_by_a_later_one_is_sent_again() {
    let (cluster, producer, clicks) = overtaken_batch();
    let producer = std::sync::Arc::new(producer);
    let spawn = |event: &Event| {
        let (producer, event) = (producer.clone(), event.clone());
        tokio::spawn(async move { producer.send(&event).await })
    };
    let mut sends: Vec<_> = clicks[..2].iter().map(spawn).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sends.extend(clicks[2..].iter().map(spawn));
    let mut offsets = Vec::new();
    for send in sends {
        let (partition, offset) = send.await.expect("task").expect("send");
        assert_eq!(partition, 0);
        offsets.push(offset);
    }
    // The click topic's offsets 0–4 (the warm-up went to the rank topic): each send reports where its
    // own record was written.
    offsets.sort_unstable();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert_overtaken_batch_written(&cluster, &producer, &clicks);
}
