//! The ClickHouse sink on the cluster stack (`make up-cluster`: two replicas of one shard coordinated by
//! ZooKeeper, cluster `sluice`, HTTPS on 18443/28443 with the stack's CA, plain HTTP on 18123/28123 for
//! checking): the migrations create every table on both replicas, replicated; rows written over HTTPS
//! with the CA file and the stack's credentials give the same exact answers on either replica; the same
//! blocks written to both replicas (a retry after a replica failure) count once; and a sink whose first
//! URL is down writes through the next one. Each test has its own database, dropped `ON CLUSTER` when it
//! passes. The cluster is shared with other tests that kill and restart its servers, so every call
//! is retried while it fails transiently (for up to 90 s, as ingest's flush would), which the
//! properties checked here must survive anyway. The stack's state directory is `$SLUICE_CLUSTER_STATE_DIR` (default `.state-cluster` at the
//! repository's root).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, TimeDelta, Utc};
use clickhouse::Client;
use sluice_aggregator::PartitionBatch;
use sluice_schemas::{ClickEvent, CrawlEvent, Event, RankEvent};
use sluice_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use sluice_sinks::SinkError;

const HTTPS: [&str; 2] = ["https://localhost:18443", "https://localhost:28443"];
const HTTP: [&str; 2] = ["http://127.0.0.1:18123", "http://127.0.0.1:28123"];
const CLUSTER: &str = "sluice";

/// Runs `op` until it succeeds, retrying (for up to 90 s) the errors `retry` accepts.
async fn patiently<T, E: Display, Fut>(
    what: &str,
    retry: fn(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> anyhow::Result<T>
where
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if retry(&e) && Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => bail!("{what}: {e}"),
        }
    }
}

/// The sink's transient errors are retried (as the flush does), nothing else.
fn transient(e: &SinkError) -> bool {
    e.is_transient()
}

/// Any error of a checking query is retried (a replica restarting, ZooKeeper away).
fn any(_: &clickhouse::error::Error) -> bool {
    true
}

fn state_dir() -> PathBuf {
    std::env::var_os("SLUICE_CLUSTER_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.state-cluster"))
        })
}

fn password() -> anyhow::Result<String> {
    let path = state_dir().join("secrets/clickhouse-password");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is the cluster up? make up-cluster)",
            path.display()
        )
    })?;
    Ok(text.trim_end().to_owned())
}

/// A database of its own on the cluster.
struct ClusterDb {
    name: String,
    password: String,
}

impl ClusterDb {
    /// Waits (up to 60 s) for both replicas to answer, then names a new database.
    async fn new(test: &str) -> anyhow::Result<ClusterDb> {
        let password = password()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        for url in HTTP {
            let admin = plain(url, &password);
            while let Err(e) = admin.query("SELECT 1").execute().await {
                ensure!(Instant::now() < deadline, "replica {url} is not up: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Ok(ClusterDb {
            name: format!("{test}_{suffix}"),
            password,
        })
    }

    /// The sink as ingest builds it for the cluster: HTTPS, the CA file, credentials.
    fn sink(&self, urls: &str) -> anyhow::Result<ClickHouseSink> {
        Ok(ClickHouseSink::new(&ClickHouseConfig {
            url: urls.to_owned(),
            database: self.name.clone(),
            user: Some("sluice".into()),
            password: Some(self.password.clone()),
            insert_streams: 2,
            cluster: Some(CLUSTER.into()),
            ca_file: Some(state_dir().join("secrets/ca.pem")),
        })?)
    }

    /// A plain-HTTP client on replica `i` (0 or 1), in the test's database: for checking.
    fn replica(&self, i: usize) -> Client {
        plain(HTTP[i], &self.password).with_database(&self.name)
    }

    /// Waits until both replicas hold every row of the database: each has read the whole replication
    /// log and fetched every inserted part (not SYSTEM SYNC REPLICA, which also waits for the queued
    /// merges — forever while merges are stopped).
    async fn sync(&self) -> anyhow::Result<()> {
        for i in 0..2 {
            let caught_up = || async {
                match sluice_sinks::clickhouse::tables_behind(&self.replica(i), &self.name).await {
                    Ok(behind) if behind.is_empty() => Ok(()),
                    Ok(behind) => Err(format!("behind on {behind:?}")),
                    Err(e) => Err(e.to_string()),
                }
            };
            patiently(
                &format!("replica {} catching up", i + 1),
                |_| true,
                caught_up,
            )
            .await?;
        }
        Ok(())
    }

    async fn drop_db(self) -> anyhow::Result<()> {
        let sql = format!(
            "DROP DATABASE IF EXISTS `{}` ON CLUSTER {CLUSTER}",
            self.name
        );
        let admin = plain(HTTP[0], &self.password);
        patiently(&sql, any, || admin.query(&sql).execute()).await
    }

    /// The analyst answers on replica `i`, once it answers.
    async fn answers(&self, i: usize) -> anyhow::Result<Answers> {
        patiently("answers", |_| true, || answers(self, i)).await
    }

    /// Raw rows without FINAL on replica `i`, once it answers.
    async fn raw_rows(&self, i: usize) -> anyhow::Result<(u64, u64, u64)> {
        patiently("raw rows", any, || raw_rows(self, i)).await
    }
}

fn plain(url: &str, password: &str) -> Client {
    Client::default()
        .with_url(url)
        .with_user("sluice")
        .with_password(password)
        .with_validation(false)
}

// ---------------------------------------------------------------------------------------------------
// The events: fixed times across a month boundary (two partitions, so an insert makes two parts).

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-30T23:50:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn click(i: usize) -> ClickEvent {
    let mut e = ClickEvent::new(
        format!("c{i}"),
        format!("t{}", i % 2),
        base() + TimeDelta::seconds(2 * i as i64),
        format!("s{}", i % 3),
    );
    e.visitor_id = (i % 5 != 0).then(|| format!("v{}", i % 7));
    e
}

fn rank(i: usize) -> RankEvent {
    RankEvent {
        schema_version: 1,
        event_id: format!("r{i}"),
        tenant_id: "t0".into(),
        occurred_at: base() + TimeDelta::seconds(10 * i as i64),
        campaign_id: "camp".into(),
        keyword: format!("k{}", i % 3),
        geo: "us".into(),
        engine: "google".into(),
        device: "desktop".into(),
        url: None,
        position: (i % 10 != 9).then_some((i % 50 + 1) as i32),
    }
}

fn crawl(i: usize) -> CrawlEvent {
    CrawlEvent {
        schema_version: 1,
        event_id: format!("w{i}"),
        tenant_id: "t0".into(),
        occurred_at: base() + TimeDelta::seconds(20 * i as i64),
        campaign_id: "camp".into(),
        url: format!("https://d{}.example/p{i}", i % 2),
        status_code: [200, 404, 500][i % 3],
        fetch_ms: 3 * i as i64,
        bytes: 1000 + i as i64,
        content_hash: None,
    }
}

const CLICKS: usize = 600;
const RANKS: usize = 90;
const CRAWLS: usize = 60;

/// Three partition batches holding every event once, plus 20 clicks, 5 checks and 5 fetches of the
/// first batch delivered again in the last one (re-deliveries at other offsets).
fn batches() -> Vec<PartitionBatch> {
    let mut batches: Vec<PartitionBatch> = (0..3)
        .map(|p| PartitionBatch::new("cluster", p, None))
        .collect();
    let mut offsets = [0_i64; 3];
    let mut add = |p: usize, event: Event| {
        batches[p]
            .add(event, offsets[p])
            .expect("fits its ClickHouse columns");
        offsets[p] += 1;
    };
    for i in 0..CLICKS {
        add(i * 3 / CLICKS, Event::Click(click(i)));
    }
    for i in 0..RANKS {
        add(i * 3 / RANKS, Event::Rank(rank(i)));
    }
    for i in 0..CRAWLS {
        add(i * 3 / CRAWLS, Event::Crawl(crawl(i)));
    }
    for i in 0..20 {
        add(2, Event::Click(click(i)));
    }
    for i in 0..5 {
        add(2, Event::Rank(rank(i)));
        add(2, Event::Crawl(crawl(i)));
    }
    batches
}

// ---------------------------------------------------------------------------------------------------
// The answers, from the events (each once) and from a replica.

type ClickMinutes = Vec<(String, String, u32, u64, u64)>;
/// Event ids and visitor ids of a (tenant, link, bucket).
type ClickSets = BTreeMap<(String, String, u32), (BTreeSet<String>, BTreeSet<String>)>;

/// Clicks and visitors per (tenant, link, minute or hour): `bucket` seconds.
fn expected_clicks(bucket: i64) -> ClickMinutes {
    let mut sets = ClickSets::new();
    for e in (0..CLICKS).map(click) {
        let t = e.occurred_at.timestamp();
        let key = (e.tenant_id, e.short_code, (t - t.rem_euclid(bucket)) as u32);
        let entry = sets.entry(key).or_default();
        entry.0.insert(e.event_id);
        entry.1.extend(e.visitor_id);
    }
    sets.into_iter()
        .map(|((t, s, m), (c, v))| (t, s, m, c.len() as u64, v.len() as u64))
        .collect()
}

/// Checks and last position (0: unranked) per keyword and day.
fn expected_ranks() -> Vec<(String, u32, u64, u8)> {
    let mut days: BTreeMap<(String, u32), (u64, (i64, u8))> = BTreeMap::new();
    for e in (0..RANKS).map(rank) {
        let t = e.occurred_at.timestamp();
        let entry = days
            .entry((e.keyword, t.div_euclid(86_400) as u32))
            .or_default();
        entry.0 += 1;
        if t >= entry.1 .0 {
            entry.1 = (t, e.position.unwrap_or(0) as u8);
        }
    }
    days.into_iter()
        .map(|((k, d), (n, (_, last)))| (k, d, n, last))
        .collect()
}

/// Fetches by status class (2xx, 4xx, 5xx) and bytes per domain.
fn expected_crawls() -> Vec<(String, u64, u64, u64, u64)> {
    let mut domains: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for e in (0..CRAWLS).map(crawl) {
        let domain = format!("d{}.example", e.event_id[1..].parse::<usize>().unwrap() % 2);
        let entry = domains.entry(domain).or_default();
        match e.status_code {
            200 => entry.0 += 1,
            404 => entry.1 += 1,
            _ => entry.2 += 1,
        }
        entry.3 += e.bytes as u64;
    }
    domains
        .into_iter()
        .map(|(d, (a, b, c, n))| (d, a, b, c, n))
        .collect()
}

/// The analyst queries (docs/analytics.md's forms) on replica `i`.
#[derive(Debug, PartialEq)]
struct Answers {
    minutes: ClickMinutes,
    hours: ClickMinutes,
    ranks: Vec<(String, u32, u64, u8)>,
    crawls: Vec<(String, u64, u64, u64, u64)>,
    /// Events per raw table, with FINAL.
    raw: (u64, u64, u64),
}

async fn answers(db: &ClusterDb, i: usize) -> clickhouse::error::Result<Answers> {
    let c = db.replica(i);
    let minutes = c
        .query(
            "SELECT tenant_id, short_code, toUInt32(minute), uniqExactMerge(clicks_state), \
             uniqExactIfMerge(visitors_state) FROM click_minute \
             GROUP BY tenant_id, short_code, minute ORDER BY tenant_id, short_code, minute",
        )
        .fetch_all()
        .await?;
    let hours = c
        .query(
            "SELECT tenant_id, short_code, toUInt32(hour), uniqExactMerge(clicks_state), \
             uniqExactIfMerge(visitors_state) FROM click_hour \
             GROUP BY tenant_id, short_code, hour ORDER BY tenant_id, short_code, hour",
        )
        .fetch_all()
        .await?;
    let ranks = c
        .query(
            "SELECT keyword, toUInt32(day), uniqExactMerge(checks_state), argMaxMerge(last_state) \
             FROM rank_day GROUP BY keyword, day ORDER BY keyword, day",
        )
        .fetch_all()
        .await?;
    let crawls = c
        .query(
            "SELECT domain, countIf(status_code < 300), countIf(status_code >= 400 AND status_code < 500), \
             countIf(status_code >= 500), sum(bytes) FROM crawl_fetches FINAL GROUP BY domain ORDER BY domain",
        )
        .fetch_all()
        .await?;
    let raw = c
        .query(
            "SELECT (SELECT count() FROM click_events FINAL), (SELECT count() FROM rank_events FINAL), \
             (SELECT count() FROM crawl_events FINAL)",
        )
        .fetch_one()
        .await?;
    Ok(Answers {
        minutes,
        hours,
        ranks,
        crawls,
        raw,
    })
}

fn expected_answers() -> Answers {
    Answers {
        minutes: expected_clicks(60),
        hours: expected_clicks(3600),
        ranks: expected_ranks(),
        crawls: expected_crawls(),
        raw: (CLICKS as u64, RANKS as u64, CRAWLS as u64),
    }
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn migrations_create_every_table_replicated_on_both_replicas() -> anyhow::Result<()> {
    let db = ClusterDb::new("ch_cluster_migrate").await?;
    let sink = db.sink(&HTTPS.join(","))?;
    let applied: Vec<String> = patiently("migrate", transient, || sink.migrate())
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        applied,
        [
            "raw_events",
            "rollups",
            "click_hour_view",
            "click_day_view",
            "rollups_as_views"
        ]
    );
    let expected = [
        ("click_day", "View"),
        ("click_events", "ReplicatedReplacingMergeTree"),
        ("click_hour", "View"),
        ("click_minute", "View"),
        ("crawl_events", "ReplicatedReplacingMergeTree"),
        ("crawl_fetches", "ReplicatedReplacingMergeTree"),
        ("crawl_fetches_mv", "MaterializedView"),
        ("crawl_hour", "View"),
        ("rank_day", "View"),
        ("rank_events", "ReplicatedReplacingMergeTree"),
        ("sluice_schema_migrations", "ReplicatedMergeTree"),
    ];
    for (i, replica_name) in [(0, "clickhouse1"), (1, "clickhouse2")] {
        let tables: Vec<(String, String)> = patiently("tables", any, || {
            db.replica(i)
                .query("SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name")
                .bind(db.name.as_str())
                .fetch_all()
        })
        .await?;
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, e)| (n.to_string(), e.to_string()))
            .collect();
        assert_eq!(tables, expected, "replica {}", i + 1);
        // Each replicated table's own ZooKeeper path, the replica named by the server's macro.
        let replicas: Vec<(String, String, String)> = patiently("replicas", any, || {
            db.replica(i)
                .query(
                    "SELECT table, zookeeper_path, replica_name FROM system.replicas \
                     WHERE database = ? ORDER BY table",
                )
                .bind(db.name.as_str())
                .fetch_all()
        })
        .await?;
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .filter(|(_, e)| e.starts_with("Replicated"))
            .map(|(n, _)| {
                (
                    n.to_string(),
                    format!("/clickhouse/tables/01/{}/{n}", db.name),
                    replica_name.to_string(),
                )
            })
            .collect();
        assert_eq!(replicas, expected, "replica {}", i + 1);
    }
    // The bookkeeping replicated too: from the second replica, nothing is left to apply.
    db.sync().await?;
    let again = db.sink(&format!("{},{}", HTTPS[1], HTTPS[0]))?;
    assert_eq!(
        patiently("migrate", transient, || again.migrate()).await?,
        []
    );
    db.drop_db().await
}

#[tokio::test]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn rows_written_over_https_give_the_same_exact_answers_on_both_replicas() -> anyhow::Result<()>
{
    let db = ClusterDb::new("ch_cluster_exact").await?;
    let sink = db.sink(&HTTPS.join(","))?;
    patiently("migrate", transient, || sink.migrate()).await?;
    let batches = batches();
    let refs: Vec<&PartitionBatch> = batches.iter().collect();
    let written = patiently("write", transient, || sink.write_all(&refs)).await?;
    assert_eq!(written, (CLICKS + RANKS + CRAWLS + 30) as u64);
    db.sync().await?;
    let expected = expected_answers();
    for i in 0..2 {
        assert_eq!(db.answers(i).await?, expected, "replica {}", i + 1);
    }
    // Without the CA file the servers' certificate is not trusted.
    let untrusting = ClickHouseSink::new(&ClickHouseConfig {
        ca_file: None,
        url: HTTPS[0].into(),
        database: db.name.clone(),
        user: Some("sluice".into()),
        password: Some(db.password.clone()),
        insert_streams: 1,
        cluster: Some(CLUSTER.into()),
    })?;
    let refused = untrusting.ping().await.expect_err("no CA, no trust");
    assert!(refused.is_transient(), "{refused}");
    assert!(
        refused.to_string().contains("certificate verify failed"),
        "{refused}"
    );
    db.drop_db().await
}

/// Raw rows without FINAL, per table, on replica `i`: duplicates show here until merges (stopped in
/// the test) would remove them.
async fn raw_rows(db: &ClusterDb, i: usize) -> clickhouse::error::Result<(u64, u64, u64)> {
    db.replica(i)
        .query(
            "SELECT (SELECT count() FROM click_events), (SELECT count() FROM rank_events), \
             (SELECT count() FROM crawl_events)",
        )
        .fetch_one()
        .await
}

#[tokio::test]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn the_same_blocks_written_to_both_replicas_count_once() -> anyhow::Result<()> {
    let db = ClusterDb::new("ch_cluster_dedup").await?;
    let (first, second) = (db.sink(HTTPS[0])?, db.sink(HTTPS[1])?);
    patiently("migrate", transient, || first.migrate()).await?;
    // No merges in this database: what the raw tables hold is what the inserts left.
    for i in 0..2 {
        for table in ["click_events", "rank_events", "crawl_events"] {
            let sql = format!("SYSTEM STOP MERGES `{}`.{table}", db.name);
            patiently(&sql, any, || db.replica(i).query(&sql).execute()).await?;
        }
    }
    let batches = batches();
    let refs: Vec<&PartitionBatch> = batches.iter().collect();
    // Rows as written once: each event once plus its re-deliveries in the same flush.
    let once = (
        (CLICKS + 20) as u64,
        (RANKS + 5) as u64,
        (CRAWLS + 5) as u64,
    );
    let ingested_at = 1_800_000_000;
    // A retry after a replica failure: the same rows, order, split and ingested_at, to the other one.
    let write = |sink: &ClickHouseSink, at: u32| {
        let (sink, refs) = (sink.clone(), refs.clone());
        async move {
            patiently("write", transient, || sink.write_all_at(&refs, at))
                .await
                .map(|_| ())
        }
    };
    write(&first, ingested_at).await?;
    write(&second, ingested_at).await?;
    db.sync().await?;
    for i in 0..2 {
        assert_eq!(db.raw_rows(i).await?, once, "replica {}", i + 1);
        assert_eq!(
            db.answers(i).await?,
            expected_answers(),
            "replica {}",
            i + 1
        );
    }
    // The control: rows that differ (another ingested_at) are other blocks, kept as duplicates until
    // merges; the answers, read with FINAL and -Merge, stay exact all the same.
    write(&second, ingested_at + 1).await?;
    db.sync().await?;
    for i in 0..2 {
        assert_eq!(
            db.raw_rows(i).await?,
            (2 * once.0, 2 * once.1, 2 * once.2),
            "replica {}",
            i + 1
        );
        assert_eq!(
            db.answers(i).await?,
            expected_answers(),
            "replica {}",
            i + 1
        );
    }
    db.drop_db().await
}

#[tokio::test]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn a_sink_whose_first_replica_is_down_writes_through_the_next() -> anyhow::Result<()> {
    let db = ClusterDb::new("ch_cluster_failover").await?;
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let sink = db.sink(&format!("https://localhost:{closed},{}", HTTPS[1]))?;
    patiently("migrate", transient, || sink.migrate()).await?;
    let batches = batches();
    let refs: Vec<&PartitionBatch> = batches.iter().collect();
    patiently("write", transient, || sink.write_all(&refs)).await?;
    // The replica that answered is now tried first.
    let client = format!("{:?}", sink.client());
    assert!(client.contains("https://localhost:28443"), "{client}");
    db.sync().await?;
    for i in 0..2 {
        assert_eq!(
            db.answers(i).await?,
            expected_answers(),
            "replica {}",
            i + 1
        );
    }
    db.drop_db().await
}
