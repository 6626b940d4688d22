//! Test harness: per-test isolation (topics, group, databases), the ingest child process, metrics
//! scraping, and the final comparison with the independent verifier.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_loadtest::verify::{diff, Actual, Expected, Snapshot};
use sluice_producers::synth::{Synth, SynthConfig};
use sluice_producers::{EventProducer, ProducerConfig};
use sluice_schemas::{Encoding, Event, EventKind};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub(crate) fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

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
}

impl TestStack {
    /// Creates topics (`partitions` each), a PostgreSQL database and a ClickHouse database named after
    /// the test plus a random suffix. Fails with a hint when the stack is not up.
    pub(crate) async fn new(test: &str, partitions: i32) -> anyhow::Result<TestStack> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{test}_{suffix}");
        let brokers = env_or("SLUICE_KAFKA_BROKERS", "127.0.0.1:9092");
        let topics: BTreeMap<EventKind, String> = EventKind::ALL
            .iter()
            .map(|k| (*k, format!("{name}-{}", k.default_topic())))
            .collect();
        let dead_letter_topic = format!("{name}-dead-letters");
        let mut names: Vec<&str> = topics.values().map(String::as_str).collect();
        names.push(&dead_letter_topic);
        sluice_loadtest::kafka::create_topics(&brokers, &names, partitions)
            .await
            .context("creating topics (is the stack up? run `make up`)")?;

        let base_url = env_or(
            "SLUICE_POSTGRES_URL",
            "postgres://sluice:sluice@127.0.0.1:5432/sluice",
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base_url)
            .await
            .context("connecting to postgres")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let (head, _) = base_url
            .rsplit_once('/')
            .context("postgres URL has no database path")?;
        let pg_url = format!("{head}/{name}");
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .connect(&pg_url)
            .await?;

        let ch_url = env_or("SLUICE_CLICKHOUSE_URL", "http://127.0.0.1:8123");
        let ch = clickhouse::Client::default()
            .with_url(&ch_url)
            .with_validation(false);
        ch.query(&format!("CREATE DATABASE {name}"))
            .execute()
            .await
            .context("creating clickhouse database")?;
        let ch = ch.with_database(&name);

        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
        std::fs::create_dir_all(&log_dir)?;
        Ok(TestStack {
            group: format!("{name}-group"),
            name: name.clone(),
            brokers,
            topics,
            dead_letter_topic,
            pg_url,
            pg,
            ch_url,
            ch_database: name,
            ch,
            log_dir,
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
            brokers: self.brokers.clone(),
            rank_topic: self.topic(EventKind::Rank).to_owned(),
            crawl_topic: self.topic(EventKind::Crawl).to_owned(),
            click_topic: self.topic(EventKind::Click).to_owned(),
            encoding,
            ..ProducerConfig::default()
        };
        Ok(EventProducer::new(config)?)
    }

    /// Starts `sluice-ingest` against this test's topics and databases.
    pub(crate) fn spawn_ingest(
        &self,
        label: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Ingest> {
        let metrics_port = free_port()?;
        let log = self.log_dir.join(format!("ingest-{label}.log"));
        let stderr = std::fs::File::create(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-ingest"));
        cmd.arg("run").stdout(Stdio::null()).stderr(stderr);
        self.configure(
            &mut cmd,
            &[("SLUICE_METRICS_ADDR", &format!("127.0.0.1:{metrics_port}"))],
        );
        self.configure_extra(&mut cmd, extra_env);
        let child = cmd.spawn().context("spawning sluice-ingest")?;
        Ok(Ingest {
            child,
            metrics_port,
            log,
        })
    }

    /// Runs a one-shot `sluice-ingest` subcommand with this test's settings; returns its stdout.
    pub(crate) fn run_ingest_command(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let output = self.ingest_command_output(args, extra_env)?;
        if !output.status.success() {
            bail!(
                "sluice-ingest {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs a one-shot `sluice-ingest` subcommand with this test's settings, whatever its exit status.
    pub(crate) fn ingest_command_output(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<std::process::Output> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-ingest"));
        cmd.args(args);
        self.configure(&mut cmd, extra_env);
        cmd.output().context("running sluice-ingest")
    }

    /// Points a `sluice-ingest` command at this test's topics and databases (and nothing else from the
    /// caller's environment).
    fn configure(&self, cmd: &mut Command, extra_env: &[(&str, &str)]) {
        cmd.env_clear()
            .env("PATH", env_or("PATH", "/usr/bin:/bin"))
            .env("RUST_LOG", "info")
            .env("SLUICE_KAFKA_BROKERS", &self.brokers)
            .env("SLUICE_GROUP_ID", &self.group)
            .env("SLUICE_RANK_TOPIC", self.topic(EventKind::Rank))
            .env("SLUICE_CRAWL_TOPIC", self.topic(EventKind::Crawl))
            .env("SLUICE_CLICK_TOPIC", self.topic(EventKind::Click))
            .env("SLUICE_DEAD_LETTER_TOPIC", &self.dead_letter_topic)
            .env("SLUICE_POSTGRES_URL", &self.pg_url)
            .env("SLUICE_CLICKHOUSE_URL", &self.ch_url)
            .env("SLUICE_CLICKHOUSE_DATABASE", &self.ch_database)
            .env("SLUICE_FLUSH_INTERVAL_MS", "300");
        self.configure_extra(cmd, extra_env);
    }

    fn configure_extra(&self, cmd: &mut Command, extra_env: &[(&str, &str)]) {
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
    }

    /// Waits until ingest has durably processed everything written to this test's topics.
    pub(crate) async fn wait_caught_up(&self, timeout: Duration) -> anyhow::Result<()> {
        sluice_loadtest::kafka::wait_caught_up(
            &self.brokers,
            &self.pg,
            &self.group,
            &self.topic_names(),
            timeout,
        )
        .await
        .map(|_| ())
    }

    /// Waits until the given consumer group has durably processed everything in this test's topics.
    #[allow(dead_code)] // used by tests/outage.rs, which shares this module
    pub(crate) async fn wait_group_caught_up(
        &self,
        group: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        sluice_loadtest::kafka::wait_caught_up(
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
        let (n,): (i64,) = sqlx::query_as(
            "SELECT ((SELECT coalesce(sum(clicks), 0) FROM click_daily)
                   + (SELECT coalesce(sum(checks), 0) FROM rank_daily)
                   + (SELECT coalesce(sum(pages), 0) FROM crawl_hourly))::bigint",
        )
        .fetch_one(&self.pg)
        .await?;
        Ok(n)
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
        for member in members {
            let status = member.terminate(Duration::from_secs(30))?;
            anyhow::ensure!(status.success(), "ingest exit status {status}");
        }
        self.assert_matches(&Expected::from_events(events)).await?;
        self.cleanup().await
    }

    /// Drops this test's topics and databases (called at the end of a passing test; a failing test
    /// leaves them for inspection).
    pub(crate) async fn cleanup(self) -> anyhow::Result<()> {
        let mut topics = self.topic_names();
        topics.push(&self.dead_letter_topic);
        sluice_loadtest::kafka::delete_topics(&self.brokers, &topics).await?;
        self.ch
            .query(&format!("DROP DATABASE IF EXISTS {}", self.ch_database))
            .execute()
            .await?;
        self.pg.close().await;
        let base_url = env_or(
            "SLUICE_POSTGRES_URL",
            "postgres://sluice:sluice@127.0.0.1:5432/sluice",
        );
        sluice_loadtest::pg::drop_database(&base_url, &self.name).await
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `sluice-ingest`.
pub(crate) struct Ingest {
    child: Child,
    metrics_port: u16,
    pub(crate) log: PathBuf,
}

impl Ingest {
    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(
        mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.child.id(), "TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "sluice-ingest did not exit within {timeout:?} of SIGTERM; log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no flush, no commit, no goodbye.
    pub(crate) fn crash(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Resident memory of the process, in bytes (from /proc).
    #[allow(dead_code)] // used by tests/outage.rs, which shares this module
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Still running?
    #[allow(dead_code)] // used by tests/outage.rs
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// GET `path` on the metrics/health port: (status code, body).
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status line")?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((status, body))
    }

    /// The Prometheus text exposition, as served by the running process.
    pub(crate) async fn metrics(&self) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(body)
    }

    /// Polls the exposition until `ready` holds (or the timeout passes; then returns the last one).
    pub(crate) async fn metrics_when(
        &self,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics().await?;
            if ready(&text) || Instant::now() > deadline {
                return Ok(text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// The value of one sample line `name{labels} value` in a Prometheus exposition (0 when absent).
pub(crate) fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
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

impl Traffic {
    pub(crate) fn join(self) -> anyhow::Result<Vec<Event>> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("traffic thread panicked"))?
    }
}

impl TestStack {
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
