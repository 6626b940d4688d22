//! A load generator: one share (`k/N`) of a run's traffic, as a process of its own (`sluice-load
//! generate`), so that generators can be spread over machines. It produces `rate / N` events/s of
//! [`Synth`] traffic (its own run id `{run}-g{k}` and seed `seed + k`) through
//! [`EventProducer::enqueue`], and talks to whoever started it in JSON lines on stdout ([`GenMsg`]):
//! a `tick` every second (sent, delivered, and the clock log below), a `sample` for every
//! `sample_every`-th event (a latency probe: sent under [`PROBE_TENANT`] with [`EventProducer::send`]
//! so its partition and offset come back), and a final `done` with its counts and own CPU and peak
//! memory.
//!
//! **Exact regeneration.** `Synth` is deterministic given seed, run id and the `now` passed to each
//! `next`. The generator takes `now` once per pacing tick and logs `(seq, now_us)` whenever it does;
//! [`regenerate`] replays that log into the very same events, so the accounting check can run the
//! independent verifier without anyone storing millions of events.

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_producers::{EventProducer, Mix, ProducerConfig, Synth, SynthConfig};
use sluice_schemas::{Encoding, Event, EventKind};

use super::procstat;

/// Pacing granularity: `now` is taken (and logged) at most once per tick.
const TICK: Duration = Duration::from_millis(10);
/// Events per round when unpaced (`rate` 0, used to pre-fill topics).
const UNPACED_BATCH: u64 = 2000;

/// `k/N`: this generator is the k-th (1-based) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub k: u32,
    pub n: u32,
}

impl FromStr for Share {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("share {s:?} is not k/N (e.g. 1/2)"))?;
        let k: u32 = k.trim().parse().map_err(|_| format!("bad k in {s:?}"))?;
        let n: u32 = n.trim().parse().map_err(|_| format!("bad N in {s:?}"))?;
        if n == 0 || k == 0 || k > n {
            return Err(format!("share {s:?}: need 1 <= k <= N"));
        }
        Ok(Share { k, n })
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The synthetic catalogue: many tenants and campaigns, Zipf-skewed keywords, links and visitors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct Shape {
    /// Relative weights of the event kinds.
    #[arg(long, default_value = "rank=2,crawl=1,click=7")]
    pub mix: String,
    /// Base seed; generator k uses seed + k.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    #[arg(long, default_value_t = 10)]
    pub campaigns_per_tenant: usize,
    #[arg(long, default_value_t = 100)]
    pub keywords_per_campaign: usize,
    #[arg(long, default_value_t = 500)]
    pub links_per_tenant: usize,
    #[arg(long, default_value_t = 8)]
    pub domains_per_campaign: usize,
    #[arg(long, default_value_t = 2000)]
    pub visitors_per_tenant: usize,
    /// occurred_at spreads over the last this many days.
    #[arg(long, default_value_t = 3)]
    pub days_back: u32,
    /// Skew of keyword, link and visitor popularity.
    #[arg(long, default_value_t = 1.1)]
    pub zipf_exponent: f64,
}

impl Default for Shape {
    /// The load driver's catalogue: every setting at its command-line default above.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let matches = Shape::augment_args(clap::Command::new("shape")).get_matches_from(["shape"]);
        Shape::from_arg_matches(&matches).expect("the command-line defaults parse")
    }
}

impl Shape {
    /// The `Synth` settings of generator `k`.
    pub fn synth_config(&self, k: u32) -> anyhow::Result<SynthConfig> {
        let mix = Mix::from_str(&self.mix).map_err(|e| anyhow::anyhow!("--mix: {e}"))?;
        Ok(SynthConfig {
            seed: self.seed.wrapping_add(u64::from(k)),
            tenants: self.tenants,
            campaigns_per_tenant: self.campaigns_per_tenant,
            keywords_per_campaign: self.keywords_per_campaign,
            links_per_tenant: self.links_per_tenant,
            domains_per_campaign: self.domains_per_campaign,
            visitors_per_tenant: self.visitors_per_tenant,
            days_back: self.days_back,
            zipf_exponent: self.zipf_exponent,
            mix,
        })
    }

    /// The same settings as command-line arguments (for a generator subprocess).
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("--mix={}", self.mix),
            format!("--seed={}", self.seed),
            format!("--tenants={}", self.tenants),
            format!("--campaigns-per-tenant={}", self.campaigns_per_tenant),
            format!("--keywords-per-campaign={}", self.keywords_per_campaign),
            format!("--links-per-tenant={}", self.links_per_tenant),
            format!("--domains-per-campaign={}", self.domains_per_campaign),
            format!("--visitors-per-tenant={}", self.visitors_per_tenant),
            format!("--days-back={}", self.days_back),
            format!("--zipf-exponent={}", self.zipf_exponent),
        ]
    }
}

/// Producer settings shared by every generator of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ProducerSettings {
    /// Record value encoding: json or bincode.
    #[arg(long, default_value = "json")]
    pub encoding: Encoding,
    /// librdkafka linger.ms. 50 rather than librdkafka's 5: at 50k events/s per generator the broker's
    /// CPU per event halved (16.8 → 8.8 CPU-s for 6 M events) with fewer, larger produce requests, and 50 ms
    /// is small beside the seconds between flushes.
    #[arg(long, default_value_t = 50)]
    pub linger_ms: u32,
    /// librdkafka batch.size (bytes).
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: u32,
    /// librdkafka compression.type.
    #[arg(long, default_value = "lz4")]
    pub compression: String,
}

impl ProducerSettings {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("--encoding={}", self.encoding.as_str()),
            format!("--linger-ms={}", self.linger_ms),
            format!("--batch-size={}", self.batch_size),
            format!("--compression={}", self.compression),
        ]
    }
}

/// Everything one generator needs.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long)]
    pub rank_topic: String,
    #[arg(long)]
    pub crawl_topic: String,
    #[arg(long)]
    pub click_topic: String,
    /// This generator's share of the run: k/N.
    #[arg(long, default_value = "1/1")]
    pub share: Share,
    /// Events/s of the whole run (this generator produces rate/N); 0 = as fast as possible.
    #[arg(long)]
    pub rate: f64,
    /// Seconds to produce for.
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Events of the whole run (this generator produces its share of them).
    #[arg(long)]
    pub count: Option<u64>,
    /// Base run id; generator k's events are "{run_id}-g{k}-{seq}".
    #[arg(long)]
    pub run_id: String,
    /// Start producing at this Unix time (ms), so that every generator starts together.
    #[arg(long)]
    pub start_at_ms: Option<i64>,
    /// Send every this-many-th event as a latency probe (under the tenant `latency-probe`, with a delivery
    /// report) and report it as a latency sample (0: none).
    #[arg(long, default_value_t = 0)]
    pub sample_every: u64,
    #[command(flatten)]
    pub shape: Shape,
    #[command(flatten)]
    pub producer: ProducerSettings,
}

impl GenerateArgs {
    /// This generator's run id.
    pub fn own_run_id(&self) -> String {
        generator_run_id(&self.run_id, self.share.k)
    }

    /// This generator's event quota, if the run has a count.
    pub fn own_count(&self) -> Option<u64> {
        self.count.map(|c| share_of(c, self.share))
    }
}

/// Generator k's run id.
pub fn generator_run_id(run_id: &str, k: u32) -> String {
    format!("{run_id}-g{k}")
}

/// Generator k's part of `total`: an even split, the first `total % N` getting one more.
pub fn share_of(total: u64, share: Share) -> u64 {
    let n = u64::from(share.n);
    total / n + u64::from(u64::from(share.k - 1) < total % n)
}

/// The tenant of the latency probes. Every `sample_every`-th event of a generator is sent under this
/// tenant, its other fields as generated, so that all probes lie in one short range of each raw table's
/// primary key (`tenant_id` leads every sort key): the ClickHouse poller then finds every visible probe
/// with one small read per table, however long the backlog (docs/BENCHMARKS.md, session 17). It is a
/// tenant like any other to Sluice; [`regenerate`] makes the same substitution, so the verifier expects
/// exactly what was sent.
pub const PROBE_TENANT: &str = "latency-probe";

/// Event `seq` of a generator as it is sent, and whether it is a latency probe (every
/// `sample_every`-th, moved to [`PROBE_TENANT`]).
pub fn as_sent(mut event: Event, seq: u64, sample_every: u64) -> (Event, bool) {
    let probe = sample_every > 0 && seq % sample_every == 0;
    if probe {
        let tenant = match &mut event {
            Event::Rank(e) => &mut e.tenant_id,
            Event::Crawl(e) => &mut e.tenant_id,
            Event::Click(e) => &mut e.tenant_id,
        };
        PROBE_TENANT.clone_into(tenant);
    }
    (event, probe)
}

/// One latency sample: a probe whose partition and offset came back in its delivery report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub generator: u32,
    pub event_id: String,
    pub kind: EventKind,
    pub partition: i32,
    pub offset: i64,
    /// Wall-clock time just before the event was handed to the producer (Unix µs).
    pub produced_us: i64,
}

/// What a generator reports at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenSummary {
    pub generator: u32,
    pub run_id: String,
    pub seed: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Events handed to the producer per kind: rank, crawl, click.
    pub per_kind: [u64; 3],
    pub samples: u64,
    pub started_us: i64,
    /// When the last event was handed to the producer.
    pub last_sent_us: i64,
    /// When the final flush returned (every delivery report in).
    pub flushed_us: i64,
    pub cpu_s: f64,
    pub vm_hwm_kb: u64,
    pub error: Option<String>,
}

/// A line on a generator's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GenMsg {
    Ready {
        generator: u32,
    },
    Tick {
        generator: u32,
        t_us: i64,
        sent: u64,
        delivered: u64,
        failed: u64,
        /// `(seq, now_us)`: from event `seq` on, `Synth::next` was called with `now_us`.
        clock: Vec<(u64, i64)>,
    },
    Sample(Sample),
    Done {
        summary: GenSummary,
        clock: Vec<(u64, i64)>,
    },
}

pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Serialized writes of whole lines to stdout (the sample tasks write concurrently).
#[derive(Debug, Clone)]
struct Emitter(Arc<Mutex<std::io::Stdout>>);

impl Emitter {
    fn emit(&self, msg: &GenMsg) {
        let Ok(line) = serde_json::to_string(msg) else {
            return;
        };
        if let Ok(out) = self.0.lock() {
            let mut out = out.lock();
            // A closed stdout means the driver is gone; the run is over either way.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

fn kind_slot(kind: EventKind) -> usize {
    match kind {
        EventKind::Rank => 0,
        EventKind::Crawl => 1,
        EventKind::Click => 2,
    }
}

/// Runs one generator to the end; everything it has to say goes to stdout.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let k = args.share.k;
    let run_id = args.own_run_id();
    let cfg = args.shape.synth_config(k)?;
    let seed = cfg.seed;
    let mut synth = Synth::new(cfg, &run_id).context("invalid synthetic traffic settings")?;
    let producer = Arc::new(
        EventProducer::new(ProducerConfig {
            brokers: args.brokers.clone(),
            rank_topic: args.rank_topic.clone(),
            crawl_topic: args.crawl_topic.clone(),
            click_topic: args.click_topic.clone(),
            encoding: args.producer.encoding,
            linger_ms: args.producer.linger_ms,
            batch_size: args.producer.batch_size,
            compression: args.producer.compression.clone(),
            ..ProducerConfig::default()
        })
        .context("cannot create the kafka producer")?,
    );
    // Sampled events are sent on this runtime so their delivery reports (partition, offset) come back.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the sample runtime")?;
    let emitter = Emitter(Arc::new(Mutex::new(std::io::stdout())));
    emitter.emit(&GenMsg::Ready { generator: k });

    if let Some(at) = args.start_at_ms {
        let wait_ms = at - Utc::now().timestamp_millis();
        if wait_ms > 0 {
            std::thread::sleep(Duration::from_millis(wait_ms as u64));
        }
    }
    let rate = args.rate / f64::from(args.share.n);
    let paced = rate > 0.0;
    let quota = args.own_count();
    let duration = args.duration_s.map(Duration::from_secs_f64);
    if !paced && quota.is_none() {
        bail!("an unpaced generator (rate 0) needs --count");
    }
    if paced && quota.is_none() && duration.is_none() {
        bail!("a paced generator needs --duration-s or --count");
    }

    let mut summary = GenSummary {
        generator: k,
        run_id: run_id.clone(),
        seed,
        started_us: now_us(),
        ..GenSummary::default()
    };
    let mut clock: Vec<(u64, i64)> = Vec::new();
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut next_tick = start + Duration::from_secs(1);
    let mut sent = 0u64;
    loop {
        let elapsed = start.elapsed();
        let time_up = duration.is_some_and(|d| elapsed >= d);
        let due_at = duration.map_or(elapsed, |d| elapsed.min(d));
        let mut due = if paced {
            (rate * due_at.as_secs_f64()).floor() as u64
        } else {
            sent + UNPACED_BATCH
        };
        if let Some(q) = quota {
            due = due.min(q);
        }
        if sent < due {
            // Whole microseconds: exactly what regeneration will pass.
            let now_micros = now_us();
            let now = DateTime::from_timestamp_micros(now_micros).context("clock out of range")?;
            clock.push((sent, now_micros));
            while sent < due {
                let (event, probe) = as_sent(synth.next(now), sent, args.sample_every);
                summary.per_kind[kind_slot(event.kind())] += 1;
                if probe {
                    let producer = Arc::clone(&producer);
                    let emitter = emitter.clone();
                    let produced_us = now_us();
                    samples.push(runtime.spawn(async move {
                        let (partition, offset) = producer.send(&event).await.ok()?;
                        emitter.emit(&GenMsg::Sample(Sample {
                            generator: k,
                            event_id: event.event_id().to_owned(),
                            kind: event.kind(),
                            partition,
                            offset,
                            produced_us,
                        }));
                        Some(())
                    }));
                } else {
                    producer
                        .enqueue(&event)
                        .with_context(|| format!("cannot publish event {}", event.event_id()))?;
                }
                sent += 1;
            }
            summary.last_sent_us = now_us();
        }
        if Instant::now() >= next_tick {
            let stats = producer.stats();
            emitter.emit(&GenMsg::Tick {
                generator: k,
                t_us: now_us(),
                sent,
                delivered: stats.delivered,
                failed: stats.failed,
                clock: std::mem::take(&mut clock),
            });
            next_tick += Duration::from_secs(1);
        }
        if time_up || quota.is_some_and(|q| sent >= q) {
            break;
        }
        if paced {
            std::thread::sleep(TICK);
        }
    }
    summary.sent = sent;
    if let Err(e) = producer.flush(Duration::from_secs(120)) {
        summary.error = Some(e.to_string());
    }
    summary.flushed_us = now_us();
    let sample_count = samples.len() as u64;
    runtime.block_on(async {
        for handle in samples {
            let _ = handle.await;
        }
    });
    summary.samples = sample_count;
    let stats = producer.stats();
    summary.delivered = stats.delivered;
    summary.failed = stats.failed;
    if stats.failed > 0 && summary.error.is_none() {
        summary.error = producer.last_delivery_error();
    }
    let (cpu_s, vm_hwm_kb) = procstat::own_usage();
    summary.cpu_s = cpu_s;
    summary.vm_hwm_kb = vm_hwm_kb;
    emitter.emit(&GenMsg::Done { summary, clock });
    Ok(())
}

/// Replays a generator's clock log into exactly the events it produced (its probes, every
/// `sample_every`-th, under [`PROBE_TENANT`]), handing each to `visit`.
pub fn regenerate(
    shape: &Shape,
    base_run_id: &str,
    k: u32,
    clock: &[(u64, i64)],
    sent: u64,
    sample_every: u64,
    mut visit: impl FnMut(Event),
) -> anyhow::Result<()> {
    let run_id = generator_run_id(base_run_id, k);
    let mut synth = Synth::new(shape.synth_config(k)?, &run_id)?;
    for (i, &(from, now_micros)) in clock.iter().enumerate() {
        let to = clock.get(i + 1).map_or(sent, |next| next.0);
        if from != synth.generated() || to < from {
            bail!(
                "clock log of generator {k} is not contiguous at entry {i} (seq {from}, generated {})",
                synth.generated()
            );
        }
        let now = DateTime::from_timestamp_micros(now_micros).context("clock out of range")?;
        for seq in from..to {
            visit(as_sent(synth.next(now), seq, sample_every).0);
        }
    }
    if synth.generated() != sent {
        bail!(
            "clock log of generator {k} covers {} events, {sent} were sent",
            synth.generated()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_evenly() {
        let shares: Vec<u64> = (1..=3).map(|k| share_of(10, Share { k, n: 3 })).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!("2/3".parse::<Share>(), Ok(Share { k: 2, n: 3 }));
        assert!("0/3".parse::<Share>().is_err());
        assert!("4/3".parse::<Share>().is_err());
        assert!("x".parse::<Share>().is_err());
    }

    #[test]
    fn the_default_shape_is_the_command_lines() {
        let shape = Shape::default();
        assert_eq!(shape.mix, "rank=2,crawl=1,click=7");
        assert_eq!(
            (
                shape.seed,
                shape.tenants,
                shape.links_per_tenant,
                shape.days_back
            ),
            (42, 1000, 500, 3)
        );
        assert_eq!(shape.zipf_exponent, 1.1);
    }

    #[test]
    fn regeneration_replays_the_clock_log() {
        let shape = Shape {
            mix: "rank=2,crawl=1,click=7".into(),
            seed: 7,
            tenants: 50,
            campaigns_per_tenant: 3,
            keywords_per_campaign: 20,
            links_per_tenant: 30,
            domains_per_campaign: 4,
            visitors_per_tenant: 100,
            days_back: 2,
            zipf_exponent: 1.1,
        };
        // What a generator does: a few ticks, each with its own `now`.
        let mut synth = Synth::new(shape.synth_config(2).unwrap(), "run-g2").unwrap();
        let mut clock = Vec::new();
        let mut produced = Vec::new();
        let mut generated = Vec::new();
        for tick in 0..5i64 {
            let now_micros = 1_780_000_000_000_000 + tick * 10_000 + 7;
            clock.push((produced.len() as u64, now_micros));
            let now = DateTime::from_timestamp_micros(now_micros).unwrap();
            for _ in 0..(tick + 3) {
                let event = synth.next(now);
                generated.push(event.clone());
                produced.push(as_sent(event, produced.len() as u64, 4).0);
            }
        }
        // 25 events: the probes are events 0, 4, …, 24, moved to the probe tenant and otherwise as
        // generated; the rest are untouched.
        assert_eq!(produced.len(), 25);
        for (seq, (sent, generated)) in produced.iter().zip(&generated).enumerate() {
            if seq % 4 == 0 {
                assert_eq!(sent.tenant_id(), PROBE_TENANT, "event {seq}");
                assert_ne!(generated.tenant_id(), PROBE_TENANT);
                assert_eq!(sent.event_id(), generated.event_id());
                assert_eq!(sent.entity(), generated.entity());
            } else {
                assert_eq!(sent, generated, "event {seq}");
            }
        }
        let mut again = Vec::new();
        regenerate(&shape, "run", 2, &clock, produced.len() as u64, 4, |e| {
            again.push(e)
        })
        .unwrap();
        assert_eq!(again, produced);
        // Without the probes' substitution the replay is the generated stream.
        let mut plain = Vec::new();
        regenerate(&shape, "run", 2, &clock, 25, 0, |e| plain.push(e)).unwrap();
        assert_eq!(plain, generated);
        assert!(regenerate(&shape, "run", 2, &clock, 3, 4, |_| {}).is_err());
    }
}
