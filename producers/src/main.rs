//! `sluice-produce`: publishes Sluice events to Kafka, either synthetic traffic at a steady rate
//! (`synthetic`) or NDJSON events read from stdin (`stdin`). Events flow from the generator or the
//! input lines through [`sluice_producers::EventProducer::enqueue`] into librdkafka; progress and the
//! final summary go to stderr as log lines, and the summary also to stdout as one JSON object.
//!
//! Exit codes: 0 when every event was delivered; 1 on delivery failures or any other error; 2 when
//! some stdin lines were bad (and skipped) but everything else was delivered.

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sluice_producers::{
    parse_ndjson, to_ndjson, EventProducer, Mix, ProducerConfig, Synth, SynthConfig,
};
use sluice_schemas::{Encoding, EventKind, Limits};
use tracing_subscriber::EnvFilter;

/// Pacing granularity of `synthetic`: small ticks keep the rate smooth.
const TICK: Duration = Duration::from_millis(10);
/// Events per loop round when `--rate 0` (as fast as possible).
const UNPACED_BATCH: u64 = 1000;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-produce",
    version,
    about = "Publish Sluice events (rank, crawl, click) to Kafka"
)]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "SLUICE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    brokers: String,
    /// Topic of rank events.
    #[arg(long, env = "SLUICE_RANK_TOPIC", default_value = EventKind::Rank.default_topic(), global = true)]
    rank_topic: String,
    /// Topic of crawl events.
    #[arg(long, env = "SLUICE_CRAWL_TOPIC", default_value = EventKind::Crawl.default_topic(), global = true)]
    crawl_topic: String,
    /// Topic of click events.
    #[arg(long, env = "SLUICE_CLICK_TOPIC", default_value = EventKind::Click.default_topic(), global = true)]
    click_topic: String,
    /// Record value encoding: json or bincode.
    #[arg(
        long,
        env = "SLUICE_PRODUCER_ENCODING",
        default_value = "json",
        global = true
    )]
    encoding: Encoding,
    /// librdkafka linger.ms.
    #[arg(long, default_value_t = 5, global = true)]
    linger_ms: u32,
    /// librdkafka compression.type: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "lz4", global = true)]
    compression: String,
    /// Extra librdkafka property, repeatable (e.g. -X security.protocol=SASL_SSL).
    #[arg(short = 'X', long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_key_value, global = true)]
    kafka_options: Vec<(String, String)>,
    /// A file holding the Kafka SASL password (librdkafka sasl.password); never printed.
    #[arg(
        long,
        env = "SLUICE_KAFKA_SASL_PASSWORD_FILE",
        value_name = "PATH",
        global = true
    )]
    kafka_sasl_password_file: Option<std::path::PathBuf>,
    /// A TOML file of producer settings in the form of `ProducerConfig` (brokers, rank_topic,
    /// crawl_topic, click_topic, encoding, linger_ms, batch_size, compression, sasl_password_file, and
    /// [extra] librdkafka properties); flags and environment variables given explicitly win over it.
    #[arg(
        long,
        env = "SLUICE_PRODUCE_CONFIG",
        value_name = "PATH",
        global = true
    )]
    config: Option<PathBuf>,
    /// How long to wait for outstanding deliveries at the end (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, global = true)]
    flush_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish deterministic synthetic traffic at a steady rate.
    Synthetic(SyntheticArgs),
    /// Publish NDJSON events read from stdin.
    Stdin(StdinArgs),
}

#[derive(Debug, Args)]
struct SyntheticArgs {
    /// Events per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Stop after this long (e.g. 30s, 5m). With neither --duration nor --count, runs until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Relative weights of the event kinds.
    #[arg(long, default_value = "rank=2,crawl=1,click=7")]
    mix: Mix,
    /// Random seed: same seed and run id, same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of tenants.
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Campaigns per tenant (rank and crawl entities).
    #[arg(long, default_value_t = 5)]
    campaigns_per_tenant: usize,
    /// Keywords tracked per campaign (Zipf-skewed).
    #[arg(long, default_value_t = 50)]
    keywords_per_campaign: usize,
    /// Short links per tenant (click entities, Zipf-skewed).
    #[arg(long, default_value_t = 200)]
    links_per_tenant: usize,
    /// occurred_at is spread over the last this many days.
    #[arg(long, default_value_t = 3)]
    days_back: u32,
    /// Prefix of event ids ("{run_id}-{seq}"); default run-<unix seconds>.
    #[arg(long)]
    run_id: Option<String>,
    /// Also write every published event to this file as NDJSON with a "type" field.
    #[arg(long)]
    record: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StdinArgs {
    /// Kind of every line; without it each line's "type" field decides.
    #[arg(long)]
    kind: Option<EventKind>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(cli, &matches).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The producer settings: built-in defaults, then the `--config` file, then flags and `SLUICE_*`
/// variables that were given (a flag's default does not override the file); `-X` properties are added
/// to the file's `[extra]`, winning over it.
fn producer_config(cli: &Cli, matches: &ArgMatches) -> anyhow::Result<ProducerConfig> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config: cannot read {}", path.display()))?;
            figment::Figment::from(
                <figment::providers::Toml as figment::providers::Format>::string(&text),
            )
            .extract::<ProducerConfig>()
            .map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))?
        }
        None => ProducerConfig::default(),
    };
    let given = |id: &str| {
        cli.config.is_none()
            || matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
    };
    if given("brokers") {
        config.brokers = cli.brokers.clone();
    }
    if given("rank_topic") {
        config.rank_topic = cli.rank_topic.clone();
    }
    if given("crawl_topic") {
        config.crawl_topic = cli.crawl_topic.clone();
    }
    if given("click_topic") {
        config.click_topic = cli.click_topic.clone();
    }
    if given("encoding") {
        config.encoding = cli.encoding;
    }
    if given("linger_ms") {
        config.linger_ms = cli.linger_ms;
    }
    if given("compression") {
        config.compression = cli.compression.clone();
    }
    if cli.kafka_sasl_password_file.is_some() {
        config.sasl_password_file = cli.kafka_sasl_password_file.clone();
    }
    config.extra.extend(cli.kafka_options.iter().cloned());
    Ok(config)
}

async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let config = producer_config(&cli, matches)?;
    let producer =
        Arc::new(EventProducer::new(config).context("cannot create the kafka producer")?);

    // SIGINT (Ctrl-C) or SIGTERM (`kill`, a container stop) stops producing; what was queued is still
    // flushed and the summary printed.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stop signal: stopping and flushing (a second signal quits at once)");
            stop.store(true, Ordering::Relaxed);
            // A second signal (e.g. while blocked reading a terminal) quits without flushing.
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("error: second stop signal, quitting without flushing");
            std::process::exit(130);
        });
    }

    let flush_timeout = cli.flush_timeout;
    let worker_producer = Arc::clone(&producer);
    let outcome = match cli.command {
        Command::Synthetic(args) => {
            tokio::task::spawn_blocking(move || {
                synthetic(&worker_producer, args, &stop, flush_timeout)
            })
            .await
        }
        Command::Stdin(args) => {
            tokio::task::spawn_blocking(move || stdin(&worker_producer, args, &stop, flush_timeout))
                .await
        }
    }
    .context("producer task panicked")??;

    let stats = producer.stats();
    let elapsed = outcome.elapsed.as_secs_f64();
    let achieved_rate = rate(outcome.sent, outcome.elapsed);
    tracing::info!(
        sent = outcome.sent,
        delivered = stats.delivered,
        failed = stats.failed,
        resent = stats.resent,
        refused = outcome.refused,
        bad_lines = outcome.bad_lines,
        elapsed_s = elapsed,
        achieved_rate,
        "summary"
    );
    println!(
        "{}",
        serde_json::json!({
            "sent": outcome.sent,
            "delivered": stats.delivered,
            "failed": stats.failed,
            "resent": stats.resent,
            "refused": outcome.refused,
            "bad_lines": outcome.bad_lines,
            "elapsed_s": elapsed,
            "achieved_rate": achieved_rate,
        })
    );

    if let Some(err) = outcome.flush_error {
        bail!(
            "{err}; {} delivered, {} failed so far",
            stats.delivered,
            stats.failed
        );
    }
    let undelivered = stats.failed + outcome.refused;
    if undelivered > 0 {
        let last = producer
            .last_delivery_error()
            .unwrap_or_else(|| "see the log above".to_owned());
        bail!(
            "{undelivered} of {} events were not delivered; last error: {last}",
            outcome.sent + outcome.refused
        );
    }
    if outcome.bad_lines > 0 {
        eprintln!(
            "error: {} bad input lines were skipped (see the log above)",
            outcome.bad_lines
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// What a run did, for the summary.
#[derive(Debug, Default)]
struct Outcome {
    /// Events handed to the producer.
    sent: u64,
    /// Events librdkafka refused to queue (e.g. too large).
    refused: u64,
    /// Unparseable or invalid input lines (stdin).
    bad_lines: u64,
    elapsed: Duration,
    /// The final flush timed out.
    flush_error: Option<String>,
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// Logs a progress line about once per second.
#[derive(Debug)]
struct Progress {
    next: Instant,
    last_sent: u64,
    last_at: Instant,
}

impl Progress {
    fn new(start: Instant) -> Progress {
        Progress {
            next: start + Duration::from_secs(1),
            last_sent: 0,
            last_at: start,
        }
    }

    fn tick(&mut self, producer: &EventProducer, sent: u64, target_rate: Option<f64>) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        let achieved_rate = rate(sent - self.last_sent, now - self.last_at);
        let stats = producer.stats();
        // A `None` target (unpaced) leaves the field out.
        tracing::info!(
            sent,
            target_rate,
            achieved_rate,
            delivered = stats.delivered,
            failed = stats.failed,
            in_flight = producer.in_flight(),
            "progress"
        );
        self.next += Duration::from_secs(1);
        if self.next < now {
            self.next = now + Duration::from_secs(1);
        }
        self.last_sent = sent;
        self.last_at = now;
    }
}

fn synthetic(
    producer: &EventProducer,
    args: SyntheticArgs,
    stop: &AtomicBool,
    flush_timeout: Duration,
) -> anyhow::Result<Outcome> {
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!("--rate must be a finite number >= 0, got {}", args.rate);
    }
    let run_id = args
        .run_id
        .unwrap_or_else(|| format!("run-{}", Utc::now().timestamp()));
    let cfg = SynthConfig {
        seed: args.seed,
        tenants: args.tenants,
        campaigns_per_tenant: args.campaigns_per_tenant,
        keywords_per_campaign: args.keywords_per_campaign,
        links_per_tenant: args.links_per_tenant,
        days_back: args.days_back,
        mix: args.mix,
        ..SynthConfig::default()
    };
    let mut synth = Synth::new(cfg, &run_id).context("invalid synthetic traffic settings")?;
    let mut record = match &args.record {
        Some(path) => Some(BufWriter::new(File::create(path).with_context(|| {
            format!("cannot create record file {}", path.display())
        })?)),
        None => None,
    };
    let paced = args.rate > 0.0;
    tracing::info!(
        run_id = %run_id,
        rate = args.rate,
        duration_s = args.duration.map(|d| d.as_secs_f64()),
        count = args.count,
        mix = %args.mix,
        seed = args.seed,
        "producing synthetic events"
    );

    let start = Instant::now();
    let mut progress = Progress::new(start);
    let mut sent = 0u64;
    loop {
        let elapsed = start.elapsed();
        let time_up = args.duration.is_some_and(|d| elapsed >= d);
        // Events due by now (by the end, when time is up), capped by --count.
        let due_at = args.duration.map_or(elapsed, |d| elapsed.min(d));
        let mut target = if paced {
            (args.rate * due_at.as_secs_f64()).floor() as u64
        } else {
            sent + UNPACED_BATCH
        };
        if let Some(count) = args.count {
            target = target.min(count);
        }
        let now = Utc::now();
        while sent < target && !stop.load(Ordering::Relaxed) {
            let event = synth.next(now);
            producer
                .enqueue(&event)
                .with_context(|| format!("cannot publish event {}", event.event_id()))?;
            sent += 1;
            if let Some(out) = record.as_mut() {
                writeln!(out, "{}", to_ndjson(&event)).context("cannot write the record file")?;
            }
        }
        progress.tick(producer, sent, paced.then_some(args.rate));
        let done = time_up || args.count.is_some_and(|c| sent >= c);
        if done || stop.load(Ordering::Relaxed) {
            break;
        }
        if paced {
            std::thread::sleep(TICK);
        }
    }
    if let Some(mut out) = record {
        out.flush().context("cannot write the record file")?;
    }
    let flush_error = producer.flush(flush_timeout).err().map(|e| e.to_string());
    Ok(Outcome {
        sent,
        elapsed: start.elapsed(),
        flush_error,
        ..Outcome::default()
    })
}

fn stdin(
    producer: &EventProducer,
    args: StdinArgs,
    stop: &AtomicBool,
    flush_timeout: Duration,
) -> anyhow::Result<Outcome> {
    let limits = Limits::default();
    let start = Instant::now();
    let mut progress = Progress::new(start);
    let mut outcome = Outcome::default();
    let mut input = std::io::stdin().lock();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    while !stop.load(Ordering::Relaxed) {
        buf.clear();
        if input
            .read_until(b'\n', &mut buf)
            .context("cannot read stdin")?
            == 0
        {
            break;
        }
        line_no += 1;
        let Ok(line) = std::str::from_utf8(&buf) else {
            tracing::warn!(line = line_no, "bad input line skipped: not UTF-8");
            outcome.bad_lines += 1;
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_ndjson(line, args.kind, &limits, Utc::now()) {
            Ok(event) => match producer.enqueue(&event) {
                Ok(()) => outcome.sent += 1,
                Err(err) => {
                    tracing::warn!(line = line_no, error = %err, "event refused by the producer");
                    outcome.refused += 1;
                }
            },
            Err(err) => {
                tracing::warn!(line = line_no, error = %err, "bad input line skipped");
                outcome.bad_lines += 1;
            }
        }
        progress.tick(producer, outcome.sent, None);
    }
    outcome.flush_error = producer.flush(flush_timeout).err().map(|e| e.to_string());
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

/// Parses `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds (fractions allowed).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}; expected e.g. 500ms, 30s, 5m, 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}; accepted: ms, s, m, h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a `-X key=value` librdkafka property.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10x")
            .unwrap_err()
            .contains("accepted: ms, s, m, h"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    /// `sluice-produce` parsed as `main` does, but blind to the environment: a shell with the stack's
    /// `SLUICE_*` variables exported (`eval "$(bash infra/stack.sh env)"`) must not change the result.
    fn parse(args: &[&str]) -> (Cli, ArgMatches) {
        let matches = Cli::command()
            .mut_args(|arg| arg.env(None))
            .mut_subcommands(|sub| sub.mut_args(|arg| arg.env(None)))
            .try_get_matches_from(args)
            .unwrap();
        (Cli::from_arg_matches(&matches).unwrap(), matches)
    }

    #[test]
    fn config_file_then_explicit_flags() {
        let dir =
            std::env::temp_dir().join(format!("sluice-produce-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("produce.toml");
        std::fs::write(
            &file,
            "brokers = \"k1:19092,k2:29092\"\nlinger_ms = 20\nsasl_password_file = \"/run/secrets/kafka\"\n\
             [extra]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.username\" = \"sluice\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();

        // The file over the defaults; a flag's default value does not override it.
        let (cli, m) = parse(&["sluice-produce", "--config", path, "stdin"]);
        let c = producer_config(&cli, &m).unwrap();
        assert_eq!(c.brokers, "k1:19092,k2:29092");
        assert_eq!(c.linger_ms, 20);
        assert_eq!(c.compression, "lz4");
        assert_eq!(
            c.sasl_password_file,
            Some(PathBuf::from("/run/secrets/kafka"))
        );
        assert_eq!(
            c.extra.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );

        // Explicit flags (also after the subcommand) win, -X adds to [extra].
        let (cli, m) = parse(&[
            "sluice-produce",
            "--config",
            path,
            "stdin",
            "--brokers",
            "b:9092",
            "--kafka-sasl-password-file",
            "/elsewhere",
            "-X",
            "sasl.username=other",
        ]);
        let c = producer_config(&cli, &m).unwrap();
        assert_eq!(c.brokers, "b:9092");
        assert_eq!(c.linger_ms, 20);
        assert_eq!(c.sasl_password_file, Some(PathBuf::from("/elsewhere")));
        assert_eq!(
            c.extra.get("sasl.username").map(String::as_str),
            Some("other")
        );

        // Without a file the flags (and their defaults) are the settings.
        let (cli, m) = parse(&["sluice-produce", "stdin"]);
        let c = producer_config(&cli, &m).unwrap();
        assert_eq!(
            c,
            ProducerConfig {
                linger_ms: 5,
                ..ProducerConfig::default()
            }
        );

        // An unknown key is refused, naming it.
        std::fs::write(&file, "brokerz = \"x\"\n").unwrap();
        let (cli, m) = parse(&["sluice-produce", "--config", path, "stdin"]);
        let err = producer_config(&cli, &m).unwrap_err().to_string();
        assert!(err.contains("brokerz"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("a.b=c=d"),
            Ok(("a.b".to_owned(), "c=d".to_owned()))
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn cli_parses_globals_after_subcommand_and_mix() {
        let cli = Cli::try_parse_from([
            "sluice-produce",
            "synthetic",
            "--rate",
            "0",
            "--count",
            "10",
            "--mix",
            "click=1",
            "--encoding",
            "bincode",
            "-X",
            "sasl.password=x",
        ])
        .unwrap();
        assert_eq!(cli.encoding, Encoding::Bincode);
        assert_eq!(
            cli.kafka_options,
            vec![("sasl.password".to_owned(), "x".to_owned())]
        );
        let Command::Synthetic(args) = cli.command else {
            panic!("not synthetic")
        };
        assert_eq!(
            args.mix,
            Mix {
                rank: 0,
                crawl: 0,
                click: 1
            }
        );
        assert_eq!(args.count, Some(10));
        let err = Cli::try_parse_from(["sluice-produce", "synthetic", "--mix", "rank=1,view=1"])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("accepted keys: rank, crawl, click"),
            "{err}"
        );
        let err = Cli::try_parse_from(["sluice-produce", "stdin", "--kind", "view"]).unwrap_err();
        assert!(
            err.to_string().contains("accepted: rank, crawl, click"),
            "{err}"
        );
    }
}
