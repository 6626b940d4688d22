//! Poison that gets past validation, and dead letters the topic cannot take: what flows through here is
//! valid traffic with a few events a database refuses by content (a CHECK constraint in PostgreSQL, a
//! materialized view that cannot parse a value in ClickHouse), and records too large for a dead-letter
//! topic with a tiny `max.message.bytes`. Ingest must keep running, dead-letter exactly the refused
//! events (reason `sink_refused`, the database's code in the detail), store everything else exactly,
//! and move every partition's offset within the dead-letter publish bound.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rdkafka::message::{Headers, Message, OwnedMessage};
use sluice_loadtest::verify::{diff, Actual, Expected, Snapshot};
use sluice_schemas::{Encoding, Event, EventKind};

use crate::support::{corner, TestStack};

/// A row of `sluice_dead_letters`: source topic, partition, offset, reason, key, value, header names,
/// publish error.
type ParkedRow = (
    String,
    i32,
    i64,
    String,
    Vec<u8>,
    Vec<u8>,
    Vec<String>,
    String,
);

/// A stack of the test's own with the migrations applied (so a test can add constraints first).
async fn migrated_stack(test: &str) -> anyhow::Result<TestStack> {
    let stack = TestStack::new(test, 3).await?;
    stack.run_ingest_command(&["migrate"], &[])?;
    Ok(stack)
}

/// `n` synthetic events of every kind.
fn traffic(stack: &TestStack, n: usize) -> anyhow::Result<Vec<Event>> {
    let mut synth = stack.synth(13, 3)?;
    let now = Utc::now();
    Ok((0..n).map(|_| synth.next(now)).collect())
}

/// Click events `poison-{i}` that differ from valid ones only by what `poison` sets.
fn poison_clicks(n: usize, poison: impl Fn(&mut sluice_schemas::ClickEvent)) -> Vec<Event> {
    let at = Utc::now() - TimeDelta::minutes(5);
    (0..n)
        .map(|i| {
            let mut event = match corner::click(&format!("poison-{i}"), at, None) {
                Event::Click(c) => c,
                _ => unreachable!(),
            };
            poison(&mut event);
            Event::Click(event)
        })
        .collect()
}

/// Publishes `events` with the poison ones spread among them.
async fn publish(stack: &TestStack, events: &[Event], poison: &[Event]) -> anyhow::Result<()> {
    let producer = stack.producer(Encoding::Json)?;
    let every = events.len() / (poison.len() + 1);
    let mut poison = poison.iter();
    for (i, event) in events.iter().enumerate() {
        producer.enqueue(event)?;
        if i % every == every / 2 {
            if let Some(p) = poison.next() {
                producer.enqueue(p)?;
            }
        }
    }
    for p in poison {
        producer.enqueue(p)?;
    }
    producer.flush(Duration::from_secs(30))?;
    anyhow::ensure!(producer.stats().failed == 0, "deliveries failed");
    Ok(())
}

fn header(m: &OwnedMessage, name: &str) -> String {
    m.headers()
        .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The dead letters of the test's topic: (event id of the re-encoded value, reason, detail).
fn refused_letters(stack: &TestStack) -> anyhow::Result<Vec<(String, String, String)>> {
    let messages = sluice_loadtest::kit::kafka::read_all(&stack.brokers, &stack.dead_letter_topic)?;
    let mut out = Vec::new();
    for m in &messages {
        let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
        out.push((
            value["event_id"].as_str().unwrap_or_default().to_owned(),
            header(m, "sluice-dlq-reason"),
            header(m, "sluice-dlq-detail"),
        ));
    }
    out.sort();
    Ok(out)
}

/// Ids of `events`.
fn ids(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.event_id().to_owned()).collect();
    ids.sort();
    ids
}

/// Runs ingest over `events` + `poison` (after `prepare` set up the trap) and checks: ingest keeps
/// running, every partition is caught up, every poison event is dead-lettered with reason
/// `sink_refused` and a detail naming `code`, and the databases hold `expected`.
async fn poisoned_run(
    stack: &TestStack,
    events: &[Event],
    poison: &[Event],
    code: &str,
    expected: impl Fn(&Snapshot) -> Snapshot,
) -> anyhow::Result<()> {
    publish(stack, events, poison).await?;
    let mut ingest = stack.spawn_ingest("main", &[])?;
    let caught_up = stack.wait_caught_up(Duration::from_secs(45)).await;
    anyhow::ensure!(
        ingest.alive(),
        "ingest exited on a refused event; log:\n{}",
        ingest.log_text()
    );
    caught_up?;

    let letters = refused_letters(stack)?;
    assert_eq!(
        letters.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        ids(poison),
        "exactly the poison events are dead-lettered"
    );
    for (id, reason, detail) in &letters {
        assert_eq!(reason, "sink_refused", "{id}");
        assert!(detail.contains(&format!("code {code}:")), "{id}: {detail}");
    }
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");

    let actual = Actual::read(&stack.pg, &stack.ch).await?;
    let differences = diff(&expected(&actual), &actual, 10);
    assert!(
        differences.is_empty(),
        "databases differ:\n{}",
        differences.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_postgres_refuses_is_dead_lettered_and_the_rest_commits() -> anyhow::Result<()> {
    let stack = migrated_stack("iso_pg").await?;
    sqlx::query("ALTER TABLE click_daily ADD CONSTRAINT no_poison CHECK (short_code <> 'poison')")
        .execute(&stack.pg)
        .await?;
    let events = traffic(&stack, 1500)?;
    let poison = poison_clicks(3, |c| c.short_code = "poison".into());
    let everything: Vec<Event> = events.iter().chain(&poison).cloned().collect();
    // PostgreSQL: everything but the poison. ClickHouse stored the poison rows before PostgreSQL
    // refused them (the commit waits for ClickHouse): its raw table holds every event.
    poisoned_run(&stack, &events, &poison, "23514", |_| {
        let mut expected = Expected::from_events(&events);
        let all = Expected::from_events(&everything);
        expected.click_events = all.click_events;
        expected
    })
    .await?;
    stack.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_clickhouse_refuses_is_dead_lettered_and_the_rest_commits() -> anyhow::Result<()> {
    let stack = migrated_stack("iso_ch").await?;
    // 18.16 has no CHECK constraints; a view that parses the referrer of `poison…` rows as a number
    // refuses them with CANNOT_PARSE_TEXT (code 6) — after the table took the block.
    stack
        .ch
        .query(
            "CREATE MATERIALIZED VIEW poison_referrer ENGINE = MergeTree ORDER BY n AS \
             SELECT toUInt32(if(ifNull(referrer, '') LIKE 'poison%', ifNull(referrer, ''), '0')) AS n \
             FROM click_events",
        )
        .execute()
        .await?;
    let events = traffic(&stack, 1500)?;
    let poison = poison_clicks(3, |c| c.referrer = Some("poison-referrer".into()));
    let poison_ids = ids(&poison);
    // Neither aggregate counts the poison; the raw table may hold its rows (the view refused them
    // after the table's write), so they are left out of the comparison.
    poisoned_run(&stack, &events, &poison, "6", |actual| {
        let mut expected = Expected::from_events(&events);
        let mut raw: Vec<_> = actual
            .click_events
            .iter()
            .filter(|r| poison_ids.contains(&r.event_id))
            .cloned()
            .collect();
        expected.click_events.append(&mut raw);
        expected.click_events.sort();
        expected
    })
    .await?;
    stack.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_topic_cannot_take_does_not_stall_the_partitions() -> anyhow::Result<()> {
    let stack = TestStack::new("iso_dlq", 3).await?;
    // The dead-letter topic takes records of at most 4 KiB.
    stack
        .set_topic_config(&stack.dead_letter_topic, "max.message.bytes", "4096")
        .await?;

    let events = traffic(&stack, 900)?;
    let producer = stack.producer(Encoding::Json)?;
    for event in &events {
        producer.enqueue(event)?;
    }
    let clicks = stack.topic(EventKind::Click).to_owned();
    // 200 kB that is not JSON: refused as oversized; too large for the topic whole, it lands as a
    // truncated copy.
    let huge: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (huge_partition, huge_offset) = producer
        .send_raw(&clicks, Some(b"huge"), &huge, &[])
        .await?;
    // A small bad record with 1 KiB of key and 3.5 KiB of headers: even its smallest copy exceeds
    // 4 KiB, so it is parked in PostgreSQL.
    let key = vec![b'k'; 1024];
    let header_value = vec![b'h'; 3500];
    let (heavy_partition, heavy_offset) = producer
        .send_raw(
            &clicks,
            Some(&key),
            b"not json",
            &[("trace", &header_value)],
        )
        .await?;
    producer.flush(Duration::from_secs(30))?;
    anyhow::ensure!(producer.stats().failed == 0, "deliveries failed");

    let mut ingest = stack.spawn_ingest("main", &[])?;
    // Every partition commits, the two with the bad records included, well within the 20 s bound
    // (the topic's refusals are permanent: no retry at all).
    stack
        .wait_caught_up_alive(&mut ingest, Duration::from_secs(30))
        .await?;
    stack.stop_and_compare(vec![ingest], &events).await?;

    // The truncated copy: a prefix of the value, with the original size and hash.
    let letters = sluice_loadtest::kit::kafka::read_all(&stack.brokers, &stack.dead_letter_topic)?;
    assert_eq!(
        letters.len(),
        1,
        "only the huge record's copy is in the topic"
    );
    let copy = &letters[0];
    assert_eq!(header(copy, "sluice-dlq-reason"), "oversized");
    assert_eq!(header(copy, "sluice-dlq-truncated"), "true");
    assert_eq!(header(copy, "sluice-dlq-original-size"), "200000");
    assert_eq!(
        header(copy, "sluice-dlq-source-partition"),
        huge_partition.to_string()
    );
    assert_eq!(
        header(copy, "sluice-dlq-source-offset"),
        huge_offset.to_string()
    );
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&huge)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(copy, "sluice-dlq-sha256"), hash);
    let payload = copy.payload().unwrap_or_default();
    assert_eq!(
        payload.len(),
        512,
        "the copy that fits 4 KiB keeps 512 bytes"
    );
    assert_eq!(payload, &huge[..512]);

    // The parked record: whole, in PostgreSQL, with why the topic could not take it.
    let parked: Vec<ParkedRow> = sqlx::query_as(
        "SELECT source_topic, source_partition, source_offset, reason, record_key, record_value,
                    header_names, publish_error
             FROM sluice_dead_letters WHERE consumer_group = $1",
    )
    .bind(&stack.group)
    .fetch_all(&stack.pg)
    .await?;
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (topic, partition, offset, reason, record_key, value, header_names, error) = &parked[0];
    assert_eq!(
        (topic, *partition, *offset),
        (&clicks, heavy_partition, heavy_offset)
    );
    assert_eq!(reason, "invalid_encoding");
    assert_eq!((record_key, value), (&key, &b"not json".to_vec()));
    assert_eq!(header_names, &vec!["trace".to_owned()]);
    assert!(error.contains("too large"), "{error}");

    // The listing counts it.
    let listing = stack.run_ingest_command(&["dead-letters", "list"], &[])?;
    let line = format!("invalid_encoding         from {clicks} (parked in PostgreSQL)");
    assert!(listing.contains(&line), "{listing}");
    stack.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_topic_parks_the_letter_and_the_partitions_commit(
) -> anyhow::Result<()> {
    let stack = TestStack::new("iso_nodlq", 3).await?;
    // The broker does not create topics (auto.create.topics.enable=false in infra/kafka): with the
    // dead-letter topic gone, librdkafka fails the record as an unknown topic once
    // topic.metadata.propagation.max.ms (here 1 s) has passed.
    sluice_loadtest::kit::kafka::delete_topics(&stack.brokers, &[&stack.dead_letter_topic]).await?;
    let config = stack.log_dir.join("sluice.toml");
    std::fs::write(
        &config,
        "[kafka_properties]\n\"topic.metadata.propagation.max.ms\" = \"1000\"\n",
    )?;

    let events = traffic(&stack, 600)?;
    let producer = stack.producer(Encoding::Json)?;
    for event in &events {
        producer.enqueue(event)?;
    }
    let clicks = stack.topic(EventKind::Click).to_owned();
    let (partition, offset) = producer
        .send_raw(&clicks, Some(b"bad"), b"{not json", &[])
        .await?;
    producer.flush(Duration::from_secs(30))?;
    anyhow::ensure!(producer.stats().failed == 0, "deliveries failed");

    let config = config.to_string_lossy().into_owned();
    let mut ingest = stack.spawn_ingest("main", &[("SLUICE_CONFIG", &config)])?;
    stack
        .wait_caught_up_alive(&mut ingest, Duration::from_secs(25))
        .await?;
    stack.stop_and_compare(vec![ingest], &events).await?;

    let parked: Vec<(String, i32, i64, String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT source_topic, source_partition, source_offset, reason, record_value, publish_error
         FROM sluice_dead_letters WHERE consumer_group = $1",
    )
    .bind(&stack.group)
    .fetch_all(&stack.pg)
    .await?;
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (topic, p, o, reason, value, error) = &parked[0];
    assert_eq!((topic, *p, *o), (&clicks, partition, offset));
    assert_eq!(reason, "invalid_encoding");
    assert_eq!(value, b"{not json");
    assert!(error.contains("Unknown topic"), "{error}");
    stack.cleanup().await
}
