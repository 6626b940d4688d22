//! One producer's clock cannot disable deduplication for the others (docs/guarantees.md, "Producer
//! clocks"). Five clicks are published with sane record timestamps, then one valid click whose Kafka
//! record timestamp is a year ahead (the topic allows it: `message.timestamp.after.max.ms` at its
//! maximum, as a topic created before Kafka 4 has it), then the five clicks again. The re-deliveries must
//! still be dropped: both databases hold each click once, and the duplicate counter says five.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_schemas::{encode, Encoding, Event, EventKind, ENCODING_HEADER};

use crate::support::{corner, metric_value, TestStack};

/// Lets `topic` accept record timestamps any distance ahead of the broker's clock.
pub(crate) async fn allow_future_timestamps(stack: &TestStack, topic: &str) -> anyhow::Result<()> {
    stack
        .set_topic_config(
            topic,
            "message.timestamp.after.max.ms",
            &i64::MAX.to_string(),
        )
        .await
}

/// Publishes `event` as JSON with the given Kafka record timestamp; returns (partition, offset).
pub(crate) async fn publish_at(
    producer: &FutureProducer,
    stack: &TestStack,
    event: &Event,
    ts_ms: i64,
) -> anyhow::Result<(i32, i64)> {
    let value = encode(event, Encoding::Json);
    let key = event.partition_key();
    let record = FutureRecord::to(stack.topic(event.kind()))
        .key(key.as_bytes())
        .payload(&value[..])
        .headers(OwnedHeaders::new().insert(Header {
            key: ENCODING_HEADER,
            value: Some(Encoding::Json.as_str()),
        }))
        .timestamp(ts_ms);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_stamped_a_year_ahead_does_not_expire_the_window() -> anyhow::Result<()> {
    let stack = TestStack::new("clock_ahead", 1).await?;
    allow_future_timestamps(&stack, stack.topic(EventKind::Click)).await?;
    let ingest = stack.spawn_ingest("a", &[])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .set("enable.idempotence", "true")
        .create()?;

    let now = Utc::now();
    let early: Vec<Event> = (0..5)
        .map(|i| corner::click(&format!("early-{i}"), now - TimeDelta::minutes(1), None))
        .collect();
    let sent_at = now.timestamp_millis();
    for e in &early {
        publish_at(&producer, &stack, e, sent_at).await?;
    }
    let ahead = corner::click("from-the-future", now, None);
    let year_ms = TimeDelta::days(365).num_milliseconds();
    let (_, ahead_offset) = publish_at(&producer, &stack, &ahead, sent_at + year_ms).await?;
    assert_eq!(ahead_offset, 5, "one partition, published in order");
    // Re-deliveries of the early clicks, one second later by their producer's (sane) clock.
    for e in &early {
        publish_at(&producer, &stack, e, sent_at + 1_000).await?;
    }
    stack.wait_caught_up(Duration::from_secs(30)).await?;
    let text = ingest
        .metrics_when(Duration::from_secs(5), |t| {
            metric_value(
                t,
                sluice_consumers::metrics::DUPLICATES,
                &[("kind", "click")],
            ) >= 5.0
        })
        .await?;
    assert_eq!(
        metric_value(
            &text,
            sluice_consumers::metrics::DUPLICATES,
            &[("kind", "click")]
        ),
        5.0,
        "every re-delivery of an early click is a duplicate"
    );
    let mut events = early.clone();
    events.push(ahead);
    stack.finish(vec![ingest], &events).await
}
