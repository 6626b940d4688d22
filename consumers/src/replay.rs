//! `sluice-ingest replay`: re-ingest a topic from an earlier offset or time without counting anything
//! twice. In: the group's members and the topic's partitions, watermarks and (for a time) offsets from
//! Kafka, and the group's stored offsets from PostgreSQL. Out: one plan line per partition and, unless
//! it is a dry run, one PostgreSQL transaction that moves the chosen stored offsets back, each by
//! compare-and-swap, and gives each a replay fence (`sluice_offsets.replay_until`) at the offset it
//! stood at. Ingest then re-reads from the new offset: records below the fence go to ClickHouse again
//! (idempotent by event) but touch neither the PostgreSQL aggregates nor the dedup window nor the
//! dead-letter topic, so PostgreSQL stays exact; the commit that reaches the fence clears it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_sinks::postgres::{PostgresSink, Rewind, Stored};

use crate::config::Config;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to move back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The same offset on every selected partition (clamped to each partition's low watermark).
    Offset(i64),
    /// The first record at or after this Kafka record time (ms since the epoch), per partition.
    Timestamp(i64),
}

impl Target {
    /// Parses `--to-timestamp`: RFC 3339 (`2026-05-01T12:00:00Z`) or milliseconds since the epoch.
    pub fn parse_timestamp(text: &str) -> anyhow::Result<Target> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let ms: i64 = text
                .parse()
                .with_context(|| format!("--to-timestamp {text}: out of range"))?;
            // 10^11 ms is March 1973; a 10-digit number is almost certainly seconds.
            if ms < 100_000_000_000 {
                bail!("--to-timestamp {text}: looks like seconds; give milliseconds since the epoch or RFC 3339");
            }
            return Ok(Target::Timestamp(ms));
        }
        let at = chrono::DateTime::parse_from_rfc3339(text).with_context(|| {
            format!("--to-timestamp {text}: neither RFC 3339 (2026-05-01T12:00:00Z) nor epoch milliseconds")
        })?;
        Ok(Target::Timestamp(at.timestamp_millis()))
    }
}

/// What the command was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub topic: String,
    /// Empty: every partition of the topic.
    pub partitions: Vec<i32>,
    pub target: Target,
    pub dry_run: bool,
    /// Skip the check that the consumer group has no active members.
    pub force: bool,
}

/// The decision for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Move the stored offset back from `from` to `to`; records below `fence` are re-read.
    Rewind { from: i64, to: i64, fence: i64 },
    /// The target is the stored offset: nothing to re-read.
    Unchanged { at: i64 },
    /// The target lies after the stored offset: moving there would skip records. Refused.
    Forward { stored: i64, target: i64 },
    /// The group never stored an offset for the partition: ingest has not read it, nothing to replay.
    NotStored,
}

/// Decides one partition: `target` (already resolved from a time if need be) is clamped to the
/// partition's low watermark, since records before it are gone.
pub fn plan_partition(stored: Option<Stored>, low_watermark: i64, target: i64) -> Step {
    let Some(stored) = stored else {
        return Step::NotStored;
    };
    let to = target.max(low_watermark).max(0);
    let from = stored.next_offset;
    if to > from {
        return Step::Forward {
            stored: from,
            target: to,
        };
    }
    if to == from {
        return Step::Unchanged { at: from };
    }
    // A replay still in progress keeps its fence: it marks where the first rewind started.
    let fence = stored.replay_until.map_or(from, |f| f.max(from));
    Step::Rewind { from, to, fence }
}

fn describe(partition: i32, step: &Step, fence_was_set: bool) -> String {
    match *step {
        Step::Rewind { from, to, fence } => format!(
            "partition {partition}: offset {from} -> {to}, fence {fence}{}, {} records to re-read",
            if fence_was_set {
                " (kept from a replay in progress)"
            } else {
                ""
            },
            fence - to
        ),
        Step::Unchanged { at } => {
            format!("partition {partition}: stored offset {at} is the target: nothing to re-read")
        }
        Step::Forward { stored, target } => format!(
            "partition {partition}: REFUSED: target {target} is after the stored offset {stored}; \
             moving forward would skip {} records (replay only moves back)",
            target - stored
        ),
        Step::NotStored => format!(
            "partition {partition}: no stored offset (never consumed under this group): nothing to replay"
        ),
    }
}

fn kafka_client(config: &Config, group: Option<&str>) -> anyhow::Result<BaseConsumer> {
    let mut settings = vec![
        ("client.id", "sluice-replay"),
        ("enable.auto.commit", "false"),
    ];
    if let Some(group) = group {
        settings.push(("group.id", group));
    }
    config
        .kafka_client_config(&settings)?
        .create()
        .context("cannot create the kafka client")
}

/// The consumer group's active members, as `client-id@host (member id)`.
fn active_members(consumer: &BaseConsumer, group: &str) -> anyhow::Result<Vec<String>> {
    let list = consumer
        .fetch_group_list(Some(group), KAFKA_TIMEOUT)
        .with_context(|| format!("cannot describe consumer group {group}"))?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| format!("{}@{} ({})", m.client_id(), m.client_host(), m.id()))
        .collect())
}

/// Runs the command; returns the lines to print. Refusals (active members, a forward move, nothing
/// stored for the topic) are errors and write nothing.
pub async fn replay(config: &Config, request: &Request) -> anyhow::Result<Vec<String>> {
    let group = &config.group_id;
    let topic = &request.topic;
    let kafka = kafka_client(config, None)?;
    let mut lines = vec![format!(
        "replay of topic {topic} for consumer group {group}{}",
        if request.dry_run {
            " (dry run: nothing is written)"
        } else {
            ""
        }
    )];

    let members = active_members(&kafka, group)?;
    if !members.is_empty() {
        let list = members.join(", ");
        if request.dry_run {
            lines.push(format!(
                "warning: consumer group {group} has {} active member(s): {list}; a real run would refuse",
                members.len()
            ));
        } else if request.force {
            lines.push(format!(
                "warning: --force with {} active member(s) in {group}: {list}; their next commits are fenced and they restart from the new offsets",
                members.len()
            ));
        } else {
            bail!(
                "consumer group {group} has {} active member(s): {list}. Stop the group's consumers first \
                 (e.g. scale its Deployment to 0), or pass --force",
                members.len()
            );
        }
    }

    let metadata = kafka
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
    let mut topic_partitions: Vec<i32> = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        if let Some(e) = t.error() {
            let e = rdkafka::types::RDKafkaErrorCode::from(e);
            bail!("topic {topic}: {e} (does it exist?)");
        }
        topic_partitions.extend(t.partitions().iter().map(|p| p.id()));
    }
    if topic_partitions.is_empty() {
        bail!("topic {topic} does not exist in Kafka");
    }
    topic_partitions.sort_unstable();
    let selected: Vec<i32> = if request.partitions.is_empty() {
        topic_partitions.clone()
    } else {
        let mut chosen = request.partitions.clone();
        chosen.sort_unstable();
        chosen.dedup();
        if let Some(p) = chosen.iter().find(|p| !topic_partitions.contains(p)) {
            bail!(
                "topic {topic} has no partition {p} (it has {})",
                topic_partitions.len()
            );
        }
        chosen
    };

    let postgres = PostgresSink::connect_pooled(
        &config.postgres_url,
        config.postgres_password()?.as_deref(),
        group,
        2,
        config.postgres_pool_mode,
    )?;
    let missing = postgres
        .missing_migrations()
        .await
        .context("cannot check the PostgreSQL schema version")?;
    if !missing.is_empty() {
        bail!(
            "the PostgreSQL schema lacks migrations {missing:?} that this build needs: run \
             `sluice-ingest migrate` as the tables' owner first"
        );
    }
    let stored = postgres
        .topic_offsets(topic)
        .await
        .context("cannot read the stored offsets")?;
    if stored.is_empty() {
        bail!(
            "consumer group {group} has no stored offsets for topic {topic}: nothing was ingested from it \
             under this group, so there is nothing to replay (check --topic and SLUICE_GROUP_ID)"
        );
    }

    let mut low = BTreeMap::new();
    for &p in &selected {
        let (l, h) = kafka
            .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
            .with_context(|| format!("cannot read the watermarks of {topic}/{p}"))?;
        low.insert(p, (l, h));
    }
    let targets: BTreeMap<i32, i64> = match request.target {
        Target::Offset(o) => selected.iter().map(|&p| (p, o)).collect(),
        Target::Timestamp(ms) => {
            let mut tpl = TopicPartitionList::new();
            for &p in &selected {
                tpl.add_partition_offset(topic, p, Offset::Offset(ms))?;
            }
            let found = kafka
                .offsets_for_times(tpl, KAFKA_TIMEOUT)
                .context("cannot look up offsets for the timestamp")?;
            let mut out = BTreeMap::new();
            for &p in &selected {
                let high = low[&p].1;
                let offset = match found.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    // No record at or after that time: the end of the partition.
                    Some(Offset::End) => high,
                    other => bail!("{topic}/{p}: no offset for the timestamp ({other:?})"),
                };
                out.insert(p, offset);
            }
            out
        }
    };

    let steps: Vec<(i32, Step, bool)> = selected
        .iter()
        .map(|&p| {
            let at = stored.get(&p).copied();
            let fence_was_set = at.is_some_and(|s| s.replay_until.is_some());
            (p, plan_partition(at, low[&p].0, targets[&p]), fence_was_set)
        })
        .collect();
    let refused: Vec<String> = steps
        .iter()
        .filter(|(_, s, _)| matches!(s, Step::Forward { .. }))
        .map(|(p, s, f)| describe(*p, s, *f))
        .collect();
    if !refused.is_empty() {
        bail!(
            "nothing written: replay only moves stored offsets back. {}. Leave those partitions out with \
             --partition, or choose an earlier target",
            refused.join("; ")
        );
    }
    let rewinds: Vec<Rewind> = steps
        .iter()
        .filter_map(|(p, s, _)| match *s {
            Step::Rewind { from, to, .. } => Some(Rewind {
                partition: *p,
                from,
                to,
            }),
            _ => None,
        })
        .collect();

    let fences = if request.dry_run || rewinds.is_empty() {
        BTreeMap::new()
    } else {
        postgres.rewind(topic, &rewinds).await?
    };
    for (p, step, fence_was_set) in &steps {
        // The fence written is the one planned (the swap checked the offset); report what was stored.
        let step = match (*step, fences.get(p)) {
            (Step::Rewind { from, to, .. }, Some(&fence)) => Step::Rewind { from, to, fence },
            (s, _) => s,
        };
        lines.push(describe(*p, &step, *fence_was_set));
    }
    if rewinds.is_empty() {
        lines.push("nothing to replay".into());
        return Ok(lines);
    }
    if !config.clickhouse_enabled {
        lines.push(
            "clickhouse_enabled=false: nothing to re-send for this group; ingest will re-read up to \
             the fences and commit, changing nothing"
                .into(),
        );
    }
    if request.dry_run {
        return Ok(lines);
    }
    lines.push(format!(
        "rewound {} partition(s) of {topic}; start ingest: records below each fence go to ClickHouse \
         again and are not applied to PostgreSQL a second time",
        rewinds.len()
    ));
    // Kafka's committed offsets only feed lag monitoring (and KEDA); set them to the new offsets so
    // the replay shows as lag. Best effort: PostgreSQL holds the truth.
    if members.is_empty() {
        let outcome = kafka_client(config, Some(group)).and_then(|c| {
            let mut tpl = TopicPartitionList::new();
            for r in &rewinds {
                tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.to))?;
            }
            c.commit(&tpl, CommitMode::Sync)?;
            Ok(())
        });
        match outcome {
            Ok(()) => lines.push(format!(
                "kafka: committed offsets of {group} set to the new offsets (lag monitoring only)"
            )),
            Err(e) => lines.push(format!(
                "kafka: could not update the committed offsets (lag monitoring only): {e:#}"
            )),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(next_offset: i64, replay_until: Option<i64>) -> Option<Stored> {
        Some(Stored {
            next_offset,
            watermark_ms: None,
            replay_until,
        })
    }

    #[test]
    fn plans_move_back_only() {
        assert_eq!(
            plan_partition(stored(500, None), 0, 100),
            Step::Rewind {
                from: 500,
                to: 100,
                fence: 500
            }
        );
        // Clamped to the low watermark (records before it are deleted).
        assert_eq!(
            plan_partition(stored(500, None), 120, 0),
            Step::Rewind {
                from: 500,
                to: 120,
                fence: 500
            }
        );
        assert_eq!(
            plan_partition(stored(500, None), 0, 501),
            Step::Forward {
                stored: 500,
                target: 501
            }
        );
        // Everything before the stored offset is gone: even offset 0 would be a forward move.
        assert_eq!(
            plan_partition(stored(500, None), 700, 0),
            Step::Forward {
                stored: 500,
                target: 700
            }
        );
        assert_eq!(
            plan_partition(stored(500, None), 0, 500),
            Step::Unchanged { at: 500 }
        );
        assert_eq!(plan_partition(None, 0, 0), Step::NotStored);
    }

    #[test]
    fn a_second_rewind_keeps_the_first_fence() {
        // First replay set the fence at 900; ingest has re-read up to 300 since.
        assert_eq!(
            plan_partition(stored(300, Some(900)), 0, 50),
            Step::Rewind {
                from: 300,
                to: 50,
                fence: 900
            }
        );
    }

    #[test]
    fn timestamps_are_rfc3339_or_epoch_milliseconds() {
        assert_eq!(
            Target::parse_timestamp("2026-05-01T12:00:00Z").unwrap(),
            Target::Timestamp(1_777_636_800_000)
        );
        assert_eq!(
            Target::parse_timestamp("2026-05-01T14:00:00.5+02:00").unwrap(),
            Target::Timestamp(1_777_636_800_500)
        );
        assert_eq!(
            Target::parse_timestamp("1777636800000").unwrap(),
            Target::Timestamp(1_777_636_800_000)
        );
        let seconds = Target::parse_timestamp("1777636800").unwrap_err();
        assert!(
            seconds.to_string().contains("looks like seconds"),
            "{seconds}"
        );
        assert!(Target::parse_timestamp("yesterday").is_err());
        assert!(Target::parse_timestamp("-5").is_err());
    }
}
