//! The same event through two partitioners (docs/guarantees.md, "Duplicates across partitions"). The
//! project's producer hashes the record key with Kafka's murmur2 (the Java client's default); a plain
//! librdkafka producer hashes it with CRC32 (`consistent_random`). For a key the two place on different
//! partitions, the second copy lands where the first one's dedup window cannot see it. Ingest must count
//! that copy as misrouted (and warn), and the databases must show what the guarantees promise: the
//! PostgreSQL aggregate counts the event twice, ClickHouse `FINAL` shows one row and its rollup one click.
//! A record without a key and one whose key names another entity are counted too, with their reasons.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_consumers::routing::kafka_partition;
use sluice_schemas::{encode, ClickEvent, Encoding, Event, EventKind, ENCODING_HEADER};

use crate::support::{code_placed_apart, crc32, crc32_partition, metric_value, TestStack};

const PARTITIONS: i32 = 4;

fn click(id: &str, short_code: &str) -> Event {
    Event::Click(ClickEvent {
        schema_version: 1,
        event_id: id.into(),
        tenant_id: "corner".into(),
        occurred_at: Utc::now() - TimeDelta::minutes(1),
        short_code: short_code.into(),
        referrer: None,
        country: None,
        user_agent: None,
        visitor_id: None,
    })
}

async fn send_raw(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    event: &Event,
) -> anyhow::Result<i32> {
    let value = encode(event, Encoding::Json);
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: ENCODING_HEADER,
        value: Some(Encoding::Json.as_str()),
    });
    let mut record = FutureRecord::to(topic).payload(&value[..]).headers(headers);
    if let Some(key) = key {
        record = record.key(key.as_bytes());
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| d.partition)
        .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))
}

#[test]
fn crc32_is_the_ieee_checksum() {
    // The standard check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_sent_through_another_partitioner_is_counted_as_misrouted() -> anyhow::Result<()> {
    let stack = TestStack::new("partitioners", PARTITIONS).await?;
    let ingest = stack.spawn_ingest("a", &[])?;
    let topic = stack.topic(EventKind::Click).to_owned();

    // A short code whose key the two partitioners place apart.
    let code = code_placed_apart("corner", "code", PARTITIONS);
    let key = format!("corner/{code}");
    let twice = click("sent-twice", &code);

    // Through the project's producer (murmur2), then through plain librdkafka (CRC32).
    let ours = stack.producer(Encoding::Json)?;
    let (murmur_partition, _) = ours.send(&twice).await?;
    assert_eq!(
        murmur_partition,
        kafka_partition(key.as_bytes(), PARTITIONS)
    );
    let plain: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .create()?;
    let crc_partition = send_raw(&plain, &topic, Some(&key), &twice).await?;
    assert_eq!(crc_partition, crc32_partition(key.as_bytes(), PARTITIONS));
    assert_ne!(crc_partition, murmur_partition);

    // A record without a key, and one whose key names another entity (on murmur2's partition for it).
    let keyless = click("no-key", "keyless");
    send_raw(&plain, &topic, None, &keyless).await?;
    let mismatched = click("wrong-key", "mismatched");
    let other_key = "corner/somewhere-else";
    let ours_raw = stack.producer(Encoding::Json)?;
    ours_raw
        .send_raw(
            &topic,
            Some(other_key.as_bytes()),
            &encode(&mismatched, Encoding::Json),
            &[(ENCODING_HEADER, Encoding::Json.as_str().as_bytes())],
        )
        .await?;
    // A correctly routed event, for contrast.
    let fine = click("routed-fine", "fine");
    ours.send(&fine).await?;

    stack.wait_caught_up(Duration::from_secs(30)).await?;
    let name = sluice_consumers::metrics::MISROUTED;
    let text = ingest
        .metrics_when(Duration::from_secs(5), |t| {
            metric_value(t, name, &[]) >= 3.0
        })
        .await?;
    for (reason, want) in [
        ("wrong_partition", 1.0),
        ("no_key", 1.0),
        ("key_mismatch", 1.0),
    ] {
        assert_eq!(
            metric_value(&text, name, &[("kind", "click"), ("reason", reason)]),
            want,
            "{reason}"
        );
    }
    assert_eq!(metric_value(&text, name, &[]), 3.0);
    assert!(
        ingest
            .log_text()
            .contains("record is not on the partition Kafka's murmur2 assigns to its key"),
        "a warning is logged"
    );

    // PostgreSQL: the misrouted copy counts again (its partition's window never saw the first).
    let clicks: Vec<(String, i64)> = sqlx::query_as(
        "SELECT short_code, sum(clicks)::bigint FROM click_daily GROUP BY short_code ORDER BY 1",
    )
    .fetch_all(&stack.pg)
    .await?;
    let mut want = vec![
        (code.clone(), 2),
        ("fine".to_owned(), 1),
        ("keyless".to_owned(), 1),
        ("mismatched".to_owned(), 1),
    ];
    want.sort();
    assert_eq!(clicks, want);
    // ClickHouse: one raw row per event_id under FINAL, and the rollup counts distinct event ids.
    let rows: u64 = stack
        .ch
        .query("SELECT count() FROM click_events FINAL WHERE event_id = 'sent-twice'")
        .fetch_one()
        .await?;
    assert_eq!(rows, 1);
    let rolled: u64 = stack
        .ch
        .query("SELECT uniqExactMerge(clicks_state) FROM click_day WHERE short_code = ?")
        .bind(&code)
        .fetch_one()
        .await?;
    assert_eq!(rolled, 1);

    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success());
    stack.cleanup().await
}
