//! `sluice-ingest dead-letters …`: inspect and re-publish the dead-letter topic. After the cause of a
//! rejection is fixed (a producer bug, a validation limit raised), `republish` sends every dead letter
//! back to its source topic — original key, value and headers, without the `sluice-dlq-*` ones — so
//! ingest processes it like any record. Letters go out through the producer library's
//! [`EventProducer`], so a keyed letter lands on the partition Kafka's murmur2 gives its key (where
//! ingest's dedup window sees any copy of it), and a delivery reported without an offset is sent again.
//! It reads from its own consumer group's committed position up to the end of the topic as it was when
//! the command started, and commits after each chunk of letters it re-published was acknowledged:
//! running it twice does not re-send what the first run finished.
//!
//! Dead letters the topic could not take (too large even truncated, topic missing or not authorised,
//! publish still failing after its bound) are parked in PostgreSQL's `sluice_dead_letters` instead;
//! the listing counts them too, as coming from `<topic> (parked in PostgreSQL)`. They are not
//! re-published: read them with SQL (docs/operations.md, "Dead letters").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::join_all;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use sluice_producers::{EventProducer, ProducerConfig};
use sluice_sinks::dead_letter::headers;
use sluice_sinks::postgres::PostgresSink;

use crate::config::Config;

/// How many letters are re-published at once: their acknowledgements are awaited, then the read
/// position is committed, before the next ones are read.
const REPUBLISH_CHUNK: usize = 1000;

/// A dead letter on its way back to its source topic.
struct Letter {
    source: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: OwnedHeaders,
}

/// Re-publishes `letters` concurrently and waits for every acknowledgement; returns how many.
async fn send_all(producer: &EventProducer, letters: &[Letter]) -> anyhow::Result<u64> {
    let sends = letters.iter().map(|letter| {
        producer.send_record(
            &letter.source,
            letter.key.as_deref(),
            &letter.value,
            letter.headers.clone(),
        )
    });
    for (letter, sent) in letters.iter().zip(join_all(sends).await) {
        sent.with_context(|| format!("cannot re-publish a dead letter to {}", letter.source))?;
    }
    Ok(letters.len() as u64)
}

/// Commits the read position: every letter before it was re-published (or needed no re-publishing).
fn commit(
    consumer: &BaseConsumer,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in positions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*next))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .context("committing the read position")
}

/// What a republish or a listing saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// (reason, source topic) → records; letters parked in PostgreSQL count under
    /// `"<topic> (parked in PostgreSQL)"`.
    pub by_reason: BTreeMap<(String, String), u64>,
    pub republished: u64,
}

fn header_str(message: &impl Message, name: &str) -> Option<String> {
    let hs = message.headers()?;
    hs.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Reads the dead-letter topic from the read group's position to the current end; with `republish`,
/// sends each record back to its source topic and commits.
pub async fn read(config: &Config, republish: bool) -> anyhow::Result<Summary> {
    let topic = &config.dead_letter_topic;
    if topic.is_empty() {
        bail!("invalid config: dead_letter_topic is empty (dead-lettering is off)");
    }
    // The group keeps the read position; its name predates `republish` (renaming it would lose it).
    let group = format!("{}-dlq-replay", config.group_id);
    let consumer: BaseConsumer = config
        .kafka_client_config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ])?
        .create()
        .context("cannot create the dead-letter consumer")?;
    // Only to republish. The producer library's: the murmur2 partitioner every Sluice producer uses (a
    // letter goes back to the partition its key belongs to, where the dedup window sees copies of it),
    // and its re-sends of deliveries reported without an offset.
    let producer = if republish {
        let extra = config
            .kafka_properties_with_secrets()?
            .into_iter()
            .collect();
        let producer = EventProducer::new(ProducerConfig {
            brokers: config.kafka_brokers.clone(),
            extra,
            ..ProducerConfig::default()
        });
        Some(producer.context("cannot create the republish producer")?)
    } else {
        None
    };

    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // For each partition: [start, end) to read; start from the read group's committed offset, or the
    // low watermark when it has none.
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        ranges.insert(p, (from, high));
        assignment.add_partition_offset(topic, p, Offset::Offset(from))?;
    }
    consumer.assign(&assignment)?;

    let mut summary = Summary::default();
    let postgres = PostgresSink::connect_pooled(
        &config.postgres_url,
        config.postgres_password()?.as_deref(),
        &config.group_id,
        1,
        config.postgres_pool_mode,
    )?;
    for (reason, source, n) in postgres
        .parked_dead_letters()
        .await
        .context("reading parked dead letters (sluice_dead_letters)")?
    {
        let source = format!("{source} (parked in PostgreSQL)");
        *summary.by_reason.entry((reason, source)).or_default() += n as u64;
    }
    // Next offset to read per partition.
    let mut positions: BTreeMap<i32, i64> =
        ranges.iter().map(|(p, (from, _))| (*p, *from)).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = |positions: &BTreeMap<i32, i64>| {
        ranges
            .iter()
            .all(|(p, (_, end))| positions.get(p).is_some_and(|pos| pos >= end))
    };
    let mut pending = Vec::new();
    while !done(&positions) {
        if Instant::now() > deadline {
            bail!("dead-letter republish did not reach the end of {topic} within 300 s");
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.context("reading the dead-letter topic")?;
        if message.offset() >= ranges.get(&message.partition()).map_or(0, |r| r.1) {
            continue;
        }
        positions.insert(message.partition(), message.offset() + 1);
        let reason = header_str(&message, headers::REASON).unwrap_or_else(|| "unknown".into());
        let source = header_str(&message, headers::SOURCE_TOPIC).unwrap_or_default();
        *summary
            .by_reason
            .entry((reason, source.clone()))
            .or_default() += 1;
        let Some(producer) = producer.as_ref().filter(|_| !source.is_empty()) else {
            continue;
        };
        let mut hs = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original
                .iter()
                .filter(|h| !h.key.starts_with(headers::PREFIX))
            {
                hs = hs.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        pending.push(Letter {
            source,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers: hs,
        });
        if pending.len() >= REPUBLISH_CHUNK {
            summary.republished += send_all(producer, &pending).await?;
            pending.clear();
            commit(&consumer, topic, &positions)?;
        }
    }
    if let Some(producer) = &producer {
        summary.republished += send_all(producer, &pending).await?;
        commit(&consumer, topic, &positions)?;
    }
    Ok(summary)
}
