//! The drain baselines of `sluice-load run --baselines` (before the main run) and `--baselines-only`
//! (alone): a pre-filled backlog on topics of their own, drained by R0 (a bare rdkafka reader,
//! `sluice-load drain`), R1 (ingest without sinks) and R2 (ingest with both sinks into fresh
//! databases, then the totals check) — all three, or those `--baseline` names — each timed with the
//! CPU per event of every process involved and the consumer's peak resident memory.

use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::args::{BaselineRun, RunArgs};
use super::rates::{reach_time, ChangePoints, Watermarks};
use super::setup::{clean_up, ingest_setup, isolate, Names};
use super::watch::MachineBusy;
use super::{per_kind, say};
use crate::kit::ingest::{IngestProcess, IngestSetup};
use crate::kit::kafka as kafka_util;
use crate::kit::Databases;
use crate::load::accounting::{self, PerKind};
use crate::load::drain::DrainResult;
use crate::load::generators::{GenPlan, Generators};
use crate::load::latency::Tracker;
use crate::load::procstat::{self, Target};
use crate::load::report::{Baseline, Baselines};

/// Longest wait for one baseline to finish its backlog.
const BASELINE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The backlog the baselines drain, and what they need to drain it.
struct Bench<'a> {
    args: &'a RunArgs,
    dir: &'a Path,
    names: Names,
    dbs: Databases,
    stack: &'a procstat::StackPids,
    events: u64,
}

fn cpu_of(t: Option<Target>) -> f64 {
    t.and_then(procstat::cpu_seconds).unwrap_or(0.0)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Ends a baseline's ingest after its timing window: its peak resident memory (MiB, read before it
/// exits), then SIGTERM and its exit status.
async fn stop_ingest(ingest: IngestProcess) -> anyhow::Result<(Option<f64>, ExitStatus)> {
    let peak = procstat::status_kb(ingest.pid, "VmHWM").map(mib);
    let status =
        tokio::task::spawn_blocking(move || ingest.terminate(Duration::from_secs(60))).await??;
    Ok((peak, status))
}

/// The selected baselines on a fresh backlog of `args.prefill_count()` events.
pub(super) async fn baselines(
    args: &RunArgs,
    id: &str,
    dir: &Path,
    stack: &procstat::StackPids,
) -> anyhow::Result<Baselines> {
    let names = Names::new(id, Some("base"));
    let dbs = isolate(args, &names).await?;
    let bench = Bench {
        args,
        dir,
        names,
        dbs,
        stack,
        events: args.prefill_count(),
    };
    let (published, prefill_seconds) = bench.prefill().await?;
    let budget = bench.max_buffered_bytes();
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    let mut r2_totals = None;
    for which in args.baseline_runs() {
        let (run, exit) = match which {
            BaselineRun::R0 => (bench.r0().await?, None),
            BaselineRun::R1 => {
                let (run, exit) = bench.r1().await?;
                (run, Some(exit))
            }
            BaselineRun::R2 => {
                let (run, exit) = bench.r2().await?;
                let totals =
                    accounting::totals(published, &bench.dbs.pg, Some(&bench.dbs.ch)).await?;
                if !totals.ok {
                    problems.push("R2 baseline accounting mismatch".into());
                }
                r2_totals = Some(totals);
                (run, Some(exit))
            }
        };
        if let Some(status) = exit.filter(|s| !s.success()) {
            problems.push(format!(
                "{} baseline: ingest did not exit cleanly: {status}",
                run.name
            ));
        }
        say(format!("baselines: {} {:.0} events/s", run.name, run.rate));
        runs.push(run);
    }
    let rate = |name: &str| runs.iter().find(|r| r.name == name).map(|r| r.rate);
    let ratio = |name: &str| Some(rate(name)? / rate("R0")?.max(1e-6));
    let (r1_over_r0, r2_over_r0) = (ratio("R1"), ratio("R2"));
    let Bench { names, dbs, .. } = bench;
    let (topics, database) = (names.topics.to_vec(), names.database.clone());
    if problems.is_empty() && !args.keep {
        clean_up(args, &names, dbs, &mut problems).await;
    } else {
        say(format!(
            "kept the baseline topics {}-* and databases {database} for inspection",
            names.run_id
        ));
    }
    Ok(Baselines {
        prefill_events: bench.events,
        prefill_seconds,
        topics,
        database,
        ingest_max_buffered_bytes: budget,
        runs,
        r1_over_r0,
        r2_over_r0,
        r2_totals,
        problems,
    })
}

impl Bench<'_> {
    fn per_event(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / self.events as f64
    }

    fn kafka(&self) -> Option<Target> {
        self.stack.kafka.map(Target::Process)
    }

    /// Produces the backlog as fast as the generators can; returns what was published per kind and
    /// how long it took.
    async fn prefill(&self) -> anyhow::Result<(PerKind, f64)> {
        let (args, events) = (self.args, self.events);
        say(format!("baselines: pre-filling {events} events"));
        let plan = GenPlan {
            label: "prefill".into(),
            brokers: args.stack.brokers.clone(),
            topics: self.names.topics.clone(),
            run_id: self.names.run_id.clone(),
            generators: args.generators,
            rate: 0.0,
            duration_s: None,
            count: Some(events),
            sample_every: 0,
            start_at_ms: None,
            shape: args.shape.clone(),
            producer: args.producer.clone(),
        };
        let started = Instant::now();
        let mut generators = Generators::spawn(&plan, &Tracker::default(), self.dir)?;
        generators.wait_ready(Duration::from_secs(30)).await?;
        let summaries = generators.finish(BASELINE_TIMEOUT).await?;
        let seconds = started.elapsed().as_secs_f64();
        let delivered: u64 = summaries.iter().map(|(s, _)| s.delivered).sum();
        let failed: u64 = summaries.iter().map(|(s, _)| s.failed).sum();
        if delivered != events || failed > 0 {
            bail!("pre-fill delivered {delivered} of {events} events ({failed} failed)");
        }
        say(format!(
            "baselines: pre-filled in {seconds:.1} s; letting the broker settle"
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok((per_kind(&summaries), seconds))
    }

    /// Ingest's effective `max_buffered_bytes` (`sluice-ingest config --format json` with the same
    /// environment as the baselines' ingest); `None`, with a warning, if it cannot be read.
    fn max_buffered_bytes(&self) -> Option<u64> {
        let setup = ingest_setup(
            self.args,
            &self.names,
            &self.dbs,
            self.names.group("config"),
            true,
        );
        let read = || -> anyhow::Result<u64> {
            let text = setup.run(&["config", "--format", "json"], &[])?;
            let config: serde_json::Value =
                serde_json::from_str(&text).context("sluice-ingest config is not JSON")?;
            config["max_buffered_bytes"]
                .as_u64()
                .context("sluice-ingest config has no max_buffered_bytes")
        };
        read()
            .map_err(|e| {
                say(format!(
                    "warning: cannot read ingest's max_buffered_bytes: {e:#}"
                ))
            })
            .ok()
    }

    /// R0: a bare read, in a process of its own, timed from its first record to its last.
    async fn r0(&self) -> anyhow::Result<Baseline> {
        say("baselines: R0 — bare rdkafka drain");
        let (args, dir, events) = (self.args, self.dir, self.events);
        let exe = std::env::current_exe().context("cannot find the sluice-load executable")?;
        let kafka_before = cpu_of(self.kafka());
        let busy = MachineBusy::start();
        let output = tokio::process::Command::new(&exe)
            .arg("drain")
            .arg(format!("--brokers={}", args.stack.brokers))
            .arg(format!("--topics={}", self.names.topics.join(",")))
            .arg(format!("--expect={events}"))
            .arg(format!("--group={}", self.names.group("r0")))
            .arg(format!("--timeout-s={}", BASELINE_TIMEOUT.as_secs()))
            .stderr(std::fs::File::create(dir.join("drain-r0.log"))?)
            .output()
            .await
            .context("running the R0 drain")?;
        let kafka = cpu_of(self.kafka()) - kafka_before;
        let busy = busy.cores();
        if !output.status.success() {
            bail!(
                "R0 drain failed ({}); see {}",
                output.status,
                dir.join("drain-r0.log").display()
            );
        }
        let r0: DrainResult = serde_json::from_slice(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .as_bytes(),
        )
        .context("reading the R0 result")?;
        Ok(Baseline {
            name: "R0".into(),
            what: "rdkafka BaseConsumer, read only".into(),
            events: r0.records,
            seconds: r0.seconds,
            rate: r0.records as f64 / r0.seconds.max(1e-6),
            startup_seconds: None,
            rate_from_start: None,
            consumer_cpu_us_per_event: self.per_event(r0.cpu_s),
            postgres_cpu_us_per_event: None,
            clickhouse_cpu_us_per_event: None,
            kafka_cpu_us_per_event: self.per_event(kafka),
            machine_busy_cores: busy,
            total_cpu_us_per_event: self.per_event(r0.cpu_s),
            consumer_peak_rss_mib: Some(mib(r0.vm_hwm_kb)),
            note: String::new(),
        })
    }

    /// Spawns a baseline's ingest (log `log` in the run directory) and waits until it holds every
    /// partition of the three topics; returns it with when it was spawned and when it was assigned.
    async fn start_ingest(
        &self,
        setup: &IngestSetup,
        log: &str,
    ) -> anyhow::Result<(IngestProcess, Instant, Instant)> {
        let spawned = Instant::now();
        let mut ingest = setup.spawn(&self.dir.join(log), &[])?;
        let assigned = ingest
            .wait_assigned(3 * self.args.partitions as usize, Duration::from_secs(120))
            .await?;
        Ok((ingest, spawned, assigned))
    }

    /// R1: ingest without sinks, timed from partition assignment to the last record read.
    async fn r1(&self) -> anyhow::Result<(Baseline, ExitStatus)> {
        say("baselines: R1 — sluice-ingest with SLUICE_SINKS_ENABLED=false");
        let events = self.events;
        let setup = ingest_setup(
            self.args,
            &self.names,
            &self.dbs,
            self.names.group("r1"),
            false,
        );
        let (mut ingest, spawned, t0) = self.start_ingest(&setup, "ingest-r1.log").await?;
        let ingest_target = Target::Process(ingest.pid);
        let (ingest_before, kafka_before) = (cpu_of(Some(ingest_target)), cpu_of(self.kafka()));
        let busy = MachineBusy::start();
        let stop = Arc::new(AtomicBool::new(false));
        let counter = ChangePoints::spawn(
            ingest.metrics_addr.clone(),
            t0,
            Duration::from_millis(25),
            Arc::clone(&stop),
        );
        let deadline = Instant::now() + BASELINE_TIMEOUT;
        while counter.latest() < events as f64 {
            ingest.check_alive()?;
            if Instant::now() > deadline {
                bail!("R1 did not read the backlog within {BASELINE_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let (ingest_cpu, kafka) = (
            cpu_of(Some(ingest_target)) - ingest_before,
            cpu_of(self.kafka()) - kafka_before,
        );
        let busy = busy.cores();
        stop.store(true, Ordering::Relaxed);
        let seconds = reach_time(&counter.points(), events as f64).unwrap_or(0.0);
        let startup = t0.duration_since(spawned).as_secs_f64();
        let (peak, status) = stop_ingest(ingest).await?;
        let run = Baseline {
            name: "R1".into(),
            what: "sluice-ingest, sinks disabled".into(),
            events,
            seconds,
            rate: events as f64 / seconds.max(1e-6),
            startup_seconds: Some(startup),
            rate_from_start: Some(events as f64 / (startup + seconds).max(1e-6)),
            consumer_cpu_us_per_event: self.per_event(ingest_cpu),
            postgres_cpu_us_per_event: None,
            clickhouse_cpu_us_per_event: None,
            kafka_cpu_us_per_event: self.per_event(kafka),
            machine_busy_cores: busy,
            total_cpu_us_per_event: self.per_event(ingest_cpu),
            consumer_peak_rss_mib: peak,
            note: format!(
                "timed from partition assignment to the last record read (ingest publishes its counter once a second: \
                 the end is interpolated within the last second); no dedup window (it lives with the sinks); ingest {status}"
            ),
        };
        Ok((run, status))
    }

    /// R2: ingest with both sinks into the fresh databases, timed from partition assignment (and from
    /// process start) until every stored offset reached its high watermark.
    async fn r2(&self) -> anyhow::Result<(Baseline, ExitStatus)> {
        say("baselines: R2 — sluice-ingest with PostgreSQL and ClickHouse");
        let (args, events) = (self.args, self.events);
        let setup = ingest_setup(args, &self.names, &self.dbs, self.names.group("r2"), true);
        let watermarks = Watermarks::new(&args.stack.brokers, &self.names.topics, args.partitions)?;
        let high = watermarks.high().await?;
        let (mut ingest, spawned, t0) = self.start_ingest(&setup, "ingest-r2.log").await?;
        let targets = [
            Some(Target::Process(ingest.pid)),
            self.stack.postgres.map(Target::Family),
            self.stack.clickhouse.map(Target::Process),
            self.kafka(),
        ];
        let busy = MachineBusy::start();
        let before = targets.map(cpu_of);
        let deadline = Instant::now() + BASELINE_TIMEOUT;
        loop {
            ingest.check_alive()?;
            let stored = kafka_util::stored_offsets(&self.dbs.pg, &setup.group).await?;
            if kafka_util::lag(&high, &stored) == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("R2 did not store the backlog within {BASELINE_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = t0.elapsed().as_secs_f64();
        let busy = busy.cores();
        let after = targets.map(cpu_of);
        let startup = t0.duration_since(spawned).as_secs_f64();
        let (peak, status) = stop_ingest(ingest).await?;
        let d: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let run = Baseline {
            name: "R2".into(),
            what: "sluice-ingest, PostgreSQL + ClickHouse".into(),
            events,
            seconds,
            rate: events as f64 / seconds.max(1e-6),
            startup_seconds: Some(startup),
            rate_from_start: Some(events as f64 / (startup + seconds).max(1e-6)),
            consumer_cpu_us_per_event: self.per_event(d[0]),
            postgres_cpu_us_per_event: Some(self.per_event(d[1])),
            clickhouse_cpu_us_per_event: Some(self.per_event(d[2])),
            kafka_cpu_us_per_event: self.per_event(d[3]),
            machine_busy_cores: busy,
            total_cpu_us_per_event: self.per_event(d[0] + d[1] + d[2]),
            consumer_peak_rss_mib: peak,
            note: format!(
                "timed from partition assignment (from start: from spawning ingest, {startup:.2} s earlier) until every \
                 stored offset reached its high watermark (durable; polled every 100 ms); ingest {status}"
            ),
        };
        Ok((run, status))
    }
}
