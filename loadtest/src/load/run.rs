//! `sluice-load run`: one whole load run on the local stack, start to report.
//!
//! 1. **Isolation**: the run gets its own topics (`load-<id>-rank-events`, …, `--partitions` each), its
//!    own PostgreSQL and ClickHouse databases (`load_<id>`) and consumer groups, so it neither sees nor
//!    disturbs anything else on the stack; they are dropped at the end of a passing run.
//! 2. **Baselines** (`--baselines`): other topics are pre-filled with `rate × prefill` events and
//!    drained three times — R0 a bare rdkafka reader, R1 ingest without sinks, R2 ingest with both
//!    sinks (each a fresh group; R2 fresh databases) — timing each and its CPU per event.
//! 3. **The run**: `target/release/sluice-ingest` starts as a child on the run's topics and databases;
//!    once it holds every partition, `--generators` processes (`sluice-load generate --share k/N`)
//!    produce `rate` events/s together for `duration` s. Every second a progress line (target vs
//!    produced rate, ingest rate from its `/metrics`, lag = high watermarks − stored offsets) is
//!    printed and kept; two pollers time sampled events until they are queryable
//!    ([`latency`](super::latency)). Then the backlog drains (bounded), ingest gets SIGTERM, and the
//!    accounting check runs ([`accounting`](super::accounting)).
//! 4. **Report**: `results/<timestamp>/report.{md,json}` and `rates.png`, plus the logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_schemas::EventKind;

use super::accounting::{self, PerKind};
use super::generate::{GenSummary, ProducerSettings, Shape};
use super::generators::{GenPlan, Generators};
use super::latency::{self, Tracker};
use super::procstat::{self, Target};
use super::report::{
    Accounting, Baseline, Baselines, IngestFigures, Latency, Machine, Point, ProcessFigure,
    Produce, Report, Settings,
};
use super::{chart, drain::DrainResult};
use crate::kit::kafka::{self as kafka_util, Offsets};
use crate::kit::metrics::{metric_sum, scrape};
use crate::kit::{Databases, IngestSetup};

const CONSUMED: &str = "sluice_ingest_records_consumed_total";
const PG_POLL: Duration = Duration::from_millis(100);
/// Latency samples per second the run aims for when `--sample-every` is 0 (auto).
const SAMPLES_PER_SECOND: f64 = 50.0;

/// How much of the accounting check to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verify {
    /// Totals per table, then the full verifier on regenerated events.
    Full,
    /// Totals per table only.
    Totals,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Target events/s over all generators.
    #[arg(long, default_value_t = 100_000.0)]
    pub rate: f64,
    /// Seconds of production (`60` or `60s`).
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub duration: f64,
    /// Generator processes, each producing rate/N.
    #[arg(long, default_value_t = 2)]
    pub generators: u32,
    /// Partitions of each run topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Measure the R0/R1/R2 drain baselines first.
    #[arg(long)]
    pub baselines: bool,
    /// Baseline backlog, in seconds of `rate` (ingest publishes its counters once a second, so R1 needs
    /// several seconds of reading to be timed well).
    #[arg(long, default_value_t = 20.0)]
    pub prefill_secs: f64,
    /// Latency sample: every this-many-th event of each generator (0: about 50 samples/s overall).
    #[arg(long, default_value_t = 0)]
    pub sample_every: u64,
    /// ClickHouse latency poll period in ms; 0 turns the ClickHouse latency measurement off (to
    /// measure ClickHouse's CPU without the poller's lookups).
    #[arg(long, default_value_t = 250)]
    pub ch_poll_ms: u64,
    /// Accounting check after the run.
    #[arg(long, value_enum, default_value_t = Verify::Full)]
    pub verify: Verify,
    /// Most seconds to wait for the backlog to drain after production (default: max(120, 2 × duration)).
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Extra ingest setting, repeatable (e.g. --ingest-env SLUICE_FLUSH_INTERVAL_MS=500).
    #[arg(long = "ingest-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub ingest_env: Vec<(String, String)>,
    /// Keep the run's topics and databases (a failing run always keeps them).
    #[arg(long)]
    pub keep: bool,
    /// Where reports go (a timestamped directory is created inside).
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// The stack's state directory (pid files).
    #[arg(long, env = "SLUICE_STATE_DIR", default_value = ".state")]
    pub state_dir: PathBuf,
    #[arg(long, default_value = "target/release/sluice-ingest")]
    pub ingest_bin: PathBuf,
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// An existing database the run's own databases are created from.
    #[arg(
        long,
        env = "SLUICE_POSTGRES_URL",
        default_value = "postgres://sluice:sluice@127.0.0.1:5432/sluice"
    )]
    pub postgres_url: String,
    #[arg(
        long,
        env = "SLUICE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    #[command(flatten)]
    pub shape: Shape,
    #[command(flatten)]
    pub producer: ProducerSettings,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: must be > 0"))
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The names one phase uses on the stack.
#[derive(Debug, Clone)]
struct Names {
    run_id: String,
    topics: [String; 3],
    dead_letters: String,
    database: String,
}

impl Names {
    fn new(id: &str, phase: Option<&str>) -> Names {
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

    fn all_topics(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        all.push(&self.dead_letters);
        all
    }

    fn topic_map(&self) -> BTreeMap<EventKind, String> {
        EventKind::ALL
            .iter()
            .zip(self.topics.iter())
            .map(|(k, t)| (*k, t.clone()))
            .collect()
    }

    fn group(&self, what: &str) -> String {
        format!("{}-{what}", self.run_id)
    }
}

/// Ingest on a phase's topics and databases, its sinks on or off.
fn ingest_setup(
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
        brokers: args.brokers.clone(),
        group,
        topics: names.topics.clone(),
        dead_letter_topic: names.dead_letters.clone(),
        postgres_url: dbs.pg_url.clone(),
        clickhouse_url: args.clickhouse_url.clone(),
        clickhouse_database: dbs.name.clone(),
        rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        env,
        own_process_group: false,
    }
}

/// A phase's own topics and databases: the databases, then the topics (`sluice-ingest provision`).
async fn isolate(args: &RunArgs, names: &Names) -> anyhow::Result<Databases> {
    let dbs = Databases::create(&args.postgres_url, &args.clickhouse_url, &names.database).await?;
    ingest_setup(args, names, &dbs, names.group("provision"), true)
        .provision(args.partitions)
        .context("creating the topics (is the stack up? `make up`)")?;
    Ok(dbs)
}

async fn drop_everything(args: &RunArgs, names: &Names, dbs: Databases) -> anyhow::Result<()> {
    kafka_util::delete_topics(&args.brokers, &names.all_topics()).await?;
    dbs.drop(&args.postgres_url).await
}

/// Cleanup never fails a run: a leftover is reported and can be dropped by hand.
async fn clean_up(args: &RunArgs, names: &Names, dbs: Databases, problems: &mut Vec<String>) {
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

/// High watermarks through one long-lived client (a new client per second would be a new connection).
#[derive(Clone)]
struct Watermarks {
    consumer: Arc<BaseConsumer>,
    partitions: Vec<(String, i32)>,
}

impl Watermarks {
    fn new(brokers: &str, topics: &[String], partitions: i32) -> anyhow::Result<Watermarks> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .context("cannot create a kafka client")?;
        Ok(Watermarks {
            consumer: Arc::new(consumer),
            partitions: topics
                .iter()
                .flat_map(|t| (0..partitions).map(move |p| (t.clone(), p)))
                .collect(),
        })
    }

    async fn high(&self) -> anyhow::Result<Offsets> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Offsets::new();
            for (topic, p) in &this.partitions {
                let (_, high) = this
                    .consumer
                    .fetch_watermarks(topic, *p, Duration::from_secs(5))
                    .with_context(|| format!("watermarks of {topic}/{p}"))?;
                out.insert((topic.clone(), *p), high);
            }
            Ok(out)
        })
        .await
        .context("watermark task")?
    }
}

/// Moments a counter on ingest's `/metrics` changed: `(seconds since t0, value)`. Ingest publishes
/// its counters once a second, so rates are taken between changes, never between fixed ticks.
#[derive(Clone, Default)]
struct ChangePoints(Arc<Mutex<Vec<(f64, f64)>>>);

impl ChangePoints {
    fn spawn(addr: String, t0: Instant, every: Duration, stop: Arc<AtomicBool>) -> ChangePoints {
        let points = ChangePoints::default();
        let out = points.clone();
        tokio::spawn(async move {
            let mut last = -1.0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = scrape(&addr).await {
                    let value = metric_sum(&text, CONSUMED);
                    if value != last {
                        last = value;
                        let t = t0.elapsed().as_secs_f64();
                        out.lock().push((t, value));
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        points
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(f64, f64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn points(&self) -> Vec<(f64, f64)> {
        self.lock().clone()
    }

    fn latest(&self) -> f64 {
        self.lock().last().map_or(0.0, |p| p.1)
    }

    /// The rate between the last two changes; 0 when the counter has not moved for `STALE_S` at
    /// `now_s` (fetching paused, or nothing to read).
    fn recent_rate(&self, now_s: f64) -> f64 {
        let p = self.lock();
        match p.len() {
            0 | 1 => 0.0,
            n if now_s - p[n - 1].0 > STALE_S => 0.0,
            n => rate(p[n - 2], p[n - 1]),
        }
    }
}

/// Ingest publishes its counters about once a second; no change for this long means no progress.
const STALE_S: f64 = 2.5;

/// The highest rate over `span` consecutive publications of a counter (about `span` seconds: a
/// single interval can be short or long by the publication jitter and would exaggerate).
fn peak_rate(points: &[(f64, f64)], span: usize) -> f64 {
    points
        .windows(span + 1)
        .map(|w| rate(w[0], w[span]))
        .fold(0.0, f64::max)
}

fn rate(a: (f64, f64), b: (f64, f64)) -> f64 {
    if b.0 > a.0 {
        (b.1 - a.1) / (b.0 - a.0)
    } else {
        0.0
    }
}

/// When a once-a-second counter reached `total`: within its last publication interval, by the rate of
/// the interval before (the counter only says "by this second"); the change time when it cannot tell.
fn reach_time(points: &[(f64, f64)], total: f64) -> Option<f64> {
    let n = points.iter().position(|p| p.1 >= total)?;
    let (tn, _) = points[n];
    if n >= 2 {
        let r = rate(points[n - 2], points[n - 1]);
        if r > 0.0 {
            return Some((points[n - 1].0 + (total - points[n - 1].1) / r).min(tn));
        }
    }
    Some(tn)
}

/// A process or family watched over a window.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    target: Target,
    note: String,
    start_cpu: Option<f64>,
    last_cpu: Option<f64>,
    peak_kb: u64,
    samples: u64,
}

/// A process family's memory (PostgreSQL: the sum of every backend's `Pss`) is read once per this many
/// samples. `smaps_rollup` walks each backend's page tables, shared buffers included: the kernel's
/// `smaps_account` was the top symbol of the load processes in a 100k run's profile, and the driver used
/// 117.6 CPU-s over a 10-minute run with `shared_buffers` = 1 GB — on the cores it measures.
const FAMILY_MEMORY_EVERY: u64 = 5;

impl Watched {
    fn new(name: &str, target: Target, note: &str) -> Watched {
        Watched {
            name: name.to_owned(),
            target,
            note: note.to_owned(),
            start_cpu: None,
            last_cpu: None,
            peak_kb: 0,
            samples: 0,
        }
    }

    fn start(&mut self) {
        self.start_cpu = procstat::cpu_seconds(self.target);
        self.last_cpu = self.start_cpu;
        self.sample();
    }

    fn sample(&mut self) {
        if let Some(cpu) = procstat::cpu_seconds(self.target) {
            self.last_cpu = Some(cpu);
        }
        let read_memory = match self.target {
            Target::Family(_) => self.samples % FAMILY_MEMORY_EVERY == 0,
            Target::Process(_) => true,
        };
        self.samples += 1;
        if !read_memory {
            return;
        }
        if let Some(kb) = procstat::memory_kb(self.target) {
            self.peak_kb = self.peak_kb.max(kb);
        }
    }

    fn cpu(&self) -> f64 {
        match (self.start_cpu, self.last_cpu) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    fn figure(&self, window_s: f64, vm_hwm_kb: Option<u64>) -> ProcessFigure {
        ProcessFigure {
            name: self.name.clone(),
            pids: match self.target {
                Target::Process(pid) => pid.to_string(),
                Target::Family(pid) => format!("{pid} + children"),
            },
            cpu_s: self.cpu(),
            cores: if window_s > 0.0 {
                self.cpu() / window_s
            } else {
                0.0
            },
            peak_rss_mib: self.peak_kb as f64 / 1024.0,
            vm_hwm_mib: vm_hwm_kb.map(|kb| kb as f64 / 1024.0),
            note: self.note.clone(),
        }
    }
}

fn stack_watch(stack: &procstat::StackPids) -> Vec<Watched> {
    let mut out = Vec::new();
    if let Some(pid) = stack.kafka {
        out.push(Watched::new(
            "kafka broker",
            Target::Process(pid),
            "JVM; peak = highest 1 Hz RSS sample",
        ));
    }
    if let Some(pid) = stack.postgres {
        out.push(Watched::new(
            "postgres",
            Target::Family(pid),
            "postmaster + all backends/workers (CPU incl. exited ones); peak = highest sum of PSS (every 5 s)",
        ));
    }
    if let Some(pid) = stack.clickhouse {
        out.push(Watched::new(
            "clickhouse-server",
            Target::Process(pid),
            "CPU includes the latency poller's lookups and background merges",
        ));
    }
    out
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |(_, v)| v.trim().to_owned()),
        mem_total_gib: mem_kb / 1024.0 / 1024.0,
        loadavg_before: procstat::loadavg(),
        loadavg_after: [0.0; 3],
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Whole-machine busy CPU from a starting point: other work on a shared machine shows up here.
struct MachineBusy {
    at: Instant,
    busy: Option<f64>,
}

impl MachineBusy {
    fn start() -> MachineBusy {
        MachineBusy {
            at: Instant::now(),
            busy: procstat::machine_cpu().map(|c| c.0),
        }
    }

    /// Average busy cores since `start`.
    fn cores(&self) -> f64 {
        match (self.busy, procstat::machine_cpu()) {
            (Some(a), Some((b, _))) => (b - a) / self.at.elapsed().as_secs_f64().max(1e-3),
            _ => 0.0,
        }
    }
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
    if args.generators == 0 || args.partitions <= 0 || args.rate <= 0.0 {
        bail!("--generators, --partitions and --rate must be positive");
    }
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
    let mut machine = machine();
    let sample_every = if args.sample_every > 0 {
        args.sample_every
    } else {
        // Each generator samples every K-th of its own events: rate/K samples per second overall.
        ((args.rate / SAMPLES_PER_SECOND).round() as u64).max(1)
    };

    let baselines = if args.baselines {
        Some(baselines(&args, &id, &dir, &stack).await?)
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
        if b.r2_totals.as_ref().is_some_and(|t| !t.ok) {
            report.ok = false;
            report
                .problems
                .push("R2 baseline accounting mismatch".into());
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
    say(format!(
        "{}: report in {}/report.md",
        if report.ok { "PASS" } else { "FAIL" },
        dir.display()
    ));
    for p in &report.problems {
        say(format!("problem: {p}"));
    }
    Ok(report.ok)
}

async fn main_run(
    args: &RunArgs,
    id: &str,
    dir: &Path,
    stack: &procstat::StackPids,
    sample_every: u64,
) -> anyhow::Result<Report> {
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
    let watermarks = Watermarks::new(&args.brokers, &names.topics, args.partitions)?;

    let tracker = Tracker::default();
    let stop_pollers = Arc::new(AtomicBool::new(false));
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
        ));
    }

    let start_at_ms = Utc::now().timestamp_millis() + 3000;
    let plan = GenPlan {
        label: "main".into(),
        brokers: args.brokers.clone(),
        topics: names.topics.clone(),
        run_id: names.run_id.clone(),
        generators: args.generators,
        rate: args.rate,
        duration_s: Some(args.duration),
        count: None,
        sample_every,
        start_at_ms: Some(start_at_ms),
        shape: args.shape.clone(),
        producer: args.producer.clone(),
    };
    let mut generators = Generators::spawn(&plan, &tracker, dir)?;
    generators.wait_ready(Duration::from_secs(30)).await?;
    let wait = start_at_ms - Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let t0 = Instant::now();
    let consumed = ChangePoints::spawn(
        ingest.metrics_addr.clone(),
        t0,
        Duration::from_millis(100),
        Arc::clone(&stop_pollers),
    );
    let mut watched = stack_watch(stack);
    watched.push(Watched::new(
        "sluice-ingest",
        Target::Process(ingest.pid),
        "the consumer: poll thread + flush runtime",
    ));
    watched.push(Watched::new(
        "sluice-load (driver)",
        Target::Process(std::process::id()),
        "progress sampling and latency pollers",
    ));
    for w in &mut watched {
        w.start();
    }
    let machine_start = procstat::machine_cpu();
    let mut machine_last = machine_start;

    say(format!(
        "producing {} events/s for {} s with {} generator(s), {} partitions per topic, one latency sample every {} events",
        args.rate, args.duration, args.generators, args.partitions, sample_every
    ));
    println!(
        "[load] {:>6} {:>9} {:>11} {:>10} {:>10} {:>11} {:>12} {:>14}",
        "t(s)", "target/s", "produced/s", "ingest/s", "durable/s", "lag", "sent", "samples pg/ch"
    );
    let drain_timeout = Duration::from_secs_f64(
        args.drain_timeout
            .unwrap_or((2.0 * args.duration).max(120.0)),
    );
    let mut timeline: Vec<Point> = Vec::new();
    let mut last_point = Point::default();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(t0 + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    let mut production_done: Option<Instant> = None;
    let mut drained_at: Option<Instant> = None;
    let mut max_lag = 0i64;
    loop {
        tick.tick().await;
        ingest.check_alive()?;
        let high = watermarks.high().await?;
        let stored = kafka_util::stored_offsets(&dbs.pg, &group).await?;
        let state = generators.state();
        let now = Instant::now();
        let t_s = now.duration_since(t0).as_secs_f64();
        for w in &mut watched {
            w.sample();
        }
        let machine_now = procstat::machine_cpu();
        let busy = match (machine_last, machine_now) {
            (Some(a), Some(b)) => (b.0 - a.0) / (t_s - last_point.t_s).max(1e-3),
            _ => 0.0,
        };
        machine_last = machine_now;
        let dt = (t_s - last_point.t_s).max(1e-3);
        let in_kafka = sum_offsets(&high);
        let durable = sum_offsets(&stored);
        let just_finished = production_done.is_none() && generators.all_exited();
        if just_finished {
            production_done = Some(now);
        }
        let point = Point {
            t_s,
            target_rate: if production_done.is_none() || just_finished {
                args.rate
            } else {
                0.0
            },
            sent: state.iter().map(|s| s.sent).sum(),
            in_kafka,
            consumed: consumed.latest(),
            durable,
            lag: kafka_util::lag(&high, &stored),
            produce_rate: (in_kafka - last_point.in_kafka) as f64 / dt,
            ingest_rate: consumed.recent_rate(t_s),
            durable_rate: (durable - last_point.durable) as f64 / dt,
            durable_rate_5s: match timeline.len() {
                n if n >= 5 => {
                    let old = &timeline[n - 5];
                    (durable - old.durable) as f64 / (t_s - old.t_s).max(1e-3)
                }
                _ => durable as f64 / t_s.max(1e-3),
            },
            machine_busy_cores: busy,
        };
        max_lag = max_lag.max(point.lag);
        let (samples, pg_seen, ch_seen) = tracker.counts();
        println!(
            "[load] {:>6.0} {:>9.0} {:>11.0} {:>10.0} {:>10.0} {:>11} {:>12} {:>14}",
            point.t_s,
            point.target_rate,
            point.produce_rate,
            point.ingest_rate,
            point.durable_rate,
            point.lag,
            point.sent,
            format!("{samples} {pg_seen}/{ch_seen}")
        );
        timeline.push(point.clone());
        last_point = point;
        if just_finished {
            say("production finished; waiting for ingest to drain the backlog");
        }
        if let Some(done) = production_done {
            let delivered: u64 = generators.state().iter().map(|s| s.delivered).sum();
            if last_point.lag == 0 && in_kafka >= delivered as i64 {
                drained_at = Some(now);
                break;
            }
            if now.duration_since(done) > drain_timeout {
                say(format!(
                    "backlog not drained within {drain_timeout:?}: {} records behind",
                    last_point.lag
                ));
                break;
            }
        }
    }
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
    // Let the pollers see the last samples (everything is durable now, so they are visible).
    let grace = Instant::now() + Duration::from_secs(10);
    loop {
        let (n, pg, ch) = tracker.counts();
        if (pg == n && (ch == n || args.ch_poll_ms == 0)) || Instant::now() > grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_pollers.store(true, Ordering::Relaxed);
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
    let totals = accounting::totals(published, &dbs.pg, Some(&dbs.ch)).await?;
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
        let full =
            accounting::full(&args.shape, &names.run_id, &summaries, &dbs.pg, &dbs.ch).await?;
        if !full.ok {
            problems.push("the verifier found differences".into());
        }
        Some(full)
    } else {
        None
    };

    let (pg_latency, ch_latency) = latency::summarize(&tracker.snapshot());
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
            sample_every,
            shape: args.shape.clone(),
            producer: args.producer.clone(),
            ingest_env: args.ingest_env.clone(),
            topics: names.topics.to_vec(),
            postgres_database: dbs.name.clone(),
            clickhouse_database: dbs.name.clone(),
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
            samples: tracker.counts().0,
            postgres: pg_latency,
            clickhouse: ch_latency,
            pg_poll_ms: PG_POLL.as_millis() as u64,
            ch_poll_ms: args.ch_poll_ms,
            poll_cost: tracker.cost(),
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
        clean_up(args, &names, dbs, &mut report.problems).await;
    } else {
        say(format!(
            "kept topics load-{id}-* and databases {} for inspection",
            names.database
        ));
    }
    Ok(report)
}

/// R0, R1, R2 on a pre-filled backlog.
async fn baselines(
    args: &RunArgs,
    id: &str,
    dir: &Path,
    stack: &procstat::StackPids,
) -> anyhow::Result<Baselines> {
    let names = Names::new(id, Some("base"));
    let dbs = isolate(args, &names).await?;
    let events = (args.rate * args.prefill_secs).round() as u64;
    say(format!("baselines: pre-filling {events} events"));
    let plan = GenPlan {
        label: "prefill".into(),
        brokers: args.brokers.clone(),
        topics: names.topics.clone(),
        run_id: names.run_id.clone(),
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
    let mut generators = Generators::spawn(&plan, &Tracker::default(), dir)?;
    generators.wait_ready(Duration::from_secs(30)).await?;
    let summaries = generators.finish(Duration::from_secs(1800)).await?;
    let prefill_seconds = started.elapsed().as_secs_f64();
    let delivered: u64 = summaries.iter().map(|(s, _)| s.delivered).sum();
    let failed: u64 = summaries.iter().map(|(s, _)| s.failed).sum();
    if delivered != events || failed > 0 {
        bail!("pre-fill delivered {delivered} of {events} events ({failed} failed)");
    }
    let published = per_kind(&summaries);
    say(format!(
        "baselines: pre-filled in {prefill_seconds:.1} s; letting the broker settle"
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut runs = Vec::new();
    let kafka_target = stack.kafka.map(Target::Process);
    let cpu_of = |t: Option<Target>| t.and_then(procstat::cpu_seconds).unwrap_or(0.0);

    // R0: bare read, its own process.
    say("baselines: R0 — bare rdkafka drain");
    let exe = std::env::current_exe().context("cannot find the sluice-load executable")?;
    let kafka_before = cpu_of(kafka_target);
    let busy = MachineBusy::start();
    let output = tokio::process::Command::new(&exe)
        .arg("drain")
        .arg(format!("--brokers={}", args.brokers))
        .arg(format!("--topics={}", names.topics.join(",")))
        .arg(format!("--expect={events}"))
        .arg(format!("--group={}", names.group("r0")))
        .stderr(std::fs::File::create(dir.join("drain-r0.log"))?)
        .output()
        .await
        .context("running the R0 drain")?;
    let kafka_r0 = cpu_of(kafka_target) - kafka_before;
    let busy_r0 = busy.cores();
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
    let per_event = |cpu: f64| cpu * 1e6 / events as f64;
    let r0_rate = r0.records as f64 / r0.seconds.max(1e-6);
    runs.push(Baseline {
        name: "R0".into(),
        what: "rdkafka BaseConsumer, read only".into(),
        events: r0.records,
        seconds: r0.seconds,
        rate: r0_rate,
        consumer_cpu_us_per_event: per_event(r0.cpu_s),
        postgres_cpu_us_per_event: None,
        clickhouse_cpu_us_per_event: None,
        kafka_cpu_us_per_event: per_event(kafka_r0),
        machine_busy_cores: busy_r0,
        total_cpu_us_per_event: per_event(r0.cpu_s),
        note: String::new(),
    });
    say(format!("baselines: R0 {r0_rate:.0} events/s"));

    // R1: ingest without sinks.
    say("baselines: R1 — sluice-ingest with SLUICE_SINKS_ENABLED=false");
    let setup = ingest_setup(args, &names, &dbs, names.group("r1"), false);
    let partitions = 3 * args.partitions as usize;
    let mut ingest = setup.spawn(&dir.join("ingest-r1.log"), &[])?;
    let t0 = ingest
        .wait_assigned(partitions, Duration::from_secs(120))
        .await?;
    let ingest_target = Target::Process(ingest.pid);
    let (ingest_before, kafka_before) = (cpu_of(Some(ingest_target)), cpu_of(kafka_target));
    let busy = MachineBusy::start();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = ChangePoints::spawn(
        ingest.metrics_addr.clone(),
        t0,
        Duration::from_millis(25),
        Arc::clone(&stop),
    );
    let deadline = Instant::now() + Duration::from_secs(1800);
    while counter.latest() < events as f64 {
        ingest.check_alive()?;
        if Instant::now() > deadline {
            bail!("R1 did not read the backlog within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (ingest_after, kafka_after) = (cpu_of(Some(ingest_target)), cpu_of(kafka_target));
    let busy_r1 = busy.cores();
    stop.store(true, Ordering::Relaxed);
    let r1_seconds = reach_time(&counter.points(), events as f64).unwrap_or(0.0);
    let status =
        tokio::task::spawn_blocking(move || ingest.terminate(Duration::from_secs(60))).await??;
    let r1_rate = events as f64 / r1_seconds.max(1e-6);
    runs.push(Baseline {
        name: "R1".into(),
        what: "sluice-ingest, sinks disabled".into(),
        events,
        seconds: r1_seconds,
        rate: r1_rate,
        consumer_cpu_us_per_event: per_event(ingest_after - ingest_before),
        postgres_cpu_us_per_event: None,
        clickhouse_cpu_us_per_event: None,
        kafka_cpu_us_per_event: per_event(kafka_after - kafka_before),
        machine_busy_cores: busy_r1,
        total_cpu_us_per_event: per_event(ingest_after - ingest_before),
        note: format!(
            "timed from partition assignment to the last record read (ingest publishes its counter once a second: \
             the end is interpolated within the last second); no dedup window (it lives with the sinks); ingest {status}"
        ),
    });
    say(format!("baselines: R1 {r1_rate:.0} events/s"));

    // R2: ingest with both sinks, fresh group and databases.
    say("baselines: R2 — sluice-ingest with PostgreSQL and ClickHouse");
    let setup = ingest_setup(args, &names, &dbs, names.group("r2"), true);
    let mut ingest = setup.spawn(&dir.join("ingest-r2.log"), &[])?;
    let t0 = ingest
        .wait_assigned(partitions, Duration::from_secs(120))
        .await?;
    let pg_target = stack.postgres.map(Target::Family);
    let ch_target = stack.clickhouse.map(Target::Process);
    let ingest_target = Target::Process(ingest.pid);
    let busy = MachineBusy::start();
    let before = [
        cpu_of(Some(ingest_target)),
        cpu_of(pg_target),
        cpu_of(ch_target),
        cpu_of(kafka_target),
    ];
    let watermarks = Watermarks::new(&args.brokers, &names.topics, args.partitions)?;
    let high = watermarks.high().await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        ingest.check_alive()?;
        let stored = kafka_util::stored_offsets(&dbs.pg, &setup.group).await?;
        if kafka_util::lag(&high, &stored) == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("R2 did not store the backlog within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r2_seconds = t0.elapsed().as_secs_f64();
    let busy_r2 = busy.cores();
    let after = [
        cpu_of(Some(ingest_target)),
        cpu_of(pg_target),
        cpu_of(ch_target),
        cpu_of(kafka_target),
    ];
    let status =
        tokio::task::spawn_blocking(move || ingest.terminate(Duration::from_secs(60))).await??;
    let d: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let r2_rate = events as f64 / r2_seconds.max(1e-6);
    runs.push(Baseline {
        name: "R2".into(),
        what: "sluice-ingest, PostgreSQL + ClickHouse".into(),
        events,
        seconds: r2_seconds,
        rate: r2_rate,
        consumer_cpu_us_per_event: per_event(d[0]),
        postgres_cpu_us_per_event: Some(per_event(d[1])),
        clickhouse_cpu_us_per_event: Some(per_event(d[2])),
        kafka_cpu_us_per_event: per_event(d[3]),
        machine_busy_cores: busy_r2,
        total_cpu_us_per_event: per_event(d[0] + d[1] + d[2]),
        note: format!(
            "timed from partition assignment until every stored offset reached its high watermark (durable); ingest {status}"
        ),
    });
    say(format!("baselines: R2 {r2_rate:.0} events/s"));
    let r2_totals = accounting::totals(published, &dbs.pg, Some(&dbs.ch)).await?;
    if r2_totals.ok && !args.keep {
        let mut problems = Vec::new();
        clean_up(args, &names, dbs, &mut problems).await;
    }
    Ok(Baselines {
        prefill_events: events,
        prefill_seconds,
        r1_over_r0: r1_rate / r0_rate.max(1e-6),
        r2_over_r0: r2_rate / r0_rate.max(1e-6),
        runs,
        r2_totals: Some(r2_totals),
    })
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

    #[test]
    fn peak_rate_spans_several_publications() {
        let points = [(1.0, 100.0), (1.5, 1100.0), (2.0, 1200.0), (3.0, 1300.0)];
        assert_eq!(peak_rate(&points, 1), 2000.0);
        assert_eq!(peak_rate(&points, 3), 600.0);
        assert_eq!(peak_rate(&points[..2], 3), 0.0);
    }

    #[test]
    fn reach_time_interpolates_the_last_second() {
        // 100/s, published once a second; the total (250) is reached at 2.5 s, seen at 3.0 s.
        let points = [(1.0, 100.0), (2.0, 200.0), (3.0, 250.0)];
        assert_eq!(reach_time(&points, 250.0), Some(2.5));
        assert_eq!(reach_time(&[(1.0, 250.0)], 250.0), Some(1.0));
        assert_eq!(reach_time(&points, 300.0), None);
    }

    #[test]
    fn parses_seconds_and_pairs() {
        assert_eq!(parse_seconds("60"), Ok(60.0));
        assert_eq!(parse_seconds("15s"), Ok(15.0));
        assert!(parse_seconds("0").is_err());
        assert_eq!(
            parse_key_value("SLUICE_X=a=b"),
            Ok(("SLUICE_X".into(), "a=b".into()))
        );
    }
}
