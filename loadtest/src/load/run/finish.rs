//! The finish of a run: the window closes, the pollers get a last chance to see their samples, the
//! generators report, ingest gets SIGTERM; then the accounting check (totals per table, the full
//! verifier on regenerated events) and the [`Report`] with every figure of the run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::args::Verify;
use super::produce::Window;
use super::rates::peak_rate;
use super::setup::clean_up;
use super::{per_kind, say, Run, PG_POLL};
use crate::load::accounting;
use crate::load::latency;
use crate::load::procstat;
use crate::load::report::{
    Accounting, IngestFigures, Latency, Machine, ProcessFigure, Produce, Report, Settings,
};

impl Run<'_> {
    /// Stops everything, checks the accounting and assembles the report; cleans up after a passing
    /// run (unless `--keep`).
    pub(super) async fn finish(mut self, window: Window) -> anyhow::Result<Report> {
        let (args, id, dir) = (self.args, self.id, self.dir);
        let ingest = self.ingest.take().expect("ingest runs until finish");
        let Window {
            t0,
            generators,
            consumed,
            mut watched,
            machine_start,
            timeline,
            last_point,
            production_done,
            drained_at,
            max_lag,
            ..
        } = window;
        let window_end = Instant::now();
        let window_s = window_end.duration_since(t0).as_secs_f64();
        for w in &mut watched {
            w.sample();
        }
        let machine_busy = match (machine_start, procstat::machine_cpu()) {
            (Some(a), Some(b)) => (b.0 - a.0) / window_s,
            _ => 0.0,
        };
        let ingest_hwm = procstat::status_kb(ingest.pid, "VmHWM");
        // Ingest's own view (flush durations, pauses, rejections), for whoever reads the report.
        if let Ok(text) = ingest.metrics().await {
            if let Err(e) = std::fs::write(dir.join("ingest-metrics.txt"), text) {
                say(format!("warning: cannot save ingest metrics: {e}"));
            }
        }
        // Let the pollers see the last samples (everything is durable now, so they are visible): the
        // ClickHouse poller polls every `--ch-poll-ms` again, however slow its polls were under load.
        self.hurry_pollers.store(true, Ordering::Relaxed);
        let grace = Instant::now() + Duration::from_secs(30);
        loop {
            let (n, pg, ch) = self.tracker.counts();
            if (pg == n && (ch == n || args.ch_poll_ms == 0)) || Instant::now() > grace {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop_pollers.store(true, Ordering::Relaxed);
        let summaries = generators.finish(Duration::from_secs(30)).await?;

        say("stopping sluice-ingest (SIGTERM)");
        let exit = tokio::task::spawn_blocking(move || ingest.terminate(Duration::from_secs(60)))
            .await
            .context("terminate task")?;
        let exit_status = match &exit {
            Ok(status) => status.to_string(),
            Err(e) => format!("{e:#}"),
        };
        let clean_exit = exit.as_ref().is_ok_and(|s| s.success());

        // Figures.
        let delivered: u64 = summaries.iter().map(|(s, _)| s.delivered).sum();
        let failed: u64 = summaries.iter().map(|(s, _)| s.failed).sum();
        let sent: u64 = summaries.iter().map(|(s, _)| s.sent).sum();
        let first_start = summaries
            .iter()
            .map(|(s, _)| s.started_us)
            .min()
            .unwrap_or(0);
        let last_sent = summaries
            .iter()
            .map(|(s, _)| s.last_sent_us)
            .max()
            .unwrap_or(0);
        let produce_s = ((last_sent - first_start) as f64 / 1e6).max(1e-3);
        let production_t = production_done.map_or(window_s, |d| d.duration_since(t0).as_secs_f64());
        let points = consumed.points();
        let consumed_during = points
            .iter()
            .take_while(|p| p.0 <= produce_s)
            .last()
            .map_or(0.0, |p| p.1 / p.0.max(1e-3));
        let peak = peak_rate(&points, 5);
        let drained = drained_at.is_some();
        let drained_t = drained_at.map_or(window_s, |d| d.duration_since(t0).as_secs_f64());
        let mut problems = Vec::new();
        if failed > 0 {
            problems.push(format!("{failed} deliveries failed"));
        }
        if let Some(e) = summaries.iter().find_map(|(s, _)| s.error.clone()) {
            problems.push(format!("generator error: {e}"));
        }
        if !drained {
            problems.push("backlog did not drain in time".into());
        }
        if !clean_exit {
            problems.push(format!("ingest did not exit cleanly: {exit_status}"));
        }

        // Accounting.
        say("accounting: totals per table");
        let published = per_kind(&summaries);
        let totals = accounting::totals(published, &self.dbs.pg, Some(&self.dbs.ch)).await?;
        if !totals.ok {
            problems.push("totals differ from the published events".into());
        }
        let full = if args.verify == Verify::Full && !drained {
            say("accounting: full verifier skipped (the backlog did not drain; the totals show what is missing)");
            None
        } else if args.verify == Verify::Full {
            say(format!(
                "accounting: full verifier over {sent} regenerated events (this takes a while)"
            ));
            let full = accounting::full(
                &args.shape,
                &self.names.run_id,
                &summaries,
                self.sample_every,
                &self.dbs.pg,
                &self.dbs.ch,
            )
            .await?;
            if !full.ok {
                problems.push("the verifier found differences".into());
            }
            Some(full)
        } else {
            None
        };

        let (pg_latency, ch_latency) = latency::summarize(&self.tracker.snapshot());
        let mut processes: Vec<ProcessFigure> = summaries
            .iter()
            .map(|(s, _)| ProcessFigure {
                name: format!("generator {}", s.generator),
                pids: "-".into(),
                cpu_s: s.cpu_s,
                cores: s.cpu_s / produce_s,
                peak_rss_mib: s.vm_hwm_kb as f64 / 1024.0,
                vm_hwm_mib: Some(s.vm_hwm_kb as f64 / 1024.0),
                note: "whole process life (self-reported); cores over the production time".into(),
            })
            .collect();
        for w in &watched {
            let hwm = (w.name == "sluice-ingest").then_some(ingest_hwm).flatten();
            processes.push(w.figure(window_s, hwm));
        }
        let ok = problems.is_empty();
        let report = Report {
            id: id.to_owned(),
            started_at: String::new(),
            command: String::new(),
            machine: Machine::default(),
            settings: Settings {
                rate: args.rate,
                duration_s: args.duration,
                generators: args.generators,
                partitions: args.partitions,
                sample_every: self.sample_every,
                shape: args.shape.clone(),
                producer: args.producer.clone(),
                ingest_env: args.ingest_env.clone(),
                topics: self.names.topics.to_vec(),
                postgres_database: self.dbs.name.clone(),
                clickhouse_database: self.dbs.name.clone(),
            },
            baselines: None,
            produce: Produce {
                target_rate: args.rate,
                sent,
                delivered,
                failed,
                per_kind: published,
                seconds: produce_s,
                achieved_rate: delivered as f64 / produce_s,
            },
            ingest: IngestFigures {
                consumed: consumed.latest(),
                rate_while_producing: consumed_during,
                peak_rate: peak,
                end_to_end_rate: delivered as f64 / drained_t.max(1e-3),
                drained,
                drain_s: (drained_t - production_t).max(0.0),
                max_lag,
                final_lag: last_point.lag,
                exit_status,
            },
            latency: Latency {
                samples: self.tracker.counts().0,
                postgres: pg_latency,
                clickhouse: ch_latency,
                pg_poll_ms: PG_POLL.as_millis() as u64,
                ch_poll_ms: args.ch_poll_ms,
                poll_cost: self.tracker.cost(),
            },
            window_s,
            machine_busy_cores: machine_busy,
            processes,
            accounting: Accounting {
                totals: Some(totals),
                full,
            },
            ok,
            problems,
            timeline,
        };
        let mut report = report;
        if ok && !args.keep {
            clean_up(args, &self.names, self.dbs, &mut report.problems).await;
        } else {
            say(format!(
                "kept topics load-{id}-* and databases {} for inspection",
                self.names.database
            ));
        }
        Ok(report)
    }
}
