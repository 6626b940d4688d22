//! The command line of `sluice-load run`: rate, duration, generators, partitions, baselines (with the
//! main run, or alone on a backlog of a given size), what to verify, the stack's addresses and the
//! generators' shape and producer settings.

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

/// One drain baseline (docs/BENCHMARKS.md "Baselines: R0, R1, R2").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
pub enum BaselineRun {
    /// A bare rdkafka reader (`sluice-load drain`).
    R0,
    /// `sluice-ingest` with its sinks disabled.
    R1,
    /// `sluice-ingest` with PostgreSQL and ClickHouse, into fresh databases, then the totals check.
    R2,
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
    #[arg(long, group = "baseline_mode")]
    pub baselines: bool,
    /// Measure only the drain baselines, on a backlog of `--prefill-events` events, and skip the main
    /// run (`--rate` and `--duration` are then unused).
    #[arg(long, group = "baseline_mode", requires = "prefill_events")]
    pub baselines_only: bool,
    /// Baseline backlog, in seconds of `rate` (ingest publishes its counters once a second, so R1 needs
    /// several seconds of reading to be timed well).
    #[arg(long, default_value_t = 20.0)]
    pub prefill_secs: f64,
    /// Baseline backlog as a number of events (instead of `rate × prefill-secs`).
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "prefill_secs",
        requires = "baseline_mode"
    )]
    pub prefill_events: Option<u64>,
    /// Which baselines to run (repeatable or comma-separated: r0, r1, r2); all three by default.
    #[arg(
        long = "baseline",
        value_enum,
        ignore_case = true,
        value_delimiter = ',',
        requires = "baseline_mode"
    )]
    pub baseline: Vec<BaselineRun>,
    /// Latency probes: every this-many-th event of each generator, sent under the tenant
    /// `latency-probe` (0: about 50 probes/s overall).
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

impl RunArgs {
    /// Whether any baseline runs (`--baselines` or `--baselines-only`).
    pub fn any_baselines(&self) -> bool {
        self.baselines || self.baselines_only
    }

    /// Events in the baseline backlog: `--prefill-events`, else `rate × prefill-secs`.
    pub fn prefill_count(&self) -> u64 {
        self.prefill_events
            .unwrap_or((self.rate * self.prefill_secs).round() as u64)
    }

    /// The baselines to run, in order, each once (`--baseline`; all three when none is named).
    pub fn baseline_runs(&self) -> Vec<BaselineRun> {
        let mut runs = if self.baseline.is_empty() {
            vec![BaselineRun::R0, BaselineRun::R1, BaselineRun::R2]
        } else {
            self.baseline.clone()
        };
        runs.sort_unstable();
        runs.dedup();
        runs
    }

    /// Checks what clap cannot: values whose validity depends on other flags.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.generators == 0 || self.partitions <= 0 {
            anyhow::bail!("--generators and --partitions must be positive");
        }
        if !self.baselines_only && (self.rate.is_nan() || self.rate <= 0.0) {
            anyhow::bail!("--rate must be positive, got {}", self.rate);
        }
        if self.any_baselines() && self.prefill_count() == 0 {
            anyhow::bail!(
                "the baseline backlog is empty: --rate × --prefill-secs = {} × {} rounds to 0 events \
                 (or give --prefill-events N)",
                self.rate,
                self.prefill_secs
            );
        }
        Ok(())
    }
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
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, String> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map(|c| c.run)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn baselines_only_takes_a_backlog_size() {
        let a = parse(&["--baselines-only", "--prefill-events", "3000000"]).unwrap();
        assert!(a.baselines_only && !a.baselines && a.any_baselines());
        assert_eq!(a.prefill_count(), 3_000_000);
        assert_eq!(
            a.baseline_runs(),
            vec![BaselineRun::R0, BaselineRun::R1, BaselineRun::R2]
        );
        a.validate().unwrap();
    }

    #[test]
    fn baselines_only_without_a_backlog_size_names_the_flag() {
        let e = parse(&["--baselines-only"]).unwrap_err();
        assert!(e.contains("--prefill-events <N>"), "{e}");
    }

    #[test]
    fn prefill_events_must_be_positive_and_a_number() {
        let e = parse(&["--baselines-only", "--prefill-events", "0"]).unwrap_err();
        assert!(
            e.contains("--prefill-events <N>") && e.contains("'0'"),
            "{e}"
        );
        let e = parse(&["--baselines-only", "--prefill-events", "3M"]).unwrap_err();
        assert!(
            e.contains("--prefill-events <N>") && e.contains("'3M'"),
            "{e}"
        );
    }

    #[test]
    fn prefill_events_and_baseline_need_a_baseline_mode() {
        let e = parse(&["--prefill-events", "1000"]).unwrap_err();
        assert!(e.contains("--baselines"), "{e}");
        let e = parse(&["--baseline", "r2"]).unwrap_err();
        assert!(e.contains("--baselines"), "{e}");
    }

    #[test]
    fn prefill_events_conflicts_with_prefill_secs() {
        let e = parse(&[
            "--baselines",
            "--prefill-events",
            "1000",
            "--prefill-secs",
            "5",
        ])
        .unwrap_err();
        assert!(
            e.contains("--prefill-events <N>") && e.contains("--prefill-secs"),
            "{e}"
        );
    }

    #[test]
    fn baselines_and_baselines_only_exclude_each_other() {
        let e = parse(&["--baselines", "--baselines-only", "--prefill-events", "10"]).unwrap_err();
        assert!(
            e.contains("--baselines-only") && e.contains("cannot be used with"),
            "{e}"
        );
    }

    #[test]
    fn baseline_selection_is_ordered_and_deduplicated() {
        let a = parse(&[
            "--baselines-only",
            "--prefill-events",
            "10",
            "--baseline",
            "R2",
            "--baseline",
            "r0,r2",
        ])
        .unwrap();
        assert_eq!(a.baseline_runs(), vec![BaselineRun::R0, BaselineRun::R2]);
        let e = parse(&["--baselines", "--baseline", "r3"]).unwrap_err();
        assert!(
            e.contains("--baseline") && e.contains("r3") && e.contains("r0, r1, r2"),
            "{e}"
        );
    }

    #[test]
    fn the_make_drain_targets_parse() {
        // `make drain-clicks` and `make drain-mixed` (Makefile), with BASELINES=r2.
        let clicks = parse(&[
            "--baselines-only",
            "--prefill-events",
            "3000000",
            "--generators",
            "2",
            "--partitions",
            "6",
            "--baseline",
            "r2",
            "--mix",
            "click=1",
            "--tenants",
            "8",
        ])
        .unwrap();
        clicks.validate().unwrap();
        assert_eq!(clicks.baseline_runs(), vec![BaselineRun::R2]);
        let synth = clicks.shape.synth_config(1).unwrap();
        assert_eq!(
            (
                synth.mix.rank,
                synth.mix.crawl,
                synth.mix.click,
                synth.tenants
            ),
            (0, 0, 1, 8)
        );
        let mixed = parse(&[
            "--baselines-only",
            "--prefill-events",
            "3000000",
            "--mix",
            "rank=2,crawl=1,click=7",
            "--tenants",
            "1000",
        ])
        .unwrap();
        let synth = mixed.shape.synth_config(1).unwrap();
        assert_eq!(
            (
                synth.mix.rank,
                synth.mix.crawl,
                synth.mix.click,
                synth.tenants
            ),
            (2, 1, 7, 1000)
        );
        assert_eq!(mixed.prefill_count(), 3_000_000);
    }

    #[test]
    fn the_backlog_defaults_to_rate_times_prefill_secs() {
        let a = parse(&["--baselines", "--rate", "50000", "--prefill-secs", "4"]).unwrap();
        assert_eq!(a.prefill_count(), 200_000);
        let a = parse(&["--baselines", "--rate", "1", "--prefill-secs", "0.1"]).unwrap();
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains("--prefill-events N"), "{e}");
        let a = parse(&["--rate", "0"]).unwrap();
        assert!(a.validate().unwrap_err().to_string().contains("--rate"));
        // The main run's rate is unused without it.
        let a = parse(&["--baselines-only", "--prefill-events", "10", "--rate", "0"]).unwrap();
        a.validate().unwrap();
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
