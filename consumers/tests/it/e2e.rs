//! The foundation's end-to-end test: a known set of events of all three kinds (several tenants, days and
//! hours, unranked checks, every status class, both encodings) plus one malformed record of each class
//! goes through the real broker into `sluice-ingest`; the PostgreSQL aggregates and ClickHouse raw rows
//! must equal what the independent verifier computes from the good events, exactly. The bad records must
//! be logged with topic/partition/offset, counted by reason, and must not stall their partitions.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::message::Message;
use sluice_consumers::metrics::RECORDS_CONSUMED;
use sluice_consumers::routing::kafka_partition;
use sluice_loadtest::verify::Expected;
use sluice_schemas::{encode, Encoding, Event, EventKind, ENCODING_HEADER};

use crate::support::corner::{click, crawl, rank};
use crate::support::{code_placed_apart, metric_value, TestStack, SETTLE};

const PARTITIONS: i32 = 3;

/// Hand-written corner cases on top of the synthetic traffic.
fn corner_cases(now: DateTime<Utc>) -> Vec<Event> {
    let day_start = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc() - TimeDelta::days(1);
    vec![
        // Same instant: the greater event_id is "last".
        rank(
            "tie-a",
            day_start + TimeDelta::hours(5),
            "tie keyword",
            Some(9),
        ),
        rank(
            "tie-b",
            day_start + TimeDelta::hours(5),
            "tie keyword",
            Some(2),
        ),
        // A day whose only checks did not rank.
        rank(
            "unranked-1",
            day_start - TimeDelta::hours(3),
            "tie keyword",
            None,
        ),
        rank(
            "unranked-2",
            day_start - TimeDelta::hours(2),
            "tie keyword",
            None,
        ),
        // Last check of a day unranked although earlier ones ranked.
        rank(
            "late-1",
            day_start + TimeDelta::hours(20),
            "tie keyword",
            Some(1),
        ),
        rank(
            "late-2",
            day_start + TimeDelta::hours(23) + TimeDelta::minutes(59),
            "tie keyword",
            None,
        ),
        // Day and hour boundaries, micro-second precision.
        click("edge-1", day_start - TimeDelta::microseconds(1), None),
        click("edge-2", day_start, None),
        crawl(
            "crawl-1xx",
            day_start + TimeDelta::minutes(59),
            "http://Mixed.CASE.example/x",
            103,
        ),
        crawl(
            "crawl-hour",
            day_start + TimeDelta::hours(1),
            "https://MIXED.case.EXAMPLE:8443/y",
            418,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aggregate_and_raw_row_matches_the_published_events() -> anyhow::Result<()> {
    let stack = TestStack::new("e2e", PARTITIONS).await?;
    let now = Utc::now();

    let mut synth = stack.synth(7, 4)?;
    let mut events: Vec<Event> = (0..3000).map(|_| synth.next(now)).collect();
    events.extend(corner_cases(now));
    for kind in EventKind::ALL {
        assert!(
            events.iter().filter(|e| e.kind() == kind).count() > 100,
            "too few {kind} events"
        );
    }

    // Half the events as JSON, half as bincode, through the producer library.
    let json = stack.producer(Encoding::Json)?;
    let bincode = stack.producer(Encoding::Bincode)?;
    for (i, event) in events.iter().enumerate() {
        if i % 2 == 0 {
            json.enqueue(event)?
        } else {
            bincode.enqueue(event)?
        }
    }

    // One malformed record of each class, among the good ones.
    let good_click = match events.iter().find(|e| e.kind() == EventKind::Click) {
        Some(Event::Click(c)) => c.clone(),
        _ => unreachable!(),
    };
    let click_json = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&encode(&Event::Click(good_click.clone()), Encoding::Json))
                .unwrap();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let mut far_future = good_click.clone();
    far_future.event_id = format!("{}-from-the-future", stack.name);
    far_future.occurred_at = now + TimeDelta::days(30);
    // Keyed as the contract says, with a key librdkafka's default partitioner (CRC32) would put on
    // another partition than murmur2: its re-published copy must land beside the original.
    far_future.short_code = code_placed_apart(&far_future.tenant_id, "from-the-future", PARTITIONS);
    let far_key = Event::Click(far_future.clone()).partition_key();
    let click_topic = stack.topic(EventKind::Click).to_owned();
    let rank_topic = stack.topic(EventKind::Rank).to_owned();
    let crawl_topic = stack.topic(EventKind::Crawl).to_owned();
    // (topic, expected reason, value, headers)
    type Poison<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, &'a [u8])>);
    let bad: Vec<Poison<'_>> = vec![
        (
            &click_topic,
            "invalid_encoding",
            b"{\"event_id\": ".to_vec(),
            vec![],
        ),
        (
            &rank_topic,
            "invalid_encoding",
            b"\x01\xff\xff\xff\xff\xff".to_vec(),
            vec![(ENCODING_HEADER, b"bincode")],
        ),
        (
            &click_topic,
            "invalid_encoding",
            click_json(&|_| {}),
            vec![(ENCODING_HEADER, b"avro")],
        ),
        (
            &click_topic,
            "unknown_schema_version",
            click_json(&|v| v["schema_version"] = 2.into()),
            vec![],
        ),
        (
            &click_topic,
            "missing_field",
            click_json(&|v| {
                v.as_object_mut().unwrap().remove("short_code");
            }),
            vec![],
        ),
        (
            &click_topic,
            "invalid_field",
            click_json(&|v| v["short_code"] = 5.into()),
            vec![],
        ),
        (
            &click_topic,
            "invalid_utf8",
            b"{\"event_id\": \"\xc3\x28\"}".to_vec(),
            vec![],
        ),
        (
            &click_topic,
            "oversized",
            click_json(&|v| v["user_agent"] = "u".repeat(70_000).into()),
            vec![],
        ),
        (
            &click_topic,
            "timestamp_out_of_range",
            encode(&Event::Click(far_future.clone()), Encoding::Json),
            vec![],
        ),
        (
            &crawl_topic,
            "missing_field",
            b"{\"schema_version\": 1}".to_vec(),
            vec![],
        ),
    ];
    let mut bad_at = Vec::new();
    for (i, (topic, reason, value, headers)) in bad.iter().enumerate() {
        let key = match *reason {
            "timestamp_out_of_range" => far_key.clone(),
            _ => format!("poison-{i}"),
        };
        let (partition, offset) = json
            .send_raw(topic, Some(key.as_bytes()), value, headers)
            .await?;
        bad_at.push((topic.to_string(), partition, offset, *reason));
    }
    json.flush(Duration::from_secs(30))?;
    bincode.flush(Duration::from_secs(30))?;
    assert_eq!(
        json.stats().failed + bincode.stats().failed,
        0,
        "deliveries failed"
    );

    let ingest = stack.spawn_ingest("main", &[])?;
    stack.wait_caught_up(Duration::from_secs(120)).await?;

    // Rejections: counted by kind and reason, logged with their coordinates. Counters are published
    // once a second, so wait for the consumed count to settle first.
    let total = (events.len() + bad.len()) as f64;
    let metrics = ingest
        .metrics_after(RECORDS_CONSUMED, total, SETTLE)
        .await?;
    for reason in [
        "invalid_encoding",
        "unknown_schema_version",
        "missing_field",
        "invalid_field",
        "invalid_utf8",
        "oversized",
        "timestamp_out_of_range",
    ] {
        let expected = bad.iter().filter(|b| b.1 == reason).count() as f64;
        let got = metric_value(
            &metrics,
            "sluice_ingest_records_rejected_total",
            &[("reason", reason)],
        );
        assert_eq!(got, expected, "rejections counted for {reason}");
    }
    let consumed = metric_value(&metrics, RECORDS_CONSUMED, &[]);
    assert_eq!(consumed, total, "records consumed");
    let aggregated = metric_value(&metrics, "sluice_ingest_events_aggregated_total", &[]);
    assert_eq!(aggregated, events.len() as f64, "events aggregated");
    let log = ingest.log_text();
    for (topic, partition, offset, reason) in &bad_at {
        let line = format!("topic={topic} partition={partition} offset={offset} reason={reason}");
        assert!(log.contains(&line), "log lacks `{line}`");
    }

    // Health: live, and ready once joined with both sinks reachable (checked every 5 s).
    assert_eq!(ingest.get("/health/live").await?.0, 200);
    let mut ready = ingest.get("/health/ready").await?;
    for _ in 0..60 {
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = ingest.get("/health/ready").await?;
    }
    assert_eq!(ready, (200, "ready\n".to_owned()));
    assert_eq!(ingest.get("/nope").await?.0, 404);

    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");
    stack
        .assert_matches(&Expected::from_events(&events))
        .await?;

    // Every bad record is in the dead-letter topic: original bytes, reason and source coordinates.
    let mut expected_letters: Vec<Letter> = bad
        .iter()
        .zip(&bad_at)
        .map(|((_, reason, value, _), (topic, partition, offset, _))| {
            let coordinates = (topic.clone(), partition.to_string(), offset.to_string());
            (reason.to_string(), coordinates, value.clone())
        })
        .collect();
    expected_letters.sort();
    assert_eq!(dead_letters(&stack)?, expected_letters);

    // "Fix" the cause of one rejection (accept events up to 60 days ahead), re-publish the dead letters,
    // and run ingest again: the fixed record is aggregated, the others are dead-lettered again.
    let fixed = [("SLUICE_MAX_EVENT_FUTURE_MINUTES", "86400")];
    let replay = stack.run_ingest_command(&["dead-letters", "replay"], &fixed)?;
    let said = format!("re-published {} dead letters", bad.len());
    assert!(replay.contains(&said), "{replay}");
    // The fixed record's copy is on the partition murmur2 gives its key, where the original is.
    let copies: Vec<i32> = sluice_loadtest::kit::kafka::read_all(&stack.brokers, &click_topic)?
        .iter()
        .filter(|m| m.key() == Some(far_key.as_bytes()))
        .map(|m| m.partition())
        .collect();
    let murmur2 = kafka_partition(far_key.as_bytes(), PARTITIONS);
    assert_eq!(copies, vec![murmur2, murmur2], "partitions of {far_key}");
    let ingest = stack.spawn_ingest("after-fix", &fixed)?;
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");
    events.push(Event::Click(far_future));
    stack
        .assert_matches(&Expected::from_events(&events))
        .await?;
    assert_eq!(dead_letters(&stack)?.len(), 2 * bad.len() - 1);
    stack.cleanup().await
}

/// (reason, (source topic, partition, offset), original value) of a dead letter.
type Letter = (String, (String, String, String), Vec<u8>);

/// Every dead letter in the test's dead-letter topic, sorted.
fn dead_letters(stack: &TestStack) -> anyhow::Result<Vec<Letter>> {
    use rdkafka::message::{Headers, Message, OwnedMessage};
    let header = |m: &OwnedMessage, name: &str| {
        m.headers()
            .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let messages = sluice_loadtest::kit::kafka::read_all(&stack.brokers, &stack.dead_letter_topic)?;
    let mut out: Vec<Letter> = messages
        .iter()
        .map(|m| {
            let coordinates = (
                header(m, "sluice-dlq-source-topic"),
                header(m, "sluice-dlq-source-partition"),
                header(m, "sluice-dlq-source-offset"),
            );
            (
                header(m, "sluice-dlq-reason"),
                coordinates,
                m.payload().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}
