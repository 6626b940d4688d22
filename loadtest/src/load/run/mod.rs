//! `sluice-load run`: one whole load run on the local stack, start to report.
//!
//! 1. **Isolation**: the run gets its own topics (`load-<id>-rank-events`, …, `--partitions` each), its
//!    own PostgreSQL and ClickHouse databases (`load_<id>`) and consumer groups, so it neither sees nor
//!    disturbs anything else on the stack; they are dropped at the end of a passing run.
//! 2. **Baselines** (`--baselines`): other topics are pre-filled with `rate × prefill` events (or
//!    `--prefill-events`) and drained three times — R0 a bare rdkafka reader, R1 ingest without sinks,
//!    R2 ingest with both sinks (each a fresh group; R2 fresh databases) — timing each and its CPU per
//!    event. `--baselines-only` stops there, with a report of its own ([`DrainReport`]); `--baseline`
//!    picks some of the three.
//! 3. **The run**: `target/release/sluice-ingest` starts as a child on the run's topics and databases;
//!    once it holds every partition, `--generators` processes (`sluice-load generate --share k/N`)
//!    produce `rate` events/s together for `duration` s. Every second a progress line (target vs
//!    produced rate, ingest rate from its `/metrics`, lag = high watermarks − stored offsets) is
//!    printed and kept; two pollers time sampled events until they are queryable
//!    ([`latency`](super::latency)). Then the backlog drains (bounded), ingest gets SIGTERM, and the
//!    accounting check runs ([`accounting`](super::accounting)).
//! 4. **Report**: `results/<timestamp>/report.{md,json}` and `rates.png`, plus the logs.
//!
//! # Layout
//! One `Run` goes through its phases, a module each: `setup` (names, databases, topics, ingest,
//! pollers), `produce` (generators and the progress line, then the drain of the backlog),
//! `finish` (stop, accounting, the report's figures). Around them: `args` (the command line),
//! `baselines` (R0/R1/R2), `rates` (watermarks and counter rates), `watch` (CPU and memory).

mod args;
mod baselines;
mod finish;
mod produce;
mod rates;
mod setup;
mod watch;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;

pub use args::{BaselineRun, RunArgs, Verify};

use super::accounting::PerKind;
use super::chart;
use super::generate::GenSummary;
use super::latency::Tracker;
use super::procstat;
use super::report::{DrainReport, Report};
use crate::kit::kafka::Offsets;
use crate::kit::{Databases, IngestProcess};
use rates::Watermarks;
use setup::Names;

const PG_POLL: Duration = Duration::from_millis(100);
/// Latency samples per second the run aims for when `--sample-every` is 0 (auto).
const SAMPLES_PER_SECOND: f64 = 50.0;

/// The main run of `sluice-load run`, between its phases: what [`Run::setup`] made on the stack and
/// started, which [`Run::produce`], [`Run::drain`] and [`Run::finish`] then use.
struct Run<'a> {
    args: &'a RunArgs,
    id: &'a str,
    /// Where the logs and the report go.
    dir: &'a Path,
    /// Each generator samples every this-many-th of its events for latency.
    sample_every: u64,
    names: Names,
    dbs: Databases,
    /// Ingest's consumer group.
    group: String,
    /// `None` once [`Run::finish`] stopped it.
    ingest: Option<IngestProcess>,
    watermarks: Watermarks,
    tracker: Tracker,
    /// Stops the latency pollers and the consumed-counter sampler.
    stop_pollers: Arc<AtomicBool>,
    /// Set once everything is durable: the ClickHouse poller stops spacing its polls out.
    hurry_pollers: Arc<AtomicBool>,
}

/// The main run: setup, produce, drain, finish.
async fn main_run(
    args: &RunArgs,
    id: &str,
    dir: &Path,
    stack: &procstat::StackPids,
    sample_every: u64,
) -> anyhow::Result<Report> {
    let mut run = Run::setup(args, id, dir, sample_every).await?;
    let mut window = run.produce(stack).await?;
    run.drain(&mut window).await?;
    run.finish(window).await
}

fn sum_offsets(o: &Offsets) -> i64 {
    o.values().sum()
}

fn per_kind(summaries: &[(GenSummary, Vec<(u64, i64)>)]) -> PerKind {
    let mut out = [0u64; 3];
    for (s, _) in summaries {
        for (o, v) in out.iter_mut().zip(s.per_kind) {
            *o += v;
        }
    }
    out
}

fn say(line: impl AsRef<str>) {
    println!("[load] {}", line.as_ref());
}

/// Runs everything; returns whether the run passed (drained, exact accounting, clean exit).
pub async fn run(args: RunArgs, command: String) -> anyhow::Result<bool> {
    args.validate()?;
    if !args.ingest_bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release --bins`)",
            args.ingest_bin.display()
        );
    }
    args.shape.synth_config(1)?;
    let started = Utc::now();
    let id = started.format("%Y%m%d%H%M%S").to_string();
    let dir = args
        .results_dir
        .join(started.format("%Y%m%d-%H%M%S").to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stack = procstat::find_stack(&args.state_dir);
    say(format!(
        "run {id}: results in {}; stack pids: kafka {:?}, postgres {:?}, clickhouse {:?}",
        dir.display(),
        stack.kafka,
        stack.postgres,
        stack.clickhouse
    ));
    let mut machine = watch::machine();
    let sample_every = if args.sample_every > 0 {
        args.sample_every
    } else {
        // Each generator samples every K-th of its own events: rate/K samples per second overall.
        ((args.rate / SAMPLES_PER_SECOND).round() as u64).max(1)
    };

    if args.baselines_only {
        let baselines = baselines::baselines(&args, &id, &dir, &stack).await?;
        machine.loadavg_after = procstat::loadavg();
        let report = DrainReport {
            id,
            started_at: started.to_rfc3339(),
            command,
            machine,
            generators: args.generators,
            partitions: args.partitions,
            shape: args.shape.clone(),
            producer: args.producer.clone(),
            ingest_env: args.ingest_env.clone(),
            ok: baselines.problems.is_empty(),
            problems: baselines.problems.clone(),
            baselines,
        };
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        let markdown = report.markdown();
        std::fs::write(dir.join("report.md"), &markdown)?;
        println!("{markdown}");
        return Ok(conclude(&dir, report.ok, &report.problems));
    }

    let baselines = if args.baselines {
        Some(baselines::baselines(&args, &id, &dir, &stack).await?)
    } else {
        None
    };

    let mut report = main_run(&args, &id, &dir, &stack, sample_every).await?;
    machine.loadavg_after = procstat::loadavg();
    report.machine = machine;
    report.baselines = baselines;
    report.started_at = started.to_rfc3339();
    report.command = command;
    if let Some(b) = &report.baselines {
        if !b.problems.is_empty() {
            report.ok = false;
            report.problems.extend(b.problems.iter().cloned());
        }
    }

    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    match chart::draw(
        &dir.join("rates.png"),
        &report.timeline,
        report.settings.rate,
    ) {
        Ok(true) => {}
        Ok(false) => report
            .problems
            .push("no TrueType font found: rates.png has no text".into()),
        Err(e) => report.problems.push(format!("chart: {e:#}")),
    }
    std::fs::write(dir.join("report.md"), report.markdown())?;
    Ok(conclude(&dir, report.ok, &report.problems))
}

/// The last lines of a run: the verdict, where the report is, the problems; returns `ok`.
fn conclude(dir: &Path, ok: bool, problems: &[String]) -> bool {
    say(format!(
        "{}: report in {}/report.md",
        if ok { "PASS" } else { "FAIL" },
        dir.display()
    ));
    for p in problems {
        say(format!("problem: {p}"));
    }
    ok
}
