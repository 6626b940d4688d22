//! The baselines of `sluice-load run --baselines`: a pre-filled backlog on topics of their own, drained
//! by R0 (a bare rdkafka reader, `sluice-load drain`), R1 (ingest without sinks) and R2 (ingest with
//! both sinks), each timed with its CPU per event.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::args::RunArgs;
use super::rates::{reach_time, ChangePoints, Watermarks};
use super::setup::{clean_up, ingest_setup, isolate, Names};
use super::watch::MachineBusy;
use super::{per_kind, say};
use crate::kit::kafka as kafka_util;
use crate::load::accounting;
use crate::load::drain::DrainResult;
use crate::load::generators::{GenPlan, Generators};
use crate::load::latency::Tracker;
use crate::load::procstat::{self, Target};
use crate::load::report::{Baseline, Baselines};

/// R0, R1, R2 on a pre-filled backlog.
pub(super) async fn baselines(
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
        brokers: args.stack.brokers.clone(),
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
        .arg(format!("--brokers={}", args.stack.brokers))
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
    let watermarks = Watermarks::new(&args.stack.brokers, &names.topics, args.partitions)?;
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
