//! `sluice-ingest`: the ingest service binary. Parses the command line, loads the config, sets up
//! telemetry and hands over to [`sluice_consumers::run`]. SIGINT/SIGTERM ask for a graceful stop (stop
//! fetching, flush, commit, exit 0 within `shutdown_timeout_ms`); a second signal exits at once, which
//! loses nothing either: uncommitted work is replayed from the stored offsets.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Parser, Subcommand};
use sluice_consumers::{config::Config, ingest, telemetry};

/// mimalloc instead of glibc malloc: the poll thread allocates every decoded event's strings and the
/// flush frees them by the million; glibc's malloc and free (`_int_malloc`, `malloc_consolidate`,
/// `unlink_chunk`, …) took 18 % of ingest's samples in a load run and a third in an R1 drain
/// (docs/BENCHMARKS.md). The workspace builds mimalloc with its `override` feature, so the C code in
/// the process (librdkafka, LZ4) allocates from mimalloc too: ingest peaked 6–17 % lower in R2 drains,
/// and a load generator took about 15 % less CPU per event (docs/BENCHMARKS.md, "Session 10").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`), where the kernel
/// would give it 2 MiB pages (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`). Ingest's
/// batches are allocated as records arrive and freed by each flush, so it keeps touching memory for the
/// first time, and the kernel zeroes a whole 2 MiB page on each such touch. In R2 drains of 3 M mixed
/// events, ingest spent 3.1–3.6 s in the kernel with huge pages and 1.7–2.0 s without them, and peaked
/// lower (docs/BENCHMARKS.md, "Session 9"). Other processes keep the system's setting.
fn without_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[derive(Parser)]
#[command(
    name = "sluice-ingest",
    version,
    about = "Kafka → in-memory aggregation → PostgreSQL + ClickHouse"
)]
struct Cli {
    /// TOML config file (default: $SLUICE_CONFIG). Environment variables SLUICE_<KEY> override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume, aggregate and flush until stopped (the default).
    Run,
    /// Apply PostgreSQL and ClickHouse migrations, then exit.
    Migrate,
    /// Print every setting with its effective value (defaults ← config file ← SLUICE_* environment;
    /// secrets redacted), then exit. Connects to nothing.
    Config {
        /// `text`: `key = value` lines; `json`: one object, key → value.
        #[arg(long, value_enum, default_value_t = ConfigFormat::Text)]
        format: ConfigFormat,
        /// Print only the environment variable of each setting (SLUICE_<KEY>), one a line.
        #[arg(long, conflicts_with = "format")]
        keys: bool,
    },
    /// Create the configured event topics and the dead-letter topic (existing ones are left alone).
    Provision {
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i32,
        /// Retention of the event topics, in hours.
        #[arg(long, default_value_t = 168)]
        retention_hours: u64,
        #[arg(long, default_value_t = 3)]
        dead_letter_partitions: i32,
        /// Retention of the dead-letter topic, in hours.
        #[arg(long, default_value_t = 720)]
        dead_letter_retention_hours: u64,
    },
    /// Drop ClickHouse data older than N months (whole monthly partitions; also sets a TTL on servers
    /// that support it).
    Retention {
        /// Months of raw events and rollups to keep.
        #[arg(long)]
        months: u32,
    },
    /// Re-ingest a topic from an earlier offset or time: moves the group's stored offsets back behind a
    /// replay fence, so the re-read records go to ClickHouse again but are not applied to PostgreSQL a
    /// second time. Stop the group's consumers first.
    #[command(group(ArgGroup::new("target").required(true).args(["to_offset", "to_timestamp"])))]
    Replay {
        /// The topic to replay (one of the group's topics).
        #[arg(long)]
        topic: String,
        /// A partition to replay (repeatable); default: every partition of the topic.
        #[arg(long = "partition", value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
        partitions: Vec<i32>,
        /// Move back to this offset (clamped to each partition's earliest retained offset).
        #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
        to_offset: Option<i64>,
        /// Move back to the first record at or after this time: RFC 3339 or milliseconds since the epoch.
        #[arg(long, value_name = "TIME")]
        to_timestamp: Option<String>,
        /// Print the plan without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Do not refuse when the consumer group has active members.
        #[arg(long)]
        force: bool,
    },
    /// Inspect or re-publish the dead-letter topic.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ConfigFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Count dead letters by reason and source topic (from the replay position to the end).
    List,
    /// Send every dead letter back to its source topic, then commit the read position (`replay` is an
    /// older name of this command).
    #[command(alias = "replay")]
    Republish,
}

fn main() -> std::process::ExitCode {
    let thp = without_transparent_huge_pages();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-ingest: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init_tracing(config.log_format);
    if let Err(e) = thp {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off for this process");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-ingest: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async_main(cli.command.unwrap_or(Command::Run), config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sluice-ingest failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Config { format, keys } => {
            if keys {
                for key in Config::keys() {
                    println!("SLUICE_{}", key.to_ascii_uppercase());
                }
            } else {
                match format {
                    ConfigFormat::Text => print!("{}", config.effective_text()),
                    ConfigFormat::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&config.effective())
                            .context("cannot print the config as JSON")?
                    ),
                }
            }
            Ok(())
        }
        Command::Migrate => {
            let sinks = ingest::sinks(&config)?;
            ingest::migrate(&sinks, Duration::from_secs(60)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Provision {
            partitions,
            replication,
            retention_hours,
            dead_letter_partitions,
            dead_letter_retention_hours,
        } => {
            let spec = sluice_consumers::provision::TopicSpec {
                partitions,
                replication,
                retention: Duration::from_secs(retention_hours * 3600),
                dead_letter_partitions,
                dead_letter_retention: Duration::from_secs(dead_letter_retention_hours * 3600),
            };
            for line in sluice_consumers::provision::provision(&config, spec).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Retention { months } => {
            let sinks = ingest::sinks(&config)?;
            let ch = sinks
                .clickhouse
                .context("retention needs ClickHouse (clickhouse_enabled=false)")?;
            let report = ch.apply_retention(months).await?;
            println!(
                "clickhouse {}: kept partitions from {} on",
                report.server_version, report.cutoff
            );
            for dropped in &report.dropped {
                println!("dropped {} partition {}", dropped.table, dropped.partition);
            }
            for table in &report.ttl_set {
                println!("set TTL on {table}");
            }
            Ok(())
        }
        Command::Replay {
            topic,
            partitions,
            to_offset,
            to_timestamp,
            dry_run,
            force,
        } => {
            use sluice_consumers::replay::{replay, Request, Target};
            let target = match (to_offset, to_timestamp) {
                (Some(offset), _) => Target::Offset(offset),
                (None, Some(time)) => Target::parse_timestamp(&time)?,
                (None, None) => anyhow::bail!("give --to-offset or --to-timestamp"),
            };
            let request = Request {
                topic,
                partitions,
                target,
                dry_run,
                force,
            };
            for line in replay(&config, &request).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::DeadLetters { action } => {
            let republish = matches!(action, DeadLetterAction::Republish);
            let summary = sluice_consumers::dead_letters::read(&config, republish).await?;
            for ((reason, source), n) in &summary.by_reason {
                println!("{n:>8}  {reason:<24} from {source}");
            }
            if republish {
                println!("re-published {} dead letters", summary.republished);
            }
            Ok(())
        }
        Command::Run => ingest::run(config, shutdown_signal())
            .await
            .context("ingest stopped"),
    }
}

/// Resolves on the first SIGINT/SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now; unflushed work will be replayed");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    unsafe extern "C" {
        /// mimalloc's own check that a pointer lies in memory it manages.
        fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
    }

    /// What librdkafka gets from `malloc` comes from mimalloc, not glibc: `System` is Rust's path
    /// to the C `malloc` (for this size and alignment).
    #[test]
    fn c_malloc_is_mimalloc() {
        use std::alloc::{GlobalAlloc, Layout, System};
        let layout = Layout::from_size_align(64, 8).expect("layout");
        // SAFETY: a non-zero-sized layout; the block is freed with the same allocator and layout.
        let ours = unsafe {
            let p = System.alloc(layout);
            assert!(!p.is_null());
            let ours = mi_is_in_heap_region(p.cast());
            System.dealloc(p, layout);
            ours
        };
        assert!(ours, "malloc returned memory mimalloc does not manage");
    }
}
