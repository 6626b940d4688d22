//! Kafka as the kit sees it: topic deletion through the admin API (creation is `sluice-ingest
//! provision`, [`IngestSetup::provision`](super::IngestSetup::provision)), high watermarks (how far each
//! partition has been written) and the stored offsets the ingest service keeps in PostgreSQL — together
//! they answer "has ingest caught up?" — and a few operator moves tests make (read a whole topic, reset
//! a group's offsets).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;

/// (topic, partition) → offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

fn admin(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create kafka admin client")
}

/// Deletes topics, ignoring ones that do not exist.
pub async fn delete_topics(brokers: &str, topics: &[&str]) -> anyhow::Result<()> {
    admin(brokers)?
        .delete_topics(topics, &AdminOptions::new())
        .await
        .context("delete_topics")?;
    Ok(())
}

/// The high watermark (next offset to be written) of every partition of the given topics.
pub fn high_watermarks(brokers: &str, topics: &[&str]) -> anyhow::Result<Offsets> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create kafka client")?;
    let mut out = Offsets::new();
    let timeout = Duration::from_secs(10);
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("metadata of {topic}"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                out.insert((topic.to_string(), p.id()), high);
            }
        }
    }
    Ok(out)
}

/// The offsets the ingest service stored for a consumer group (only partitions it ever committed; none
/// before its migrations created the table).
pub async fn stored_offsets(pg: &PgPool, group: &str) -> anyhow::Result<Offsets> {
    let rows: Vec<(String, i32, i64)> = match sqlx::query_as(
        "SELECT topic, partition, next_offset FROM sluice_offsets WHERE consumer_group = $1",
    )
    .bind(group)
    .fetch_all(pg)
    .await
    {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e).context("reading sluice_offsets"),
    };
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// How many records are written but not yet durably processed (sum over partitions).
pub fn lag(high: &Offsets, stored: &Offsets) -> i64 {
    high.iter()
        .map(|(k, h)| (h - stored.get(k).copied().unwrap_or(0)).max(0))
        .sum()
}

/// Waits until every partition's stored offset has reached its high watermark.
pub async fn wait_caught_up(
    brokers: &str,
    pg: &PgPool,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> anyhow::Result<Offsets> {
    let high = high_watermarks(brokers, topics)?;
    let deadline = Instant::now() + timeout;
    loop {
        let stored = stored_offsets(pg, group).await?;
        let lag = lag(&high, &stored);
        if lag == 0 {
            return Ok(stored);
        }
        if Instant::now() > deadline {
            bail!("ingest did not catch up within {timeout:?}: {lag} records behind (high {high:?}, stored {stored:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every record currently in a topic (all partitions, from the low to the high watermark).
pub fn read_all(brokers: &str, topic: &str) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let high = high_watermarks(brokers, &[topic])?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-read-all")
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create kafka client")?;
    let mut tpl = TopicPartitionList::new();
    for (t, p) in high.keys() {
        tpl.add_partition_offset(t, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = |next: &BTreeMap<i32, i64>| {
        high.iter()
            .all(|((_, p), h)| *h == 0 || next.get(p).is_some_and(|n| n >= h))
    };
    while !done(&next) {
        if Instant::now() > deadline {
            bail!("could not read {topic} to its end within 30 s");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            next.insert(message.partition(), message.offset() + 1);
            out.push(message.detach());
        }
    }
    Ok(out)
}

/// Sets a consumer group's committed Kafka offsets to the beginning of every partition of `topics`
/// (what `kafka-consumer-groups --reset-offsets --to-earliest` does). The group must have no members.
pub fn reset_group_offsets(brokers: &str, group: &str, topics: &[&str]) -> anyhow::Result<()> {
    use rdkafka::consumer::CommitMode;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create kafka client")?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), _) in high_watermarks(brokers, topics)? {
        let (low, _) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
        tpl.add_partition_offset(&topic, partition, Offset::Offset(low))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .context("resetting group offsets")?;
    Ok(())
}
