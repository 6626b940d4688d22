//! The command line of `sluice-load run`: rate, duration, generators, partitions, baselines, what to
//! verify, the stack's addresses and the generators' shape and producer settings.

use std::path::PathBuf;

use crate::kit::StackArgs;
use crate::load::generate::{ProducerSettings, Shape};

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
    /// The stack; the run's own databases are created from its PostgreSQL database.
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub shape: Shape,
    #[command(flatten)]
    pub producer: ProducerSettings,
}

pub(crate) fn parse_seconds(s: &str) -> Result<f64, String> {
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

pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
