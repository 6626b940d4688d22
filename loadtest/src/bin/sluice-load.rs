//! `sluice-load`: load runs of the whole pipeline on the local stack.
//!
//! - `sluice-load run --rate 100000 --duration 60 [--baselines]` drives a run end to end (its own
//!   topics and databases, `sluice-ingest` as a child, generator processes, live progress, drain,
//!   accounting) and writes `results/<timestamp>/report.{md,json}` and `rates.png`.
//! - `sluice-load run --baselines-only --prefill-events N [--baseline r2]` measures only the drain
//!   baselines (R0/R1/R2) on a pre-filled backlog of N events, with a report of its own.
//! - `sluice-load generate --share k/N …` is one generator (the driver starts these; they can run on
//!   other machines too: everything they report goes to stdout as JSON lines).
//! - `sluice-load drain …` is the bare-reader baseline R0.
//! - `sluice-load demo [--rate 5000] [--duration 60]` is `make run`'s bounded demo on the stack's own
//!   databases ([`sluice_loadtest::demo`]).
//!
//! Exit status: 0 when the run passed (drained, exact accounting, clean ingest exit; for the demo:
//! every event exactly once), 1 otherwise, 130 for a demo stopped by Ctrl-C.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_loadtest::demo;
use sluice_loadtest::load::{drain, generate, run};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-load",
    version,
    about = "Load runs of Sluice: generators, ingest, latency, CPU, accounting, report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive a whole load run and write its report.
    Run(Box<run::RunArgs>),
    /// Produce one share of a run's traffic (JSON lines on stdout).
    Generate(Box<generate::GenerateArgs>),
    /// Read topics as fast as possible and report the rate and CPU (baseline R0).
    Drain(drain::DrainArgs),
    /// The bounded end-to-end demo of `make run`: ingest, a producer, progress, sample queries.
    Demo(demo::DemoArgs),
}

/// The generators and the R0 drain allocate per event as ingest does; the same allocator keeps the load
/// tool's own CPU (which shares the machine with what it measures) low.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,sqlx=error")),
        )
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice-load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let passed = match cli.command {
        Command::Run(args) => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            runtime()?.block_on(run::run(*args, command))?
        }
        Command::Generate(args) => {
            generate::run(&args)?;
            true
        }
        Command::Drain(args) => {
            let result = drain::run(&args)?;
            println!("{}", serde_json::to_string(&result)?);
            true
        }
        Command::Demo(args) => return runtime()?.block_on(demo::run(args)),
    };
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
