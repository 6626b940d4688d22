//! The outcome of a load run, as data ([`Report`], written to `report.json`) and as prose
//! ([`Report::markdown`], `report.md`). Every figure in the Markdown comes from the same struct, and
//! the Markdown says how each was measured.

use std::fmt::Write as _;

use serde::Serialize;

use super::accounting::{FullCheck, Totals};
use super::generate::{ProducerSettings, Shape};
use super::latency::{Percentiles, PollCost};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_gib: f64,
    pub loadavg_before: [f64; 3],
    pub loadavg_after: [f64; 3],
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub rate: f64,
    pub duration_s: f64,
    pub generators: u32,
    pub partitions: i32,
    pub sample_every: u64,
    pub shape: Shape,
    pub producer: ProducerSettings,
    /// `SLUICE_*` overrides passed to ingest (`--ingest-env`).
    pub ingest_env: Vec<(String, String)>,
    pub topics: Vec<String>,
    pub postgres_database: String,
    pub clickhouse_database: String,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    /// Seconds since production started.
    pub t_s: f64,
    /// The target rate at that moment (0 once production has ended).
    pub target_rate: f64,
    /// Events the generators had handed to their producers.
    pub sent: u64,
    /// Records in the run's topics (sum of high watermarks).
    pub in_kafka: i64,
    /// Records ingest had read (its `sluice_ingest_records_consumed_total`).
    pub consumed: f64,
    /// Records durably processed (sum of stored offsets).
    pub durable: i64,
    /// High watermarks − stored offsets.
    pub lag: i64,
    /// Rate of `in_kafka` over the last second.
    pub produce_rate: f64,
    /// Rate of `consumed` between its last two changes (ingest publishes it once a second).
    pub ingest_rate: f64,
    /// Rate of `durable` over the last second (steps at each flush).
    pub durable_rate: f64,
    /// Rate of `durable` over the last five seconds.
    pub durable_rate_5s: f64,
    /// Machine-wide busy CPU over the last second, in cores.
    pub machine_busy_cores: f64,
}

/// CPU and memory of one process (or process family) over the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessFigure {
    pub name: String,
    pub pids: String,
    pub cpu_s: f64,
    /// `cpu_s` ÷ window length: average cores used.
    pub cores: f64,
    /// Highest resident memory seen (1 Hz samples; a family: private memory summed, shared memory once).
    pub peak_rss_mib: f64,
    /// `VmHWM` where it is meaningful (processes started by the run).
    pub vm_hwm_mib: Option<f64>,
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Produce {
    pub target_rate: f64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub per_kind: [u64; 3],
    /// Seconds from the first generator's start to the last event handed over.
    pub seconds: f64,
    /// delivered ÷ seconds.
    pub achieved_rate: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestFigures {
    pub consumed: f64,
    /// Records read per second while the generators were producing.
    pub rate_while_producing: f64,
    /// Highest rate over five consecutive publications (≈ 5 s) of the consumed counter.
    pub peak_rate: f64,
    /// Events ÷ (time from production start to everything durable).
    pub end_to_end_rate: f64,
    pub drained: bool,
    /// Seconds from the end of production until the lag was 0.
    pub drain_s: f64,
    pub max_lag: i64,
    pub final_lag: i64,
    pub exit_status: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub postgres: Percentiles,
    pub clickhouse: Percentiles,
    pub pg_poll_ms: u64,
    pub ch_poll_ms: u64,
    pub poll_cost: PollCost,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Baseline {
    pub name: String,
    pub what: String,
    pub events: u64,
    /// The timing window: first record (R0) or partition assignment (R1, R2) to the end.
    pub seconds: f64,
    /// events ÷ `seconds`.
    pub rate: f64,
    /// Ingest's process start (spawn) to every partition assigned (R1, R2): group join and, for R2,
    /// the migrations into fresh databases.
    pub startup_seconds: Option<f64>,
    /// events ÷ (`startup_seconds` + `seconds`): from process start to the end (R1, R2).
    pub rate_from_start: Option<f64>,
    /// Consumer process CPU µs per event.
    pub consumer_cpu_us_per_event: f64,
    pub postgres_cpu_us_per_event: Option<f64>,
    pub clickhouse_cpu_us_per_event: Option<f64>,
    pub kafka_cpu_us_per_event: f64,
    /// Whole machine, average busy cores over the window (everything, other users included).
    pub machine_busy_cores: f64,
    /// Consumer + PostgreSQL + ClickHouse.
    pub total_cpu_us_per_event: f64,
    /// The consumer process's `VmHWM` (peak resident memory) at the end of the window.
    pub consumer_peak_rss_mib: Option<f64>,
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Baselines {
    pub prefill_events: u64,
    pub prefill_seconds: f64,
    /// The backlog's topics, and the PostgreSQL and ClickHouse database R2 writes.
    pub topics: Vec<String>,
    pub database: String,
    /// Ingest's effective `max_buffered_bytes` (`sluice-ingest config`, with `--ingest-env`).
    pub ingest_max_buffered_bytes: Option<u64>,
    pub runs: Vec<Baseline>,
    /// `None` when R0 or the other run was not selected.
    pub r1_over_r0: Option<f64>,
    pub r2_over_r0: Option<f64>,
    pub r2_totals: Option<Totals>,
    /// What failed: an R2 accounting mismatch, an unclean ingest exit.
    pub problems: Vec<String>,
}

impl Baselines {
    /// Appends the Markdown section of the baselines.
    pub fn markdown(&self, md: &mut String) {
        let b = self;
        let names: Vec<&str> = b.runs.iter().map(|r| r.name.as_str()).collect();
        let _ = writeln!(
            md,
            "The baseline topics were pre-filled with {} events (as fast as the generators could: {:.1} s), \
             then drained by {}, each with a fresh consumer group (R2 into fresh databases). \
             `seconds` and `events/s` count from the first record read (R0) or from partition assignment (R1, R2) \
             to the last record read (R0, R1) or to the moment every stored offset reached the high watermark \
             (R2: everything durable, then the totals check); `from start` counts from ingest's process start \
             (group join, and R2's migrations into the fresh databases, included). \
             CPU is `/proc/<pid>/stat` utime+stime over the `seconds` window; peak RSS is the consumer's `VmHWM`.\n",
            b.prefill_events,
            b.prefill_seconds,
            names.join(", ")
        );
        let _ = writeln!(
            md,
            "| run | what | events | seconds | events/s | from start: s | from start: events/s | consumer CPU µs/event | PostgreSQL µs/event | ClickHouse µs/event | total µs/event | broker µs/event | machine busy (cores) | consumer peak RSS MiB |"
        );
        let _ = writeln!(
            md,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let opt = |v: Option<f64>, decimals: usize| {
            v.map_or("–".to_owned(), |v| format!("{v:.decimals$}"))
        };
        for r in &b.runs {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                r.name,
                r.what,
                r.events,
                r.seconds,
                r.rate,
                opt(r.startup_seconds.map(|s| s + r.seconds), 2),
                opt(r.rate_from_start, 0),
                r.consumer_cpu_us_per_event,
                opt(r.postgres_cpu_us_per_event, 2),
                opt(r.clickhouse_cpu_us_per_event, 2),
                r.total_cpu_us_per_event,
                r.kafka_cpu_us_per_event,
                r.machine_busy_cores,
                opt(r.consumer_peak_rss_mib, 0)
            );
        }
        md.push('\n');
        let ratios: Vec<String> = [("R1/R0", b.r1_over_r0), ("R2/R0", b.r2_over_r0)]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name} = **{v:.2}**")))
            .collect();
        if !ratios.is_empty() {
            let _ = writeln!(md, "{}.", ratios.join(", "));
        }
        if let Some(budget) = b.ingest_max_buffered_bytes {
            let mib = budget as f64 / 1024.0 / 1024.0;
            let per_run: Vec<String> = b
                .runs
                .iter()
                .filter(|r| r.name != "R0")
                .filter_map(|r| {
                    r.consumer_peak_rss_mib
                        .map(|rss| format!("{} {:.2}", r.name, rss / mib))
                })
                .collect();
            let _ = writeln!(
                md,
                "Ingest `max_buffered_bytes` = {budget} ({mib:.0} MiB); ingest peak RSS ÷ budget: {}.",
                if per_run.is_empty() {
                    "–".to_owned()
                } else {
                    per_run.join(", ")
                }
            );
        }
        for r in b.runs.iter().filter(|r| !r.note.is_empty()) {
            let _ = writeln!(md, "{}: {}", r.name, r.note);
        }
        if let Some(t) = &b.r2_totals {
            let _ = writeln!(
                md,
                "R2 accounting: published {}; PostgreSQL {}; ClickHouse {}, crawl_fetches {} — {}.",
                kinds(&t.published),
                kinds(&t.postgres),
                kinds(&t.clickhouse),
                t.crawl_fetches,
                if t.ok { "exact" } else { "MISMATCH" }
            );
        }
        md.push('\n');
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Accounting {
    pub totals: Option<Totals>,
    pub full: Option<FullCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub started_at: String,
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub baselines: Option<Baselines>,
    pub produce: Produce,
    pub ingest: IngestFigures,
    pub latency: Latency,
    /// Window the CPU figures cover: production start → drained.
    pub window_s: f64,
    pub machine_busy_cores: f64,
    pub processes: Vec<ProcessFigure>,
    pub accounting: Accounting,
    pub ok: bool,
    pub problems: Vec<String>,
    pub timeline: Vec<Point>,
}

fn kinds(v: &[u64; 3]) -> String {
    format!("rank {} / crawl {} / click {}", v[0], v[1], v[2])
}

/// The top of a report: title, verdict, command line, problems.
fn head(
    md: &mut String,
    title: &str,
    ok: bool,
    started_at: &str,
    command: &str,
    problems: &[String],
) {
    let _ = writeln!(md, "# {title}\n");
    let _ = writeln!(
        md,
        "**{}** — started {started_at} — `{command}`\n",
        if ok { "PASS" } else { "FAIL" },
    );
    for p in problems {
        let _ = writeln!(md, "- problem: {p}");
    }
    if !problems.is_empty() {
        md.push('\n');
    }
}

/// What the "Machine and settings" section says beyond the machine: `traffic` (the run's own words for
/// what was produced), then the generators, partitions, producer, catalogue, ingest overrides and where
/// it all went.
struct SettingsView<'a> {
    traffic: String,
    generators: u32,
    partitions: i32,
    shape: &'a Shape,
    producer: &'a ProducerSettings,
    ingest_env: &'a [(String, String)],
    topics: &'a [String],
    postgres_database: &'a str,
    clickhouse_database: &'a str,
}

fn machine_and_settings(md: &mut String, m: &Machine, s: &SettingsView<'_>) {
    let _ = writeln!(md, "## Machine and settings\n");
    let _ = writeln!(
        md,
        "- {} × {} CPU, {:.1} GiB RAM, kernel {}; load average before {:.2} {:.2} {:.2}, after {:.2} {:.2} {:.2} \
         (the machine may be shared: other work shows up here and in `machine busy`)",
        m.nproc, m.cpu_model, m.mem_total_gib, m.kernel,
        m.loadavg_before[0], m.loadavg_before[1], m.loadavg_before[2],
        m.loadavg_after[0], m.loadavg_after[1], m.loadavg_after[2]
    );
    let _ = writeln!(
        md,
        "- {}, {} generator process(es), {} partitions per topic, mix `{}`, \
         encoding {}, producer linger.ms={} batch.size={} compression={}",
        s.traffic,
        s.generators,
        s.partitions,
        s.shape.mix,
        s.producer.encoding.as_str(),
        s.producer.linger_ms,
        s.producer.batch_size,
        s.producer.compression
    );
    let _ = writeln!(
        md,
        "- synthetic catalogue: {} tenants × {} campaigns × {} keywords, {} links and {} visitors per tenant, \
         {} domains per campaign, Zipf exponent {}, occurred_at over the last {} days, base seed {}",
        s.shape.tenants, s.shape.campaigns_per_tenant, s.shape.keywords_per_campaign,
        s.shape.links_per_tenant, s.shape.visitors_per_tenant, s.shape.domains_per_campaign,
        s.shape.zipf_exponent, s.shape.days_back, s.shape.seed
    );
    let env = if s.ingest_env.is_empty() {
        "none (ingest defaults)".to_owned()
    } else {
        s.ingest_env
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(md, "- ingest overrides: {env}");
    let _ = writeln!(
        md,
        "- topics {}; PostgreSQL database `{}`, ClickHouse database `{}`\n",
        s.topics.join(", "),
        s.postgres_database,
        s.clickhouse_database
    );
}

/// The outcome of `sluice-load run --baselines-only`: the drain baselines alone on a pre-filled backlog
/// (`report.json`, and [`DrainReport::markdown`] for `report.md`).
#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub id: String,
    pub started_at: String,
    pub command: String,
    pub machine: Machine,
    pub generators: u32,
    pub partitions: i32,
    pub shape: Shape,
    pub producer: ProducerSettings,
    /// `SLUICE_*` overrides passed to ingest (`--ingest-env`).
    pub ingest_env: Vec<(String, String)>,
    pub baselines: Baselines,
    pub ok: bool,
    pub problems: Vec<String>,
}

impl DrainReport {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let b = &self.baselines;
        head(
            &mut md,
            &format!("Sluice drain baselines {}", self.id),
            self.ok,
            &self.started_at,
            &self.command,
            &self.problems,
        );
        machine_and_settings(
            &mut md,
            &self.machine,
            &SettingsView {
                traffic: format!("a backlog of {} events", b.prefill_events),
                generators: self.generators,
                partitions: self.partitions,
                shape: &self.shape,
                producer: &self.producer,
                ingest_env: &self.ingest_env,
                topics: &b.topics,
                postgres_database: &b.database,
                clickhouse_database: &b.database,
            },
        );
        let _ = writeln!(md, "## Drain baselines\n");
        b.markdown(&mut md);
        md
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let s = &self.settings;
        head(
            &mut md,
            &format!("Sluice load run {}", self.id),
            self.ok,
            &self.started_at,
            &self.command,
            &self.problems,
        );
        machine_and_settings(
            &mut md,
            &self.machine,
            &SettingsView {
                traffic: format!("target {} events/s for {} s", s.rate, s.duration_s),
                generators: s.generators,
                partitions: s.partitions,
                shape: &s.shape,
                producer: &s.producer,
                ingest_env: &s.ingest_env,
                topics: &s.topics,
                postgres_database: &s.postgres_database,
                clickhouse_database: &s.clickhouse_database,
            },
        );

        if let Some(b) = &self.baselines {
            let _ = writeln!(md, "## Baselines (same machine, same run)\n");
            b.markdown(&mut md);
        }

        let p = &self.produce;
        let i = &self.ingest;
        let _ = writeln!(md, "## Throughput\n");
        let _ = writeln!(md, "| figure | value |\n|---|---:|");
        let figures = [
            (
                "target produce rate",
                format!("{:.0} events/s", p.target_rate),
            ),
            (
                "achieved produce rate (delivered ÷ production time)",
                format!("{:.0} events/s", p.achieved_rate),
            ),
            (
                "events sent / delivered / failed",
                format!("{} / {} / {}", p.sent, p.delivered, p.failed),
            ),
            ("per kind", kinds(&p.per_kind)),
            (
                "ingest rate while producing (records read)",
                format!("{:.0} events/s", i.rate_while_producing),
            ),
            (
                "ingest peak read rate (over ≈5 s)",
                format!("{:.0} events/s", i.peak_rate),
            ),
            (
                "end-to-end rate (events ÷ start → all durable)",
                format!("{:.0} events/s", i.end_to_end_rate),
            ),
            (
                "max lag / final lag (high watermarks − stored offsets)",
                format!("{} / {} records", i.max_lag, i.final_lag),
            ),
            (
                "drained after production ended",
                format!(
                    "{} in {:.1} s",
                    if i.drained { "yes" } else { "NO" },
                    i.drain_s
                ),
            ),
            ("ingest exit on SIGTERM", i.exit_status.clone()),
        ];
        for (figure, value) in figures {
            let _ = writeln!(md, "| {figure} | {value} |");
        }
        let _ = writeln!(md, "\n![rates](rates.png)\n");

        let l = &self.latency;
        let _ = writeln!(md, "## Event → queryable latency\n");
        let _ = writeln!(
            md,
            "| store | samples seen | p50 ms | p95 ms | p99 ms | max ms | mean ms |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for (name, q) in [("PostgreSQL", &l.postgres), ("ClickHouse", &l.clickhouse)] {
            let _ = writeln!(
                md,
                "| {name} | {} of {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                q.count, l.samples, q.p50_ms, q.p95_ms, q.p99_ms, q.max_ms, q.mean_ms
            );
        }
        let _ = writeln!(
            md,
            "\nMethod: every {}-th event of each generator is a latency probe: it is sent under the tenant `latency-probe` \
             (its other fields as generated; the accounting expects it there) with a delivery report, which returns its \
             partition and offset; its produce time is the generator's wall clock just before the hand-over to the producer. \
             **PostgreSQL**: an event's aggregates become visible in the transaction that moves its partition's \
             `sluice_offsets.next_offset` past its offset, so a poller reads the group's stored offsets every {} ms and \
             stamps every sample its partition has passed. **ClickHouse**: every \
             {} ms (or 10 × the last poll's lookup time, if longer: at most 10 % busy) one statement reads, per raw table, \
             the probe tenant's rows at or after each partition's oldest pending probe (`tenant_id` leads the sort key, so \
             the primary index narrows the read to the probes' granules) and stamps every pending probe it finds. \
             A stamp is when the poll that first saw the event returned: an \
             upper bound, late by at most one poll period plus the query time. Generators and pollers share this \
             machine's clock. The pollers' own load: {} PostgreSQL reads ({:.1} s of wall time in total) and {} \
             ClickHouse lookups ({:.1} s).\n",
            self.settings.sample_every, l.pg_poll_ms, l.ch_poll_ms,
            l.poll_cost.pg_queries, l.poll_cost.pg_seconds, l.poll_cost.ch_queries, l.poll_cost.ch_seconds
        );

        let _ = writeln!(md, "## CPU and memory per process\n");
        let _ = writeln!(
            md,
            "Window: production start → drained ({:.1} s). Whole machine busy: {:.2} cores on average.\n",
            self.window_s, self.machine_busy_cores
        );
        let _ = writeln!(
            md,
            "| process | pids | CPU s | cores | peak RSS MiB | VmHWM MiB | note |\n|---|---|---:|---:|---:|---:|---|"
        );
        for f in &self.processes {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.2} | {:.0} | {} | {} |",
                f.name,
                f.pids,
                f.cpu_s,
                f.cores,
                f.peak_rss_mib,
                f.vm_hwm_mib.map_or("–".to_owned(), |v| format!("{v:.0}")),
                f.note
            );
        }
        md.push('\n');

        let _ = writeln!(md, "## Accounting: every published event exactly once\n");
        match &self.accounting.totals {
            Some(t) => {
                let _ = writeln!(
                    md,
                    "- totals — published (distinct event ids): {}; PostgreSQL `sum(checks)`/`sum(pages)`/`sum(clicks)`: {}; \
                     ClickHouse `count()` FINAL: {}; crawls in `crawl_fetches` (`count()` FINAL): {} — **{}**",
                    kinds(&t.published),
                    kinds(&t.postgres),
                    kinds(&t.clickhouse),
                    t.crawl_fetches,
                    if t.ok { "exact" } else { "MISMATCH" }
                );
            }
            None => {
                let _ = writeln!(md, "- totals: not checked");
            }
        }
        match &self.accounting.full {
            Some(f) => {
                let _ = writeln!(
                    md,
                    "- full verifier — the {} events regenerated from the generators' seeds, run ids and clock logs, folded \
                     by `Expected::from_events` and compared row by row with every PostgreSQL aggregate and every ClickHouse \
                     raw row (`FINAL`): **{}** ({:.0} s)",
                    f.events,
                    if f.ok { "identical" } else { "DIFFERENT" },
                    f.seconds
                );
                for d in &f.differences {
                    let _ = writeln!(md, "  - {d}");
                }
            }
            None => {
                let _ = writeln!(
                    md,
                    "- full verifier: not run (`--verify totals`, or the backlog did not drain)"
                );
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r2_only() -> Baselines {
        Baselines {
            prefill_events: 3_000_000,
            prefill_seconds: 7.5,
            topics: vec!["t".into()],
            database: "d".into(),
            ingest_max_buffered_bytes: Some(512 * 1024 * 1024),
            runs: vec![Baseline {
                name: "R2".into(),
                what: "ingest".into(),
                events: 3_000_000,
                seconds: 10.0,
                rate: 300_000.0,
                startup_seconds: Some(2.0),
                rate_from_start: Some(250_000.0),
                consumer_cpu_us_per_event: 2.0,
                postgres_cpu_us_per_event: Some(2.5),
                clickhouse_cpu_us_per_event: Some(3.0),
                kafka_cpu_us_per_event: 0.1,
                machine_busy_cores: 1.9,
                total_cpu_us_per_event: 7.5,
                consumer_peak_rss_mib: Some(768.0),
                note: String::new(),
            }],
            r1_over_r0: None,
            r2_over_r0: None,
            r2_totals: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn baselines_markdown_gives_the_start_rate_cpu_and_memory_budget() {
        let mut md = String::new();
        r2_only().markdown(&mut md);
        assert!(
            md.contains(
                "| R2 | ingest | 3000000 | 10.00 | 300000 | 12.00 | 250000 | 2.00 | 2.50 | 3.00 | 7.50 | 0.10 | 1.90 | 768 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Ingest `max_buffered_bytes` = 536870912 (512 MiB); ingest peak RSS ÷ budget: R2 1.50."
            ),
            "{md}"
        );
        assert!(md.contains("then drained by R2,"), "{md}");
        // Without R0 there is no ratio to give.
        assert!(!md.contains("R2/R0"), "{md}");
    }
}
