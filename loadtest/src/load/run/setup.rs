//! The setup phase of a run: its names on the stack (topics, groups, databases per run and phase),
//! its own databases and topics, ingest started on them with every partition assigned, and the latency
//! pollers; and the cleanup of a passing run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_schemas::EventKind;

use super::args::RunArgs;
use super::rates::Watermarks;
use super::{say, Run, PG_POLL};
use crate::kit::kafka as kafka_util;
use crate::kit::{Databases, IngestSetup};
use crate::load::latency::{self, Tracker};

/// The names one phase uses on the stack.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) run_id: String,
    pub(super) topics: [String; 3],
    pub(super) dead_letters: String,
    pub(super) database: String,
}

impl Names {
    pub(super) fn new(id: &str, phase: Option<&str>) -> Names {
        let prefix = match phase {
            Some(p) => format!("load-{id}-{p}"),
            None => format!("load-{id}"),
        };
        Names {
            run_id: prefix.clone(),
            topics: EventKind::ALL.map(|k| format!("{prefix}-{}", k.default_topic())),
            dead_letters: format!("{prefix}-dead-letters"),
            database: prefix.replace('-', "_"),
        }
    }

    pub(super) fn all_topics(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        all.push(&self.dead_letters);
        all
    }

    pub(super) fn topic_map(&self) -> BTreeMap<EventKind, String> {
        EventKind::ALL
            .iter()
            .zip(self.topics.iter())
            .map(|(k, t)| (*k, t.clone()))
            .collect()
    }

    pub(super) fn group(&self, what: &str) -> String {
        format!("{}-{what}", self.run_id)
    }
}

/// Ingest on a phase's topics and databases, its sinks on or off.
pub(super) fn ingest_setup(
    args: &RunArgs,
    names: &Names,
    dbs: &Databases,
    group: String,
    sinks_enabled: bool,
) -> IngestSetup {
    let mut env = vec![("SLUICE_SINKS_ENABLED".to_owned(), sinks_enabled.to_string())];
    env.extend(args.ingest_env.iter().cloned());
    IngestSetup {
        binary: args.ingest_bin.clone(),
        brokers: args.stack.brokers.clone(),
        group,
        topics: names.topics.clone(),
        dead_letter_topic: names.dead_letters.clone(),
        postgres_url: dbs.pg_url.clone(),
        clickhouse_url: args.stack.clickhouse_url.clone(),
        clickhouse_database: dbs.name.clone(),
        rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        env,
        own_process_group: false,
    }
}

/// A phase's own topics and databases: the databases, then the topics (`sluice-ingest provision`).
pub(super) async fn isolate(args: &RunArgs, names: &Names) -> anyhow::Result<Databases> {
    let dbs = Databases::create(
        &args.stack.postgres_url,
        &args.stack.clickhouse_url,
        &names.database,
    )
    .await?;
    ingest_setup(args, names, &dbs, names.group("provision"), true)
        .provision(args.partitions, args.partitions)
        .context("creating the topics (is the stack up? `make up`)")?;
    Ok(dbs)
}

async fn drop_everything(args: &RunArgs, names: &Names, dbs: Databases) -> anyhow::Result<()> {
    kafka_util::delete_topics(&args.stack.brokers, &names.all_topics()).await?;
    dbs.drop(&args.stack.postgres_url).await
}

/// Cleanup never fails a run: a leftover is reported and can be dropped by hand.
pub(super) async fn clean_up(
    args: &RunArgs,
    names: &Names,
    dbs: Databases,
    problems: &mut Vec<String>,
) {
    if let Err(e) = drop_everything(args, names, dbs).await {
        say(format!(
            "warning: cleanup of {} failed: {e:#}",
            names.database
        ));
        problems.push(format!(
            "cleanup failed (drop topics {}-* and databases {} by hand): {e:#}",
            names.run_id, names.database
        ));
    }
}

impl<'a> Run<'a> {
    /// The setup phase: the run's databases and topics, ingest started on them and holding every
    /// partition, and the two latency pollers.
    pub(super) async fn setup(
        args: &'a RunArgs,
        id: &'a str,
        dir: &'a Path,
        sample_every: u64,
    ) -> anyhow::Result<Run<'a>> {
        let names = Names::new(id, None);
        let dbs = isolate(args, &names).await?;
        let group = names.group("ingest");
        let setup = ingest_setup(args, &names, &dbs, group.clone(), true);
        say("starting sluice-ingest");
        let mut ingest = setup.spawn(&dir.join("ingest.log"), &[])?;
        let partitions = 3 * args.partitions as usize;
        ingest
            .wait_assigned(partitions, Duration::from_secs(120))
            .await?;
        let watermarks = Watermarks::new(&args.stack.brokers, &names.topics, args.partitions)?;

        let tracker = Tracker::default();
        let stop_pollers = Arc::new(AtomicBool::new(false));
        let hurry_pollers = Arc::new(AtomicBool::new(false));
        tokio::spawn(latency::poll_postgres(
            tracker.clone(),
            dbs.pg.clone(),
            group.clone(),
            names.topic_map(),
            PG_POLL,
            Arc::clone(&stop_pollers),
        ));
        if args.ch_poll_ms > 0 {
            tokio::spawn(latency::poll_clickhouse(
                tracker.clone(),
                dbs.ch.clone(),
                Duration::from_millis(args.ch_poll_ms),
                Arc::clone(&stop_pollers),
                Arc::clone(&hurry_pollers),
            ));
        }
        Ok(Run {
            args,
            id,
            dir,
            sample_every,
            names,
            dbs,
            group,
            ingest: Some(ingest),
            watermarks,
            tracker,
            stop_pollers,
            hurry_pollers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_run_and_phase() {
        let n = Names::new("20260101000000", None);
        assert_eq!(n.topics[0], "load-20260101000000-rank-events");
        assert_eq!(n.database, "load_20260101000000");
        let b = Names::new("20260101000000", Some("base"));
        assert_eq!(b.topics[2], "load-20260101000000-base-click-events");
        assert_eq!(b.group("r0"), "load-20260101000000-base-r0");
        assert_eq!(b.database, "load_20260101000000_base");
    }
}
