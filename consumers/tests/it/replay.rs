//! Replay (`sluice-ingest replay`, docs/operations.md "Replay and backfill"): after ClickHouse lost
//! rows, the group's stored offsets are moved back — to offset 0, then to a record time — and ingest
//! re-reads the range. The input: events of every kind, a third of them re-sent within a 5-second dedup
//! window, and malformed records, all with record timestamps set 20 ms apart, so each topic spans over a
//! minute of record time: far more than the window, so a rewind that ignored the replay fence would
//! count the early events a second time in PostgreSQL. Each replay ends with the independent verifier
//! (PostgreSQL aggregates and ClickHouse `FINAL` both exact), the stored offsets at the high watermarks
//! with no fence left, no dead letter published twice, and the counters of what was re-read; the first
//! one also with the dedup window exactly as it was. Plus the command's refusals: a live group member, a
//! forward move, a topic the group never consumed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_consumers::metrics::{DUPLICATES, RECORDS_CONSUMED};
use sluice_loadtest::kit::kafka::{high_watermarks, Offsets};
use sluice_loadtest::verify::Expected;
use sluice_producers::synth::{Synth, SynthConfig};
use sluice_schemas::{encode, Encoding, Event, EventKind, ENCODING_HEADER};

use crate::support::{metric_value, Ingest, TestStack, SETTLE};

/// A small dedup window, in seconds of record time.
const WINDOW: &[(&str, &str)] = &[("SLUICE_DEDUP_WINDOW_SECS", "5")];
/// Record time between two published records.
const STEP_MS: i64 = 20;

/// What to publish: an event, or `None` for an undecodable record on the click topic.
type Item = Option<Event>;

/// One published record and where it landed.
struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    ts: i64,
    event_id: Option<String>,
}

/// Publishes records with explicit, evenly spaced record timestamps (JSON and bincode alternating).
struct Publisher {
    producer: FutureProducer,
    next_ts: i64,
    records: Vec<Record>,
    events: Vec<Event>,
}

impl Publisher {
    fn new(brokers: &str, first_ts: i64) -> anyhow::Result<Publisher> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // In-order per partition, so offset order is record-time order.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .context("creating the test producer")?;
        Ok(Publisher {
            producer,
            next_ts: first_ts,
            records: Vec::new(),
            events: Vec::new(),
        })
    }

    async fn publish(&mut self, stack: &TestStack, items: Vec<Item>) -> anyhow::Result<()> {
        let mut pending = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let ts = self.next_ts;
            self.next_ts += STEP_MS;
            let (topic, key, value, encoding, event_id) = match &item {
                Some(e) => {
                    let encoding = if i % 2 == 0 {
                        Encoding::Json
                    } else {
                        Encoding::Bincode
                    };
                    let topic = stack.topic(e.kind()).to_owned();
                    let id = Some(e.event_id().to_owned());
                    (topic, e.partition_key(), encode(e, encoding), encoding, id)
                }
                None => (
                    stack.topic(EventKind::Click).to_owned(),
                    format!("poison-{i}"),
                    b"{\"event_id\": ".to_vec(),
                    Encoding::Json,
                    None,
                ),
            };
            let headers = OwnedHeaders::new().insert(Header {
                key: ENCODING_HEADER,
                value: Some(encoding.as_str()),
            });
            let record = FutureRecord::to(&topic)
                .key(key.as_bytes())
                .payload(&value[..])
                .headers(headers)
                .timestamp(ts);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("enqueue failed: {e}"))?;
            pending.push((delivery, topic, ts, event_id));
            if let Some(e) = item {
                self.events.push(e);
            }
        }
        for (delivery, topic, ts, event_id) in pending {
            let delivered = delivery
                .await
                .context("delivery report lost")?
                .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
            self.records.push(Record {
                topic,
                partition: delivered.partition,
                offset: delivered.offset,
                ts,
                event_id,
            });
        }
        Ok(())
    }
}

/// `new` fresh events from `synth`, each re-sent with probability 1/3 within the next 100 records (2 s
/// of record time, inside the window), plus `poison_at` malformed records. Returns the items and the
/// number of copies.
fn with_resends(
    synth: &mut Synth,
    rng: &mut rand::rngs::StdRng,
    new: usize,
    poison_at: &[usize],
) -> (Vec<Item>, usize) {
    let now = Utc::now();
    let mut items = Vec::new();
    let mut later: Vec<(usize, Event)> = Vec::new();
    let mut copies = 0;
    for i in 0..new {
        let event = synth.next(now);
        if rng.random_bool(1.0 / 3.0) {
            later.push((items.len() + rng.random_range(1..100), event.clone()));
            copies += 1;
        }
        items.push(Some(event));
        if poison_at.contains(&i) {
            items.push(None);
        }
        let (due, rest): (Vec<_>, Vec<_>) = later.drain(..).partition(|(at, _)| *at <= items.len());
        later = rest;
        items.extend(due.into_iter().map(|(_, e)| Some(e)));
    }
    items.extend(later.into_iter().map(|(_, e)| Some(e)));
    (items, copies)
}

/// `replay` lines: partition → (from, to, fence, records to re-read).
fn parse_rewinds(output: &str) -> anyhow::Result<BTreeMap<i32, (i64, i64, i64, i64)>> {
    let mut out = BTreeMap::new();
    for line in output.lines().filter(|l| l.contains(" -> ")) {
        // partition 2: offset 1234 -> 0, fence 1234, 1234 records to re-read
        let numbers: Vec<i64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [p, from, to, fence, n] = numbers[..] else {
            bail!("unexpected replay line: {line}");
        };
        out.insert(p as i32, (from, to, fence, n));
    }
    Ok(out)
}

/// Everything stored for the group: (topic, partition) → (next_offset, replay_until).
async fn stored(stack: &TestStack) -> anyhow::Result<BTreeMap<(String, i32), (i64, Option<i64>)>> {
    let rows: Vec<(String, i32, i64, Option<i64>)> = sqlx::query_as(
        "SELECT topic, partition, next_offset, replay_until FROM sluice_offsets WHERE consumer_group = $1",
    )
    .bind(&stack.group)
    .fetch_all(&stack.pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, p, o, f)| ((t, p), (o, f)))
        .collect())
}

/// The persisted dedup window and watermarks, byte for byte.
async fn dedup_state(stack: &TestStack) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws(' ', topic, partition, end_offset, max_expiry_ms, md5(ids)) FROM sluice_dedup
          WHERE consumer_group = $1
         UNION ALL
         SELECT concat_ws(' ', topic, partition, 'watermark', watermark_ms) FROM sluice_offsets
          WHERE consumer_group = $1
         ORDER BY 1",
    )
    .bind(&stack.group)
    .fetch_all(&stack.pg)
    .await?;
    Ok(rows.into_iter().map(|(r,)| r).collect())
}

/// Stored offsets equal the high watermarks and no fence is left.
async fn assert_caught_up_without_fences(stack: &TestStack, high: &Offsets) -> anyhow::Result<()> {
    let now = stored(stack).await?;
    let offsets: Offsets = now.iter().map(|(k, (o, _))| (k.clone(), *o)).collect();
    assert_eq!(&offsets, high, "stored offsets are the high watermarks");
    let fences: Vec<_> = now.iter().filter(|(_, (_, f))| f.is_some()).collect();
    assert!(fences.is_empty(), "fences left: {fences:?}");
    Ok(())
}

/// Raw rows in ClickHouse (FINAL), over the three tables.
async fn clickhouse_rows(stack: &TestStack) -> anyhow::Result<u64> {
    let mut total = 0;
    for table in ["rank_events", "crawl_events", "click_events"] {
        let n: u64 = stack
            .ch
            .query(&format!("SELECT count() FROM {table} FINAL"))
            .fetch_one()
            .await?;
        total += n;
    }
    Ok(total)
}

/// Deletes raw rows (an `ALTER TABLE … DELETE` mutation on each table) and waits until it is done.
async fn lose_clickhouse_rows(stack: &TestStack, predicate: &str) -> anyhow::Result<()> {
    for table in ["rank_events", "crawl_events", "click_events"] {
        stack
            .ch
            .query(&format!("ALTER TABLE {table} DELETE WHERE {predicate}"))
            .execute()
            .await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running: u64 = stack
            .ch
            .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
            .bind(&stack.ch_database)
            .fetch_one()
            .await?;
        if running == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{running} ClickHouse mutations still running after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts ingest (small dedup window), waits until every stored offset reached the high watermark, and
/// returns it running, with its metrics once it has consumed at least `records` records.
async fn ingest_caught_up(
    stack: &TestStack,
    name: &str,
    records: usize,
) -> anyhow::Result<(Ingest, String)> {
    let ingest = stack.spawn_ingest(name, WINDOW)?;
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    let metrics = ingest
        .metrics_after(RECORDS_CONSUMED, records as f64, SETTLE)
        .await?;
    Ok((ingest, metrics))
}

fn dead_letters(stack: &TestStack) -> anyhow::Result<usize> {
    Ok(sluice_loadtest::kit::kafka::read_all(&stack.brokers, &stack.dead_letter_topic)?.len())
}

/// Runs `sluice-ingest replay` expecting a refusal; returns its stderr.
fn refused(stack: &TestStack, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    let output = stack.ingest_command_output(&all, env)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "replay {args:?} should have been refused; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_restores_clickhouse_and_counts_nothing_twice() -> anyhow::Result<()> {
    let stack = TestStack::new("replay", 3).await?;
    let topics: Vec<String> = stack.topic_names().iter().map(|t| t.to_string()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let mut synth = Synth::new(
        SynthConfig {
            seed: 31,
            tenants: 4,
            days_back: 2,
            ..SynthConfig::default()
        },
        &stack.name,
    )?;
    // Record time starts 20 minutes ago and advances 20 ms per record.
    let first_ts = (Utc::now() - TimeDelta::minutes(20)).timestamp_millis();
    let mut publisher = Publisher::new(&stack.brokers, first_ts)?;
    let (items, copies) = with_resends(&mut synth, &mut rng, 3000, &[500, 2950, 2990]);
    let poison = items.iter().filter(|i| i.is_none()).count();
    publisher.publish(&stack, items).await?;
    let first_pass_records = publisher.records.len();
    let span_ms = publisher.next_ts - first_ts;
    assert!(
        span_ms > 10 * 5_000,
        "record time ({span_ms} ms) must span far more than the window"
    );
    for kind in EventKind::ALL {
        let n = publisher.events.iter().filter(|e| e.kind() == kind).count();
        assert!(n > 300, "too few {kind} events: {n}");
    }

    // First pass.
    let (ingest, metrics) = ingest_caught_up(&stack, "first", first_pass_records).await?;
    assert_eq!(
        metric_value(&metrics, DUPLICATES, &[]),
        copies as f64,
        "every copy is inside the window"
    );
    // Refused while the group has a live member.
    let stderr = refused(&stack, &["--topic", &topics[0], "--to-offset", "0"], WINDOW)?;
    assert!(stderr.contains("active member(s)"), "{stderr}");
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    let expected = Expected::from_events(&publisher.events);
    stack.assert_matches(&expected).await?;
    let high = high_watermarks(&stack.brokers, &stack.topic_names())?;
    assert_caught_up_without_fences(&stack, &high).await?;
    assert_eq!(dead_letters(&stack)?, poison);
    let window_before = dedup_state(&stack).await?;
    assert!(!window_before.is_empty());
    let offsets_before = stored(&stack).await?;

    // Refusals that write nothing.
    let stderr = refused(
        &stack,
        &["--topic", &topics[0], "--to-offset", "1000000"],
        WINDOW,
    )?;
    assert!(
        stderr.contains("REFUSED") && stderr.contains("nothing written"),
        "{stderr}"
    );
    let stderr = refused(
        &stack,
        &["--topic", &stack.dead_letter_topic, "--to-offset", "0"],
        WINDOW,
    )?;
    assert!(
        stderr.contains(&format!(
            "has no stored offsets for topic {}",
            stack.dead_letter_topic
        )),
        "{stderr}"
    );
    let click_topic = stack.topic(EventKind::Click).to_owned();
    let dry = stack.run_ingest_command(
        &[
            "replay",
            "--topic",
            &click_topic,
            "--to-offset",
            "0",
            "--dry-run",
        ],
        &[("SLUICE_CLICKHOUSE_ENABLED", "false")],
    )?;
    assert!(dry.contains("dry run"), "{dry}");
    assert!(dry.contains("nothing to re-send for this group"), "{dry}");
    assert_eq!(
        stored(&stack).await?,
        offsets_before,
        "refusals and dry runs write nothing"
    );

    // 1. ClickHouse loses a third of its raw rows; replay everything from offset 0.
    let complete = clickhouse_rows(&stack).await?;
    lose_clickhouse_rows(&stack, "cityHash64(event_id) % 3 = 0").await?;
    let left = clickhouse_rows(&stack).await?;
    assert!(left < complete * 3 / 4, "rows lost: {complete} -> {left}");
    let mut to_reread = 0;
    for topic in &topics {
        let out =
            stack.run_ingest_command(&["replay", "--topic", topic, "--to-offset", "0"], WINDOW)?;
        let rewinds = parse_rewinds(&out)?;
        let planned: BTreeMap<i32, (i64, i64, i64, i64)> = high
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), h)| (*p, (*h, 0, *h, *h)))
            .collect();
        assert_eq!(rewinds, planned, "{out}");
        to_reread += planned.values().map(|r| r.3).sum::<i64>();
    }
    assert_eq!(to_reread, first_pass_records as i64);
    let fenced = stored(&stack).await?;
    for ((topic, p), h) in &high {
        assert_eq!(fenced[&(topic.clone(), *p)], (0, Some(*h)));
    }
    let (ingest, metrics) = ingest_caught_up(&stack, "replay-from-0", first_pass_records).await?;
    let count = |name: &str| metric_value(&metrics, name, &[]);
    assert_eq!(
        count("sluice_ingest_records_replayed_total"),
        first_pass_records as f64
    );
    assert_eq!(count("sluice_ingest_events_aggregated_total"), 0.0);
    assert_eq!(count("sluice_ingest_duplicates_total"), 0.0);
    assert_eq!(count("sluice_ingest_records_rejected_total"), 0.0);
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    stack.assert_matches(&expected).await?;
    assert_caught_up_without_fences(&stack, &high).await?;
    assert_eq!(
        dead_letters(&stack)?,
        poison,
        "no dead letter published twice"
    );
    assert_eq!(
        dedup_state(&stack).await?,
        window_before,
        "the dedup window is exactly as it was at the fence"
    );

    // 2. ClickHouse loses the events recorded in the last third of the record time; replay from that
    //    time. Then one click partition goes back further while that replay is pending (its fence must
    //    stay), and new records arrive: fresh events and copies of the last events before the fence,
    //    which the window as it was at the fence must recognise.
    let cut_ts = first_ts + STEP_MS * (2 * first_pass_records as i64 / 3);
    let mut first_at_cut: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in publisher.records.iter().filter(|r| r.ts >= cut_ts) {
        let at = first_at_cut
            .entry((r.topic.clone(), r.partition))
            .or_insert(r.offset);
        *at = (*at).min(r.offset);
    }
    let lost: BTreeSet<&str> = publisher
        .records
        .iter()
        .filter(|r| {
            r.offset
                >= first_at_cut
                    .get(&(r.topic.clone(), r.partition))
                    .copied()
                    .unwrap_or(i64::MAX)
        })
        .filter_map(|r| r.event_id.as_deref())
        .collect();
    let list: Vec<String> = lost.iter().map(|id| format!("'{id}'")).collect();
    lose_clickhouse_rows(&stack, &format!("event_id IN ({})", list.join(","))).await?;
    assert!(clickhouse_rows(&stack).await? < complete);
    let cut = chrono::DateTime::from_timestamp_millis(cut_ts)
        .context("cut time")?
        .to_rfc3339();
    let mut rewound = BTreeMap::new();
    for topic in &topics {
        let out = stack.run_ingest_command(
            &["replay", "--topic", topic, "--to-timestamp", &cut],
            WINDOW,
        )?;
        let rewinds = parse_rewinds(&out)?;
        for ((t, p), h) in high.iter().filter(|((t, _), _)| t == topic) {
            match first_at_cut.get(&(t.clone(), *p)) {
                Some(&o) => assert_eq!(rewinds.get(p), Some(&(*h, o, *h, h - o)), "{out}"),
                None => assert!(
                    out.contains(&format!("partition {p}: stored offset {h} is the target")),
                    "{out}"
                ),
            }
        }
        rewound.extend(rewinds.into_iter().map(|(p, r)| ((topic.clone(), p), r)));
    }
    let click_0 = (click_topic.clone(), 0);
    let high_click_0 = high[&click_0];
    let out = stack.run_ingest_command(
        &[
            "replay",
            "--topic",
            &click_topic,
            "--partition",
            "0",
            "--to-offset",
            "0",
        ],
        WINDOW,
    )?;
    let from = rewound[&click_0].1;
    assert_eq!(
        parse_rewinds(&out)?,
        BTreeMap::from([(0, (from, 0, high_click_0, high_click_0))]),
        "{out}"
    );
    assert!(out.contains("(kept from a replay in progress)"), "{out}");
    rewound.insert(click_0, (from, 0, high_click_0, high_click_0));
    let replayed: i64 = rewound.values().map(|r| r.3).sum();

    let tail: Vec<Event> = publisher.events.iter().rev().take(30).cloned().collect();
    let (fresh, fresh_copies) = with_resends(&mut synth, &mut rng, 200, &[]);
    let mut items: Vec<Item> = tail.into_iter().map(Some).collect();
    let tail_copies = items.len();
    items.extend(fresh);
    let new_records = items.len();
    publisher.publish(&stack, items).await?;
    let high = high_watermarks(&stack.brokers, &stack.topic_names())?;

    let (ingest, metrics) =
        ingest_caught_up(&stack, "replay-from-time", replayed as usize + new_records).await?;
    let count = |name: &str| metric_value(&metrics, name, &[]);
    assert_eq!(
        count("sluice_ingest_records_consumed_total"),
        (replayed as usize + new_records) as f64
    );
    assert_eq!(
        count("sluice_ingest_records_replayed_total"),
        replayed as f64
    );
    assert_eq!(
        count("sluice_ingest_duplicates_total"),
        (tail_copies + fresh_copies) as f64,
        "copies of events from before the fence are recognised by the window kept at the fence"
    );
    assert_eq!(count("sluice_ingest_events_aggregated_total"), 200.0);
    assert_eq!(count("sluice_ingest_records_rejected_total"), 0.0);
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    stack
        .assert_matches(&Expected::from_events(&publisher.events))
        .await?;
    assert_caught_up_without_fences(&stack, &high).await?;
    assert_eq!(
        dead_letters(&stack)?,
        poison,
        "no dead letter published twice"
    );
    stack.cleanup().await
}
