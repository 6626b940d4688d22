//! `sluice-load demo` (`make run`): a bounded end-to-end demo on the local stack. Topics and a consumer
//! group of the run's own (`demo-<epoch>-*`, made by `sluice-ingest provision`) on the stack's shared
//! databases; migrations; `sluice-ingest run`; `sluice-produce synthetic` at `--rate` events/s for
//! `--duration` s; a progress line every 5 s (ingest rate, records consumed, events in the PostgreSQL
//! aggregates and rows in ClickHouse since the start); the wait for ingest to catch up; sample product
//! and analyst queries; ingest stopped gracefully (SIGTERM); a summary, which fails the run unless every
//! published event landed exactly once in both databases.
//!
//! Ctrl-C (or SIGTERM) stops everything early and gracefully: the children run in process groups of
//! their own, so only the demo gets the terminal's signal; it then sends SIGINT to the producer and
//! SIGTERM to ingest, waits for them, and exits with status 130.
//!
//! Everything else comes from the environment `infra/stack.sh env` prints (`SLUICE_KAFKA_BROKERS`,
//! `SLUICE_POSTGRES_URL`, `SLUICE_CLICKHOUSE_URL`, `SLUICE_CLICKHOUSE_DATABASE`); every other `SLUICE_*`
//! variable set reaches ingest and the producer unchanged.

mod queries;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::kit::databases::{events_in_postgres, rows_in_clickhouse};
use crate::kit::ingest::signal;
use crate::kit::{metric_sum, IngestProcess, IngestSetup, StackArgs};

/// The counter the ingest rate is read from.
const CONSUMED: &str = "sluice_ingest_records_consumed_total";
/// Partitions of each demo topic.
const PARTITIONS: i32 = 6;
/// Partitions of the dead-letter topic when the demo is the first to make it (provision's default).
const DEAD_LETTER_PARTITIONS: i32 = 3;
/// A progress line this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The longest wait for ingest to catch up after the producer finished.
const CATCH_UP: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Events per second.
    #[arg(long, env = "RATE", default_value_t = 5000)]
    pub rate: u32,
    /// Seconds of publishing.
    #[arg(long, env = "DURATION", default_value_t = 60)]
    pub duration: u64,
    /// Where `sluice-ingest` and `sluice-produce` are (default: beside this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The stack's state directory; the demo's logs go to `<state>/demo`.
    #[arg(long, env = "SLUICE_STATE_DIR", default_value = ".state")]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub stack: StackArgs,
    #[arg(long, env = "SLUICE_CLICKHOUSE_DATABASE", default_value = "sluice")]
    pub clickhouse_database: String,
    /// Ingest's metrics and health endpoint.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
}

fn say(line: impl AsRef<str>) {
    println!("[run] {}", line.as_ref());
}

/// The demo's children, kept outside the demo itself so that an interrupted demo can still stop them
/// gracefully.
#[derive(Debug, Default)]
struct Children {
    ingest: Option<IngestProcess>,
    producer: Option<Child>,
}

impl Children {
    /// SIGINT to the producer, SIGTERM to ingest; waits for both.
    fn stop(&mut self) {
        if let Some(mut producer) = self.producer.take() {
            let _ = signal(producer.id(), "INT");
            let _ = producer.wait();
        }
        if let Some(ingest) = self.ingest.take() {
            let _ = ingest.terminate(Duration::from_secs(120));
        }
    }
}

/// Runs the demo; its exit status (0 exact, 1 a mismatch or a failure, 130 interrupted).
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut children = Children::default();
    let outcome = {
        let demo = demo(&args, &mut children);
        tokio::pin!(demo);
        tokio::select! {
            result = &mut demo => Some(result),
            () = interrupted() => None,
        }
    };
    match outcome {
        Some(result) => {
            children.stop();
            result.map(|exact| {
                if exact {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
        None => {
            say("interrupted: stopping");
            children.stop();
            Ok(ExitCode::from(130))
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without signal handlers the default action (exit) applies; never resolve.
        _ => std::future::pending().await,
    }
}

/// What the demo reads from the stack's shared databases.
struct Counts {
    pg: PgPool,
    ch: clickhouse::Client,
    base_pg: i64,
    base_ch: u64,
}

impl Counts {
    async fn connect(args: &DemoArgs) -> anyhow::Result<Counts> {
        let pg = PgPoolOptions::new()
            .max_connections(2)
            .connect(&args.stack.postgres_url)
            .await
            .context("connecting to PostgreSQL (is the stack up? `make up`)")?;
        let ch = clickhouse::Client::default()
            .with_url(&args.stack.clickhouse_url)
            .with_database(&args.clickhouse_database)
            .with_validation(false);
        let base_pg = events_in_postgres(&pg).await?;
        let base_ch = rows_in_clickhouse(&ch).await?;
        Ok(Counts {
            pg,
            ch,
            base_pg,
            base_ch,
        })
    }

    /// Events aggregated in PostgreSQL since the start.
    async fn in_postgres(&self) -> anyhow::Result<i64> {
        Ok(events_in_postgres(&self.pg).await? - self.base_pg)
    }

    /// Rows in ClickHouse since the start.
    async fn in_clickhouse(&self) -> anyhow::Result<i64> {
        Ok(rows_in_clickhouse(&self.ch).await? as i64 - self.base_ch as i64)
    }
}

/// The progress lines: the ingest rate between two lines, from ingest's consumed counter.
struct Progress {
    start: Instant,
    last_t: Instant,
    first_consumed: f64,
    last_consumed: f64,
}

impl Progress {
    async fn start(ingest: &IngestProcess) -> Progress {
        let consumed = consumed(ingest).await;
        println!(
            "[run] {:>6}  {:>12}  {:>14}  {:>14}  {:>12}",
            "t(s)", "ingest ev/s", "consumed", "in postgres", "in clickhouse"
        );
        let now = Instant::now();
        Progress {
            start: now,
            last_t: now,
            first_consumed: consumed,
            last_consumed: consumed,
        }
    }

    async fn report(&mut self, ingest: &IngestProcess, counts: &Counts) -> anyhow::Result<()> {
        let now = Instant::now();
        let consumed = consumed(ingest).await;
        let rate = (consumed - self.last_consumed) / (now - self.last_t).as_secs_f64().max(1e-3);
        println!(
            "[run] {:>6.0}  {:>12}  {:>14}  {:>14}  {:>12}",
            (now - self.start).as_secs_f64(),
            rate as i64,
            (consumed - self.first_consumed) as i64,
            counts.in_postgres().await?,
            counts.in_clickhouse().await?
        );
        self.last_consumed = consumed;
        self.last_t = now;
        Ok(())
    }
}

/// Ingest's consumed counter (0 while its endpoint does not answer).
async fn consumed(ingest: &IngestProcess) -> f64 {
    ingest
        .metrics()
        .await
        .map_or(0.0, |text| metric_sum(&text, CONSUMED))
}

/// The demo proper; whether every published event landed exactly once.
async fn demo(args: &DemoArgs, children: &mut Children) -> anyhow::Result<bool> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find the sluice-load executable")?
            .parent()
            .context("the sluice-load executable has no directory")?
            .to_owned(),
    };
    let dir = args.state_dir.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    // Topics and a consumer group of this run's own, so the check at the end counts exactly this run's
    // events (the databases are the shared local ones).
    let run_id = format!("demo-{}", chrono::Utc::now().timestamp());
    let setup = ingest_setup(args, &bin_dir, &run_id);
    say(format!(
        "creating topics {run_id}-{{rank,crawl,click}}-events ({PARTITIONS} partitions each)"
    ));
    let provision = setup.provision(PARTITIONS, DEAD_LETTER_PARTITIONS)?;
    std::fs::write(dir.join("provision.log"), provision)?;

    say("migrating PostgreSQL and ClickHouse");
    let migrate = setup.output(&["migrate"], &[])?;
    std::fs::write(dir.join("migrate.log"), &migrate.stderr)?;
    if !migrate.status.success() {
        bail!(
            "sluice-ingest migrate failed ({}):\n{}",
            migrate.status,
            String::from_utf8_lossy(&migrate.stderr).trim_end()
        );
    }
    let counts = Counts::connect(args).await?;

    let log = dir.join("ingest.log");
    say(format!(
        "starting sluice-ingest (log: {}, metrics: http://{}/metrics)",
        log.display(),
        args.metrics_addr
    ));
    let ingest = children.ingest.insert(setup.spawn(&log, &[])?);
    if let Err(e) = ingest.wait_assigned(1, Duration::from_secs(20)).await {
        if !ingest.alive() {
            bail!("ingest exited early:\n{}", tail(&ingest.log_text(), 20));
        }
        // Still starting after 20 s: carry on, the progress lines will show it.
        tracing::debug!(error = format!("{e:#}"), "no partition assigned yet");
    }

    say(format!(
        "publishing synthetic traffic: {} events/s for {}s (run id {run_id}; log: {})",
        args.rate,
        args.duration,
        dir.join("producer.log").display()
    ));
    let producer = children
        .producer
        .insert(spawn_producer(args, &bin_dir, &setup, &run_id, &dir)?);
    let ingest = children.ingest.as_ref().expect("started above");
    let mut progress = Progress::start(ingest).await;
    let status = loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let exited = producer.try_wait()?;
        progress.report(ingest, &counts).await?;
        if let Some(status) = exited {
            break status;
        }
    };
    children.producer = None;
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("producer.log")).unwrap_or_default();
        bail!("producer failed ({status}):\n{}", tail(&log, 5));
    }
    let produced = delivered(&dir.join("producer.json"))?;
    say(format!(
        "producer done: {produced} events delivered to Kafka; waiting for ingest to catch up"
    ));
    let deadline = Instant::now() + CATCH_UP;
    while counts.in_postgres().await? < produced as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    progress.report(ingest, &counts).await?;
    let end = Instant::now();

    queries::sample_queries(&counts).await?;

    say("stopping sluice-ingest (SIGTERM: stop fetching, flush, commit)");
    let ingest = children.ingest.take().expect("started above");
    let status = tokio::task::spawn_blocking(move || ingest.terminate(Duration::from_secs(120)))
        .await
        .context("terminate task")??;
    let in_pg = counts.in_postgres().await?;
    let in_ch = counts.in_clickhouse().await?;
    say(format!(
        "ingest exited with status {}",
        status
            .code()
            .map_or_else(|| status.to_string(), |c| c.to_string())
    ));
    let seconds = (end - progress.start).as_secs_f64();
    say(format!(
        "summary: {produced} events published; {in_pg} aggregated in PostgreSQL; {in_ch} rows in ClickHouse; \
         {:.0} events/s end to end over {seconds:.1} s",
        in_pg as f64 / seconds
    ));
    if in_pg != produced as i64 || in_ch != produced as i64 {
        say(format!(
            "MISMATCH: not every published event landed exactly once (see {})",
            log.display()
        ));
        return Ok(false);
    }
    say("every published event landed exactly once in both databases");
    Ok(true)
}

/// Ingest on the demo's topics and group and the stack's databases, with every `SLUICE_*` variable of
/// the demo's own environment passed on (the fixed metrics address among them).
fn ingest_setup(args: &DemoArgs, bin_dir: &Path, run_id: &str) -> IngestSetup {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SLUICE_"))
        .collect();
    env.push(("SLUICE_METRICS_ADDR".into(), args.metrics_addr.clone()));
    let dead_letter_topic =
        std::env::var("SLUICE_DEAD_LETTER_TOPIC").unwrap_or_else(|_| "sluice-dead-letters".into());
    IngestSetup {
        binary: bin_dir.join("sluice-ingest"),
        brokers: args.stack.brokers.clone(),
        group: format!("sluice-{run_id}"),
        topics: ["rank", "crawl", "click"].map(|k| format!("{run_id}-{k}-events")),
        dead_letter_topic,
        postgres_url: args.stack.postgres_url.clone(),
        clickhouse_url: args.stack.clickhouse_url.clone(),
        clickhouse_database: args.clickhouse_database.clone(),
        rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        env: passed_on(env),
        own_process_group: true,
    }
}

/// The environment's `SLUICE_*` settings but those the demo decides (its topics and group, and the
/// stack's addresses, which come through its own flags).
fn passed_on(env: Vec<(String, String)>) -> Vec<(String, String)> {
    const OWN: [&str; 9] = [
        "SLUICE_RANK_TOPIC",
        "SLUICE_CRAWL_TOPIC",
        "SLUICE_CLICK_TOPIC",
        "SLUICE_GROUP_ID",
        "SLUICE_DEAD_LETTER_TOPIC",
        "SLUICE_KAFKA_BROKERS",
        "SLUICE_POSTGRES_URL",
        "SLUICE_CLICKHOUSE_URL",
        "SLUICE_CLICKHOUSE_DATABASE",
    ];
    env.into_iter()
        .filter(|(k, _)| !OWN.contains(&k.as_str()))
        .collect()
}

/// `sluice-produce synthetic` on the demo's topics; its summary (JSON) to `producer.json`, its log to
/// `producer.log`.
fn spawn_producer(
    args: &DemoArgs,
    bin_dir: &Path,
    setup: &IngestSetup,
    run_id: &str,
    dir: &Path,
) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let binary = bin_dir.join("sluice-produce");
    Command::new(&binary)
        .args(["synthetic", "--rate", &args.rate.to_string()])
        .args(["--duration", &format!("{}s", args.duration)])
        .args(["--run-id", run_id])
        .env("SLUICE_KAFKA_BROKERS", &args.stack.brokers)
        .env("SLUICE_RANK_TOPIC", &setup.topics[0])
        .env("SLUICE_CRAWL_TOPIC", &setup.topics[1])
        .env("SLUICE_CLICK_TOPIC", &setup.topics[2])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("producer.json"))?)
        .stderr(std::fs::File::create(dir.join("producer.log"))?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// `delivered` from the producer's summary line.
fn delivered(summary: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("cannot read {}", summary.display()))?;
    let line = text.lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("{} holds no JSON summary", summary.display()))?;
    value["delivered"]
        .as_u64()
        .with_context(|| format!("no \"delivered\" in {line}"))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_names_win_over_the_environment() {
        let env = vec![
            ("SLUICE_RANK_TOPIC".to_owned(), "rank-events".to_owned()),
            ("SLUICE_FLUSH_INTERVAL_MS".to_owned(), "500".to_owned()),
        ];
        assert_eq!(
            passed_on(env),
            vec![("SLUICE_FLUSH_INTERVAL_MS".to_owned(), "500".to_owned())]
        );
    }

    #[test]
    fn reads_the_producer_summary_and_log_tails() -> anyhow::Result<()> {
        let file = std::env::temp_dir().join(format!("demo-summary-{}.json", std::process::id()));
        std::fs::write(&file, "{\"sent\":10,\"delivered\":9,\"failed\":1}\n")?;
        assert_eq!(delivered(&file)?, 9);
        std::fs::remove_file(&file)?;
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        Ok(())
    }
}
