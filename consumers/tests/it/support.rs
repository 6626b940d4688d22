//! Test harness: per-test isolation (topics, group, databases), synthetic traffic, and the final
//! comparison with the independent verifier. Starting ingest, reading its metrics and making and
//! dropping databases and topics is the kit's ([`sluice_loadtest::kit`]), shared with the load driver
//! and the demo.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
pub(crate) use sluice_loadtest::kit::metric_value;
pub(crate) use sluice_loadtest::kit::IngestProcess as Ingest;
use sluice_loadtest::kit::{Databases, IngestSetup, StackArgs};
use sluice_loadtest::verify::{diff, Actual, Expected, Snapshot};
use sluice_producers::synth::{Synth, SynthConfig};
use sluice_producers::{EventProducer, ProducerConfig};
use sluice_schemas::{Encoding, Event, EventKind};
use sqlx::PgPool;

/// The stack's PostgreSQL database, from which each test's own is created.
pub(crate) fn postgres_admin_url() -> String {
    StackArgs::from_env().postgres_url
}

/// CRC-32 (IEEE, reflected, as librdkafka's `rd_crc32`), from the `crc` crate: librdkafka's default
/// partitioner puts a key on `crc32(key) % partitions`. Not from the code under test.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC32.checksum(bytes)
}

/// The partition librdkafka's default partitioner (`consistent_random`) gives `key`.
pub(crate) fn crc32_partition(key: &[u8], partitions: i32) -> i32 {
    (crc32(key) % partitions as u32) as i32
}

/// The first short code `{prefix}-{i}` whose key `{tenant}/{code}` CRC-32 and Kafka's murmur2 put on
/// different partitions: a copy of its event sent through librdkafka's default partitioner would land
/// out of reach of the original's dedup window.
pub(crate) fn code_placed_apart(tenant: &str, prefix: &str, partitions: i32) -> String {
    (0..100)
        .map(|i| format!("{prefix}-{i}"))
        .find(|code| {
            let key = format!("{tenant}/{code}");
            crc32_partition(key.as_bytes(), partitions)
                != sluice_consumers::routing::kafka_partition(key.as_bytes(), partitions)
        })
        .expect("some key differs")
}

/// Where a test's servers are and how each party reaches them. The single-node stack
/// ([`Target::local`]) has one address per server for everyone; the cluster stack (tests/cluster/)
/// gives the test's own tooling plain internal addresses and ingest and the event producers the
/// authenticated TLS ones, with ingest's settings in a config file (`SLUICE_CONFIG`).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Kafka for the test's own tooling: topic deletion, watermarks, metadata.
    pub(crate) brokers: String,
    /// Kafka for the events: the test's producers and ingest.
    pub(crate) event_brokers: String,
    /// Extra librdkafka properties of the test's producers (TLS, SASL).
    pub(crate) producer_properties: BTreeMap<String, String>,
    /// A PostgreSQL database the test's tooling connects to and creates databases from.
    pub(crate) postgres_admin_url: String,
    /// The PostgreSQL URL ingest gets, with its database replaced by the test's.
    pub(crate) ingest_postgres_url: String,
    /// ClickHouse for the test's tooling (one server or replica).
    pub(crate) clickhouse_url: String,
    /// ClickHouse for ingest (on a cluster: every replica, comma-separated).
    pub(crate) ingest_clickhouse_url: String,
    /// The ClickHouse cluster databases are created on, if any.
    pub(crate) clickhouse_cluster: Option<String>,
    /// More environment for every `sluice-ingest` run (`SLUICE_CONFIG`, …).
    pub(crate) ingest_env: Vec<(String, String)>,
}

impl Target {
    /// The single-node stack (`make up`), from the environment `infra/stack.sh env` prints.
    pub(crate) fn local() -> Target {
        let stack = StackArgs::from_env();
        Target {
            brokers: stack.brokers.clone(),
            event_brokers: stack.brokers,
            producer_properties: BTreeMap::new(),
            postgres_admin_url: stack.postgres_url.clone(),
            ingest_postgres_url: stack.postgres_url,
            clickhouse_url: stack.clickhouse_url.clone(),
            ingest_clickhouse_url: stack.clickhouse_url,
            clickhouse_cluster: None,
            ingest_env: Vec::new(),
        }
    }
}

/// Ingest publishes its counters once a second: a wait for a counter to reach a value gets this long.
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// Everything one test owns on the shared stack.
pub(crate) struct TestStack {
    pub(crate) name: String,
    pub(crate) brokers: String,
    pub(crate) topics: BTreeMap<EventKind, String>,
    pub(crate) dead_letter_topic: String,
    pub(crate) group: String,
    pub(crate) pg_url: String,
    pub(crate) pg: PgPool,
    pub(crate) ch_url: String,
    pub(crate) ch_database: String,
    pub(crate) ch: clickhouse::Client,
    pub(crate) log_dir: PathBuf,
    pub(crate) target: Target,
    /// `sluice-ingest` pointed at this test's topics and databases.
    ingest: IngestSetup,
}

impl TestStack {
    /// Creates a PostgreSQL database, a ClickHouse database and topics (`partitions` each, through
    /// `sluice-ingest provision`) named after the test plus a random suffix. Fails with a hint when the
    /// stack is not up.
    pub(crate) async fn new(test: &str, partitions: i32) -> anyhow::Result<TestStack> {
        TestStack::on(&Target::local(), test, partitions).await
    }

    /// [`TestStack::new`] on the given servers.
    pub(crate) async fn on(
        target: &Target,
        test: &str,
        partitions: i32,
    ) -> anyhow::Result<TestStack> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{test}_{suffix}");
        let brokers = target.brokers.clone();
        let topics: BTreeMap<EventKind, String> = EventKind::ALL
            .iter()
            .map(|k| (*k, format!("{name}-{}", k.default_topic())))
            .collect();
        let dead_letter_topic = format!("{name}-dead-letters");
        let ch_url = target.clickhouse_url.clone();
        let dbs = Databases::create_on(
            &target.postgres_admin_url,
            &ch_url,
            target.clickhouse_cluster.as_deref(),
            &name,
        )
        .await?;
        let group = format!("{name}-group");
        let mut env = vec![("SLUICE_FLUSH_INTERVAL_MS".into(), "300".into())];
        env.extend(target.ingest_env.iter().cloned());
        let ingest = IngestSetup {
            binary: env!("CARGO_BIN_EXE_sluice-ingest").into(),
            brokers: target.event_brokers.clone(),
            group: group.clone(),
            topics: EventKind::ALL.map(|k| topics[&k].clone()),
            dead_letter_topic: dead_letter_topic.clone(),
            postgres_url: sluice_loadtest::kit::databases::database_url(
                &target.ingest_postgres_url,
                &name,
            )?,
            clickhouse_url: target.ingest_clickhouse_url.clone(),
            clickhouse_database: name.clone(),
            rust_log: "info".into(),
            env,
            own_process_group: false,
        };
        ingest
            .provision(partitions, partitions)
            .context("creating topics (is the stack up? run `make up`)")?;

        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
        std::fs::create_dir_all(&log_dir)?;
        Ok(TestStack {
            group,
            name: name.clone(),
            brokers,
            topics,
            dead_letter_topic,
            pg_url: dbs.pg_url,
            pg: dbs.pg,
            ch_url,
            ch_database: name,
            ch: dbs.ch,
            log_dir,
            target: target.clone(),
            ingest,
        })
    }

    pub(crate) fn topic(&self, kind: EventKind) -> &str {
        &self.topics[&kind]
    }

    /// Sets one topic-level config (`max.message.bytes`, `message.timestamp.after.max.ms`, …) on `topic`.
    pub(crate) async fn set_topic_config(
        &self,
        topic: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
        for result in admin
            .alter_configs([&alter], &AdminOptions::new())
            .await
            .context("alter_configs")?
        {
            result.map_err(|(r, e)| anyhow::anyhow!("cannot set {key} on {r:?}: {e}"))?;
        }
        Ok(())
    }

    pub(crate) fn topic_names(&self) -> Vec<&str> {
        self.topics.values().map(String::as_str).collect()
    }

    pub(crate) fn producer(&self, encoding: Encoding) -> anyhow::Result<EventProducer> {
        let config = ProducerConfig {
            brokers: self.target.event_brokers.clone(),
            extra: self.target.producer_properties.clone(),
            rank_topic: self.topic(EventKind::Rank).to_owned(),
            crawl_topic: self.topic(EventKind::Crawl).to_owned(),
            click_topic: self.topic(EventKind::Click).to_owned(),
            encoding,
            ..ProducerConfig::default()
        };
        Ok(EventProducer::new(config)?)
    }

    /// A synthetic event generator of this test's own (event ids carry the test's name).
    pub(crate) fn synth(&self, seed: u64, tenants: usize) -> anyhow::Result<Synth> {
        let config = SynthConfig {
            seed,
            tenants,
            ..SynthConfig::default()
        };
        Ok(Synth::new(config, &self.name)?)
    }

    /// Starts `sluice-ingest` against this test's topics and databases (log: `ingest-<label>.log`).
    pub(crate) fn spawn_ingest(
        &self,
        label: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Ingest> {
        let log = self.log_dir.join(format!("ingest-{label}.log"));
        self.ingest.spawn(&log, extra_env)
    }

    /// Runs a one-shot `sluice-ingest` subcommand with this test's settings; returns its stdout.
    pub(crate) fn run_ingest_command(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        self.ingest.run(args, extra_env)
    }

    /// Runs a one-shot `sluice-ingest` subcommand with this test's settings, whatever its exit status.
    pub(crate) fn ingest_command_output(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<std::process::Output> {
        self.ingest.output(args, extra_env)
    }

    /// Waits until ingest has durably processed everything written to this test's topics.
    pub(crate) async fn wait_caught_up(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_group_caught_up(&self.group, timeout).await
    }

    /// [`wait_caught_up`](Self::wait_caught_up), failing with ingest's log if it exited meanwhile.
    pub(crate) async fn wait_caught_up_alive(
        &self,
        ingest: &mut Ingest,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let caught_up = self.wait_caught_up(timeout).await;
        anyhow::ensure!(ingest.alive(), "ingest exited; log:\n{}", ingest.log_text());
        caught_up
    }

    /// Waits until the given consumer group has durably processed everything in this test's topics.
    pub(crate) async fn wait_group_caught_up(
        &self,
        group: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        sluice_loadtest::kit::kafka::wait_caught_up(
            &self.brokers,
            &self.pg,
            group,
            &self.topic_names(),
            timeout,
        )
        .await
        .map(|_| ())
    }

    /// Events counted in the PostgreSQL aggregates: sum(clicks) + sum(checks) + sum(pages).
    #[allow(dead_code)] // used by tests/outage.rs, which shares this module
    pub(crate) async fn events_in_postgres(&self) -> anyhow::Result<i64> {
        sluice_loadtest::kit::databases::events_in_postgres(&self.pg).await
    }

    /// Reads both databases and demands exact equality with the expected snapshot.
    pub(crate) async fn assert_matches(&self, expected: &Snapshot) -> anyhow::Result<()> {
        let actual = Actual::read(&self.pg, &self.ch).await?;
        let differences = diff(expected, &actual, 10);
        if !differences.is_empty() {
            bail!(
                "databases differ from the expected aggregates:\n{}",
                differences.join("\n")
            );
        }
        Ok(())
    }

    /// The usual ending: SIGTERM every member (each must exit 0), exact equality with the events, then
    /// cleanup.
    pub(crate) async fn finish(self, members: Vec<Ingest>, events: &[Event]) -> anyhow::Result<()> {
        self.stop_and_compare(members, events).await?;
        self.cleanup().await
    }

    /// SIGTERM every member (each must exit 0), then exact equality with the events.
    pub(crate) async fn stop_and_compare(
        &self,
        members: Vec<Ingest>,
        events: &[Event],
    ) -> anyhow::Result<()> {
        for member in members {
            let status = member.terminate(Duration::from_secs(30))?;
            anyhow::ensure!(status.success(), "ingest exit status {status}");
        }
        self.assert_matches(&Expected::from_events(events)).await
    }

    /// Drops this test's topics and databases (called at the end of a passing test; a failing test
    /// leaves them for inspection).
    pub(crate) async fn cleanup(self) -> anyhow::Result<()> {
        let mut topics = self.topic_names();
        topics.push(&self.dead_letter_topic);
        sluice_loadtest::kit::kafka::delete_topics(&self.brokers, &topics).await?;
        let dbs = Databases {
            name: self.name.clone(),
            pg_url: self.pg_url.clone(),
            pg: self.pg.clone(),
            clickhouse_url: self.ch_url.clone(),
            ch: self.ch.clone(),
            clickhouse_cluster: self.target.clickhouse_cluster.clone(),
        };
        dbs.drop(&self.target.postgres_admin_url).await
    }
}

/// Background publisher of synthetic traffic; `join` returns every event it published, re-sends
/// included, in publish order.
pub(crate) struct Traffic {
    thread: std::thread::JoinHandle<anyhow::Result<Vec<Event>>>,
}

/// How to publish.
#[derive(Clone, Copy)]
pub(crate) struct TrafficShape {
    pub(crate) seed: u64,
    /// New events per second.
    pub(crate) rate: u32,
    pub(crate) new_events: usize,
    /// Extra copies of each event (each re-sent later, interleaved with new ones): a range `min..=max`.
    pub(crate) resends: (u32, u32),
}

impl TrafficShape {
    /// Seeded traffic: 1,000 new events at 1,000/s, each re-sent at most once, until told otherwise.
    pub(crate) fn seed(seed: u64) -> TrafficShape {
        TrafficShape {
            seed,
            rate: 1000,
            new_events: 1000,
            resends: (0, 1),
        }
    }

    pub(crate) fn rate(self, rate: u32) -> TrafficShape {
        TrafficShape { rate, ..self }
    }

    pub(crate) fn events(self, new_events: usize) -> TrafficShape {
        TrafficShape { new_events, ..self }
    }

    /// Each event sent again `min..=max` more times.
    pub(crate) fn resends(self, min: u32, max: u32) -> TrafficShape {
        TrafficShape {
            resends: (min, max),
            ..self
        }
    }
}

impl Traffic {
    pub(crate) fn join(self) -> anyhow::Result<Vec<Event>> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("traffic thread panicked"))?
    }
}

impl TestStack {
    /// Publishes and waits until every event is delivered; returns them, re-sends included.
    pub(crate) fn publish(&self, shape: TrafficShape) -> anyhow::Result<Vec<Event>> {
        self.start_traffic(shape)?.join()
    }

    /// Starts publishing in a background thread (JSON and bincode alternating).
    pub(crate) fn start_traffic(&self, shape: TrafficShape) -> anyhow::Result<Traffic> {
        use rand::{Rng, SeedableRng};
        let json = self.producer(Encoding::Json)?;
        let bincode = self.producer(Encoding::Bincode)?;
        let run_id = format!("{}-{}", self.name, shape.seed);
        let thread = std::thread::spawn(move || -> anyhow::Result<Vec<Event>> {
            let mut synth = Synth::new(
                SynthConfig {
                    seed: shape.seed,
                    tenants: 6,
                    days_back: 2,
                    ..SynthConfig::default()
                },
                &run_id,
            )?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(shape.seed);
            let mut published: Vec<Event> = Vec::new();
            let send = |event: Event, published: &mut Vec<Event>| -> anyhow::Result<()> {
                if published.len() % 2 == 0 {
                    json.enqueue(&event)?;
                } else {
                    bincode.enqueue(&event)?;
                }
                published.push(event);
                Ok(())
            };
            // (due once this many new events were made, event): re-sends come 1..400 new events later.
            let mut resends: Vec<(usize, Event)> = Vec::new();
            let per_tick = (shape.rate as usize / 100).max(1);
            let started = Instant::now();
            let mut made = 0usize;
            while made < shape.new_events {
                for _ in 0..per_tick.min(shape.new_events - made) {
                    let event = synth.next(chrono::Utc::now());
                    for _ in 0..rng.random_range(shape.resends.0..=shape.resends.1) {
                        resends.push((made + rng.random_range(1..400), event.clone()));
                    }
                    send(event, &mut published)?;
                    made += 1;
                    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut resends)
                        .into_iter()
                        .partition(|(at, _)| *at <= made);
                    resends = later;
                    for (_, event) in due {
                        send(event, &mut published)?;
                    }
                }
                // 100 ticks a second, each `per_tick` new events.
                let pace = Duration::from_millis(10) * (made / per_tick) as u32;
                if let Some(wait) = pace.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            for (_, event) in std::mem::take(&mut resends) {
                send(event, &mut published)?;
            }
            json.flush(Duration::from_secs(60))?;
            bincode.flush(Duration::from_secs(60))?;
            let failed = json.stats().failed + bincode.stats().failed;
            if failed > 0 {
                bail!("{failed} deliveries failed");
            }
            Ok(published)
        });
        Ok(Traffic { thread })
    }
}

/// Hand-written corner-case events (tenant `corner`, entity `edge`), shared by the tests that add them
/// to synthetic traffic.
pub(crate) mod corner {
    use chrono::{DateTime, Utc};
    use sluice_schemas::{ClickEvent, CrawlEvent, Event, RankEvent};

    pub(crate) fn rank(id: &str, at: DateTime<Utc>, keyword: &str, position: Option<i32>) -> Event {
        Event::Rank(RankEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: "corner".into(),
            occurred_at: at,
            campaign_id: "edge".into(),
            keyword: keyword.into(),
            geo: "gb".into(),
            engine: "bing".into(),
            device: "desktop".into(),
            url: None,
            position,
        })
    }

    pub(crate) fn crawl(id: &str, at: DateTime<Utc>, url: &str, status_code: i32) -> Event {
        Event::Crawl(CrawlEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: "corner".into(),
            occurred_at: at,
            campaign_id: "edge".into(),
            url: url.into(),
            status_code,
            fetch_ms: 70,
            bytes: 1100,
            content_hash: None,
        })
    }

    pub(crate) fn click(id: &str, at: DateTime<Utc>, visitor: Option<&str>) -> Event {
        Event::Click(ClickEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: "corner".into(),
            occurred_at: at,
            short_code: "edge".into(),
            referrer: None,
            country: None,
            user_agent: None,
            visitor_id: visitor.map(str::to_owned),
        })
    }
}
