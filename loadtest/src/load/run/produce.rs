//! The produce and drain phases of a run: the generators start together at an agreed moment and
//! produce `rate` events/s for `duration` s; once a second a [`Point`] is taken (watermarks, stored
//! offsets, ingest's consumed counter, CPU of the watched processes), printed as the progress line and
//! kept for the report; after production the same ticks go on until the backlog is durable or the
//! drain timeout passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::rates::ChangePoints;
use super::watch::{stack_watch, Watched};
use super::{say, sum_offsets, Run};
use crate::kit::kafka as kafka_util;
use crate::load::generators::{GenPlan, Generators};
use crate::load::procstat::{self, Target};
use crate::load::report::Point;

/// What the produce and drain phases observe, from the start of production (`t0`) on.
pub(super) struct Window {
    pub(super) t0: Instant,
    pub(super) generators: Generators,
    /// Ingest's consumed counter, sampled every 100 ms.
    pub(super) consumed: ChangePoints,
    pub(super) watched: Vec<Watched>,
    pub(super) machine_start: Option<(f64, f64)>,
    machine_last: Option<(f64, f64)>,
    pub(super) timeline: Vec<Point>,
    pub(super) last_point: Point,
    /// When the last tick was taken.
    last_tick: Instant,
    tick: tokio::time::Interval,
    pub(super) production_done: Option<Instant>,
    pub(super) drained_at: Option<Instant>,
    pub(super) max_lag: i64,
    drain_timeout: Duration,
}

impl Run<'_> {
    /// Starts the generators, waits for their common start, and ticks until every generator has
    /// exited.
    pub(super) async fn produce(&mut self, stack: &procstat::StackPids) -> anyhow::Result<Window> {
        let args = self.args;
        let start_at_ms = Utc::now().timestamp_millis() + 3000;
        let plan = GenPlan {
            label: "main".into(),
            brokers: args.stack.brokers.clone(),
            topics: self.names.topics.clone(),
            run_id: self.names.run_id.clone(),
            generators: args.generators,
            rate: args.rate,
            duration_s: Some(args.duration),
            count: None,
            sample_every: self.sample_every,
            start_at_ms: Some(start_at_ms),
            shape: args.shape.clone(),
            producer: args.producer.clone(),
        };
        let mut generators = Generators::spawn(&plan, &self.tracker, self.dir)?;
        generators.wait_ready(Duration::from_secs(30)).await?;
        let wait = start_at_ms - Utc::now().timestamp_millis();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let t0 = Instant::now();
        let ingest = self.ingest.as_ref().expect("ingest runs until finish");
        let consumed = ChangePoints::spawn(
            ingest.metrics_addr.clone(),
            t0,
            Duration::from_millis(100),
            Arc::clone(&self.stop_pollers),
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

        say(format!(
            "producing {} events/s for {} s with {} generator(s), {} partitions per topic, one latency sample every {} events",
            args.rate, args.duration, args.generators, args.partitions, self.sample_every
        ));
        println!(
            "[load] {:>6} {:>9} {:>11} {:>10} {:>10} {:>11} {:>12} {:>14}",
            "t(s)",
            "target/s",
            "produced/s",
            "ingest/s",
            "durable/s",
            "lag",
            "sent",
            "samples pg/ch"
        );
        let mut window = Window {
            t0,
            generators,
            consumed,
            watched,
            machine_start,
            machine_last: machine_start,
            timeline: Vec::new(),
            last_point: Point::default(),
            last_tick: t0,
            tick: tokio::time::interval_at(
                tokio::time::Instant::from_std(t0 + Duration::from_secs(1)),
                Duration::from_secs(1),
            ),
            production_done: None,
            drained_at: None,
            max_lag: 0,
            drain_timeout: Duration::from_secs_f64(
                args.drain_timeout
                    .unwrap_or((2.0 * args.duration).max(120.0)),
            ),
        };
        while window.production_done.is_none() {
            self.tick(&mut window).await?;
        }
        Ok(window)
    }

    /// Ticks until the backlog is durable (every stored offset at its high watermark, and Kafka holds
    /// every delivered event) or the drain timeout passes.
    pub(super) async fn drain(&mut self, window: &mut Window) -> anyhow::Result<()> {
        let done = window.production_done.expect("drain follows production");
        loop {
            let delivered: u64 = window.generators.state().iter().map(|s| s.delivered).sum();
            let now = window.last_tick;
            if window.last_point.lag == 0 && window.last_point.in_kafka >= delivered as i64 {
                window.drained_at = Some(now);
                return Ok(());
            }
            if now.duration_since(done) > window.drain_timeout {
                say(format!(
                    "backlog not drained within {:?}: {} records behind",
                    window.drain_timeout, window.last_point.lag
                ));
                return Ok(());
            }
            self.tick(window).await?;
        }
    }

    /// One second of the run: a point on the timeline and its progress line.
    async fn tick(&mut self, w: &mut Window) -> anyhow::Result<()> {
        w.tick.tick().await;
        self.ingest
            .as_mut()
            .expect("ingest runs until finish")
            .check_alive()?;
        let high = self.watermarks.high().await?;
        let stored = kafka_util::stored_offsets(&self.dbs.pg, &self.group).await?;
        let state = w.generators.state();
        let now = Instant::now();
        let t_s = now.duration_since(w.t0).as_secs_f64();
        for watched in &mut w.watched {
            watched.sample();
        }
        let machine_now = procstat::machine_cpu();
        let last_point = &w.last_point;
        let busy = match (w.machine_last, machine_now) {
            (Some(a), Some(b)) => (b.0 - a.0) / (t_s - last_point.t_s).max(1e-3),
            _ => 0.0,
        };
        w.machine_last = machine_now;
        let dt = (t_s - last_point.t_s).max(1e-3);
        let in_kafka = sum_offsets(&high);
        let durable = sum_offsets(&stored);
        let just_finished = w.production_done.is_none() && w.generators.all_exited();
        if just_finished {
            w.production_done = Some(now);
        }
        let timeline = &w.timeline;
        let point = Point {
            t_s,
            target_rate: if w.production_done.is_none() || just_finished {
                self.args.rate
            } else {
                0.0
            },
            sent: state.iter().map(|s| s.sent).sum(),
            in_kafka,
            consumed: w.consumed.latest(),
            durable,
            lag: kafka_util::lag(&high, &stored),
            produce_rate: (in_kafka - last_point.in_kafka) as f64 / dt,
            ingest_rate: w.consumed.recent_rate(t_s),
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
        w.max_lag = w.max_lag.max(point.lag);
        let (samples, pg_seen, ch_seen) = self.tracker.counts();
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
        w.timeline.push(point.clone());
        w.last_point = point;
        w.last_tick = now;
        if just_finished {
            say("production finished; waiting for ingest to drain the backlog");
        }
        Ok(())
    }
}
