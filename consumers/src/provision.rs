//! `sluice-ingest provision`: creates the configured event topics and the dead-letter topic through
//! Kafka's admin API — partitions, replication factor and retention each — and leaves existing topics
//! as they are (it reports them). The dead-letter topic gets its own, longer retention: dead letters wait
//! for a human.

use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;

/// What to create.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
    pub retention: Duration,
    pub dead_letter_partitions: i32,
    pub dead_letter_retention: Duration,
}

/// Creates the topics; returns one line per topic saying what happened.
pub async fn provision(config: &Config, spec: TopicSpec) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<DefaultClientContext> = config
        .kafka_client_config(&[])?
        .create()
        .context("cannot create the kafka admin client")?;
    let retention = spec.retention.as_millis().to_string();
    let dlq_retention = spec.dead_letter_retention.as_millis().to_string();
    let mut topics: Vec<NewTopic<'_>> = config
        .event_kinds()?
        .into_iter()
        .map(|kind| {
            NewTopic::new(
                config.topic_of(kind),
                spec.partitions,
                TopicReplication::Fixed(spec.replication),
            )
            .set("retention.ms", &retention)
        })
        .collect();
    if !config.dead_letter_topic.is_empty() {
        topics.push(
            NewTopic::new(
                &config.dead_letter_topic,
                spec.dead_letter_partitions,
                TopicReplication::Fixed(spec.replication),
            )
            .set("retention.ms", &dlq_retention),
        );
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .context("create_topics")?;
    let mut lines = Vec::new();
    for result in results {
        match result {
            Ok(topic) => lines.push(format!("created {topic}")),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                lines.push(format!("exists  {topic}"))
            }
            Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(lines)
}
