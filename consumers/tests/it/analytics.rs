//! The analyst queries of `docs/analytics.md` on the real ClickHouse server (18.16 on the local stack),
//! each test in its own database named after it. Synthetic events (`Synth`) plus hand-written corner
//! cases go through the real migrations and `ClickHouseSink::write`, delivered more than once — copies
//! inside one insert, re-sends in later inserts, whole inserts replayed — while merges are stopped, so
//! every copy is still a row when the queries run. Every documented query (parsed out of the markdown, so
//! the document and the test cannot drift) must return exactly what this file computes from the events,
//! counting each `event_id` once; again after the latest migration (the rollups as views) runs a second
//! time, and again after every table is merged. The same runs on the cluster stack (`make up-cluster`,
//! ignored otherwise): migrations `ON CLUSTER`, rows written over HTTPS to the first replica, every
//! query checked on each replica. A further test checks retention: exactly the expired monthly
//! partitions are dropped, and a TTL is set only where the server supports it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clickhouse::Row;
use serde::Deserialize;
use sluice_aggregator::PartitionBatch;
use sluice_loadtest::verify::{Expected, Snapshot};
use sluice_sinks::clickhouse::{
    on_cluster, statements, ClickHouseConfig, ClickHouseSink, DroppedPartition, MIGRATIONS,
};

use crate::support::corner::{click, crawl, rank};
use sluice_producers::synth::{Mix, Synth, SynthConfig};
use sluice_schemas::{Event, EventKind};

type Rows = Vec<Vec<String>>;
/// (tenant_id, entity, time bucket)
type BucketKey = (String, String, i64);
/// (status_code, fetch_ms, bytes) of one crawl.
type Fetch = (u16, u32, u64);

const NULL: &str = "\\N";

/// The documented query names this file has an oracle for.
const ORACLES: [&str; 13] = [
    "clicks_per_minute",
    "clicks_per_hour",
    "clicks_per_day",
    "top_links_per_day",
    "rank_history",
    "rank_gainers",
    "rank_losers",
    "rank_dropped_out",
    "crawl_status_mix",
    "crawl_latency",
    "crawl_error_domains",
    "crawl_volume_per_day",
    "clicks_by_country",
];

/// The migration that made the rollups views over the raw tables: the first one that may run again over
/// today's schema (0002-0004 create rollup tables under names that are views since).
const ROLLUPS_AS_VIEWS: u32 = 5;

/// A ClickHouse database of one test, migrated with the real runner.
#[derive(Clone)]
struct TestDb {
    name: String,
    sink: ClickHouseSink,
    admin: clickhouse::Client,
    /// On the cluster stack: its name and a plain-HTTP client of each replica in the test's database.
    cluster: Option<(&'static str, Vec<clickhouse::Client>)>,
    /// Where [`TestDb::rows`] runs: the sink's server when `None`, else this replica.
    reader: Option<clickhouse::Client>,
}

/// The cluster stack's ClickHouse (docs/analytics.md, "On a cluster"): HTTPS for the sink, plain HTTP
/// for checking, the credentials and CA under `$SLUICE_CLUSTER_STATE_DIR` (default `.state-cluster`).
const CLUSTER_HTTPS: &str = "https://localhost:18443,https://localhost:28443";
const CLUSTER_HTTP: [&str; 2] = ["http://127.0.0.1:18123", "http://127.0.0.1:28123"];

impl TestDb {
    async fn new(test: &str) -> anyhow::Result<TestDb> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{test}_{suffix}");
        let url = sluice_loadtest::kit::StackArgs::from_env().clickhouse_url;
        let admin = clickhouse::Client::default()
            .with_url(&url)
            .with_validation(false);
        let sink = ClickHouseSink::new(&ClickHouseConfig {
            url,
            database: name.clone(),
            user: None,
            password: None,
            insert_streams: 2,
            cluster: None,
            ca_file: None,
        })?;
        Self::migrated(name, sink, admin, None).await
    }

    /// The same on the cluster stack's cluster `sluice`.
    async fn on_cluster(test: &str) -> anyhow::Result<TestDb> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{test}_{suffix}");
        let state = std::env::var_os("SLUICE_CLUSTER_STATE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../.state-cluster").into());
        let password_file = state.join("secrets/clickhouse-password");
        let password = std::fs::read_to_string(&password_file)
            .with_context(|| format!("{} (make up-cluster)", password_file.display()))?
            .trim_end()
            .to_owned();
        let plain = |url: &str| {
            clickhouse::Client::default()
                .with_url(url)
                .with_user("sluice")
                .with_password(&password)
                .with_validation(false)
        };
        let sink = ClickHouseSink::new(&ClickHouseConfig {
            url: CLUSTER_HTTPS.into(),
            database: name.clone(),
            user: Some("sluice".into()),
            password: Some(password.clone()),
            insert_streams: 2,
            cluster: Some("sluice".into()),
            ca_file: Some(state.join("secrets/ca.pem")),
        })?;
        let replicas = CLUSTER_HTTP
            .iter()
            .map(|url| plain(url).with_database(&name))
            .collect();
        Self::migrated(
            name,
            sink,
            plain(CLUSTER_HTTP[0]),
            Some(("sluice", replicas)),
        )
        .await
    }

    async fn migrated(
        name: String,
        sink: ClickHouseSink,
        admin: clickhouse::Client,
        cluster: Option<(&'static str, Vec<clickhouse::Client>)>,
    ) -> anyhow::Result<TestDb> {
        let applied = sink
            .migrate()
            .await
            .context("migrating clickhouse (is the stack up? run `make up`)")?;
        ensure!(
            applied.iter().any(|m| m.version == ROLLUPS_AS_VIEWS),
            "the rollups-as-views migration did not run: {applied:?}"
        );
        ensure!(
            sink.migrate().await?.is_empty(),
            "a second migrate applied something"
        );
        Ok(TestDb {
            name,
            sink,
            admin,
            cluster,
            reader: None,
        })
    }

    fn client(&self) -> &clickhouse::Client {
        self.reader.as_ref().unwrap_or(self.sink.client())
    }

    /// Where the documented queries are checked: the server, or each replica once it holds every part.
    async fn readers(&self) -> anyhow::Result<Vec<TestDb>> {
        let Some((_, replicas)) = &self.cluster else {
            return Ok(vec![self.clone()]);
        };
        let mut readers = Vec::new();
        for replica in replicas {
            // Not SYSTEM SYNC REPLICA: it also waits for the queued merges, which never run while
            // merges are stopped. A replica has every row once it has read the whole replication log
            // and fetched every inserted part.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            loop {
                if sluice_sinks::clickhouse::tables_behind(replica, &self.name)
                    .await?
                    .is_empty()
                {
                    break;
                }
                ensure!(
                    std::time::Instant::now() < deadline,
                    "a replica is still fetching parts after 120 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            readers.push(TestDb {
                reader: Some(replica.clone()),
                ..self.clone()
            });
        }
        Ok(readers)
    }

    /// `OPTIMIZE TABLE … FINAL`; on a cluster, once the merges queued while they were stopped are done
    /// (18.16 failed it here with "Unknown log entry type: 0" while they ran), on the replica that leads the
    /// table's merges.
    async fn optimize(&self, table: &str) -> anyhow::Result<()> {
        let sql = format!("OPTIMIZE TABLE {}.{table} FINAL", self.name);
        let Some((_, replicas)) = &self.cluster else {
            return self.execute(&sql).await;
        };
        for replica in replicas {
            let sync = format!("SYSTEM SYNC REPLICA {}.{table}", self.name);
            replica
                .query(&sync)
                .execute()
                .await
                .with_context(|| format!("running {sync}"))?;
        }
        for replica in replicas {
            let leader: u8 = replica
                .query("SELECT is_leader FROM system.replicas WHERE database = ? AND table = ?")
                .bind(self.name.as_str())
                .bind(table)
                .fetch_one()
                .await?;
            if leader == 1 {
                return replica
                    .query(&sql)
                    .execute()
                    .await
                    .with_context(|| format!("running {sql}"));
            }
        }
        bail!("no replica leads {table}")
    }

    /// A migration statement as the runner runs it (its cluster form on the cluster).
    async fn execute_ddl(&self, statement: &str) -> anyhow::Result<()> {
        match &self.cluster {
            Some((cluster, _)) => {
                let sql = on_cluster(statement, cluster, &self.name).map_err(anyhow::Error::msg)?;
                self.execute(&sql).await
            }
            None => self.execute(statement).await,
        }
    }

    /// Runs the migration runner; the names of the steps it applied.
    async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let applied = self.sink.migrate().await?;
        Ok(applied.into_iter().map(|m| m.name).collect())
    }

    /// Removes the records of migration `version` and later from `sluice_schema_migrations` (a
    /// MergeTree table: rebuilt without them), so the runner applies them again.
    async fn forget_migrations_from(&self, version: u32) -> anyhow::Result<()> {
        self.execute("RENAME TABLE sluice_schema_migrations TO applied_before")
            .await?;
        self.execute("CREATE TABLE sluice_schema_migrations AS applied_before")
            .await?;
        self.execute(&format!(
            "INSERT INTO sluice_schema_migrations SELECT * FROM applied_before WHERE version < {version}"
        ))
        .await?;
        self.execute("DROP TABLE applied_before").await
    }

    async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.client()
            .query_raw(sql)
            .execute()
            .await
            .with_context(|| format!("running {sql}"))
    }

    /// Runs a query and returns its TabSeparated rows.
    async fn rows(&self, sql: &str) -> anyhow::Result<Rows> {
        let bytes = self
            .client()
            .query_raw(sql)
            .fetch_bytes("TabSeparated")?
            .collect()
            .await
            .with_context(|| format!("running {sql}"))?;
        let text = String::from_utf8(bytes.to_vec())?;
        Ok(text
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect())
    }

    async fn merge_tree_tables(&self) -> anyhow::Result<Vec<String>> {
        let rows = self
            .rows(
                "SELECT name FROM system.tables WHERE database = currentDatabase() \
                 AND engine LIKE '%MergeTree' ORDER BY name",
            )
            .await?;
        Ok(rows.into_iter().map(|r| r[0].clone()).collect())
    }

    /// `SYSTEM STOP MERGES` or `START MERGES` on this database's tables only (the server is shared),
    /// on every replica of a cluster.
    async fn merges(&self, verb: &str) -> anyhow::Result<()> {
        let servers = match &self.cluster {
            Some((_, replicas)) => replicas.clone(),
            None => vec![self.client().clone()],
        };
        for table in self.merge_tree_tables().await? {
            for server in &servers {
                let sql = format!("SYSTEM {verb} MERGES {}.{table}", self.name);
                server
                    .query(&sql)
                    .execute()
                    .await
                    .with_context(|| format!("running {sql}"))?;
            }
        }
        Ok(())
    }

    async fn drop(self) -> anyhow::Result<()> {
        let on_cluster = match &self.cluster {
            Some((cluster, _)) => format!(" ON CLUSTER {cluster}"),
            None => String::new(),
        };
        self.admin
            .query(&format!(
                "DROP DATABASE IF EXISTS {}{on_cluster}",
                self.name
            ))
            .execute()
            .await?;
        Ok(())
    }
}

/// `name -> SQL` of every `<!-- query: name -->` block of docs/analytics.md, in document order.
fn documented_queries() -> anyhow::Result<Vec<(String, String)>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/analytics.md");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let marker = "<!-- query: ";
    let mut queries = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(marker) {
        let (name, after) = rest[at + marker.len()..]
            .split_once(" -->")
            .context("unterminated query marker")?;
        let body = after
            .trim_start()
            .strip_prefix("```sql\n")
            .with_context(|| format!("query {name}: the marker must be followed by ```sql"))?;
        let (sql, tail) = body
            .split_once("```")
            .with_context(|| format!("query {name}: unterminated sql block"))?;
        queries.push((name.to_owned(), sql.to_owned()));
        rest = tail;
    }
    Ok(queries)
}

// ---------------------------------------------------------------------------------------------------
// The dataset.

/// Ties and boundaries the synthetic traffic is unlikely to hit.
fn corner_cases(now: DateTime<Utc>) -> Vec<Event> {
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |t| t.and_utc());
    let yesterday = today - TimeDelta::days(1);
    let (us, h, min) = (
        TimeDelta::microseconds,
        TimeDelta::hours,
        TimeDelta::minutes,
    );
    vec![
        // Same microsecond: the greater event_id is the last check (position 2).
        rank("edge-tie-a", yesterday + h(5) + us(7), "tie", Some(9)),
        rank("edge-tie-b", yesterday + h(5) + us(7), "tie", Some(2)),
        // Same second: the later microsecond is last although its id is smaller.
        rank("edge-sub-b", yesterday + h(6) + us(1), "sub", Some(40)),
        rank("edge-sub-a", yesterday + h(6) + us(2), "sub", Some(30)),
        // Ranked the day before; yesterday ranked, then its last check did not: dropped out.
        rank("edge-drop-1", yesterday - h(1), "drop", Some(4)),
        rank("edge-drop-2", yesterday + h(1), "drop", Some(6)),
        rank("edge-drop-3", yesterday + h(2), "drop", None),
        // Clicks on both sides of the last two midnights, one visitor.
        click("edge-click-1", today - us(1), Some("v-edge")),
        click("edge-click-2", today, Some("v-edge")),
        click("edge-click-3", yesterday - us(1), Some("v-edge")),
        click("edge-click-4", yesterday, None),
        // A 1xx counts as a page only; mixed-case hosts group under the lowercased domain.
        crawl("edge-crawl-1", now - min(30), "http://Edge.EXAMPLE/a", 103),
        crawl(
            "edge-crawl-2",
            now - min(29),
            "https://edge.example:8443/b",
            599,
        ),
    ]
}

/// Synthetic traffic around `now`: 35 days of history and 3 denser recent days, on a small catalogue
/// so that keywords are checked on consecutive days.
fn events(run: &str, now: DateTime<Utc>) -> anyhow::Result<Vec<Event>> {
    let config = |seed, days_back| SynthConfig {
        seed,
        tenants: 2,
        campaigns_per_tenant: 2,
        keywords_per_campaign: 4,
        links_per_tenant: 8,
        domains_per_campaign: 3,
        visitors_per_tenant: 40,
        days_back,
        mix: Mix {
            rank: 4,
            crawl: 3,
            click: 3,
        },
        ..SynthConfig::default()
    };
    let mut history = Synth::new(config(11, 35), &format!("{run}-h"))?;
    let mut recent = Synth::new(config(12, 3), &format!("{run}-r"))?;
    let mut out: Vec<Event> = (0..2000).map(|_| history.next(now)).collect();
    out.extend((0..6000).map(|_| recent.next(now)));
    out.extend(corner_cases(now));
    Ok(out)
}

/// Writes the events through the sink in batches of 300 with duplicate deliveries: every 29th event
/// twice in its batch, ten earlier events re-sent in each later batch, and two batches written twice.
async fn load(sink: &ClickHouseSink, events: &[Event]) -> anyhow::Result<usize> {
    let mut batches = Vec::new();
    for (b, chunk) in events.chunks(300).enumerate() {
        let mut batch = PartitionBatch::new("analytics", (b % 3) as i32, None);
        let mut offset = (b as i64) * 10_000;
        let mut deliver = |batch: &mut PartitionBatch, event: &Event| {
            batch
                .add(event.clone(), offset)
                .expect("fits its ClickHouse columns");
            offset += 1;
        };
        for (i, event) in chunk.iter().enumerate() {
            deliver(&mut batch, event);
            if i % 29 == 0 {
                deliver(&mut batch, event);
            }
        }
        for k in 0..10 {
            if b > 0 {
                deliver(&mut batch, &events[(b * 131 + k * 17) % (b * 300)]);
            }
        }
        batches.push(batch);
    }
    let replays = [0, batches.len() / 2];
    let mut rows = 0;
    for batch in batches.iter().chain(replays.iter().map(|&i| &batches[i])) {
        sink.write(batch).await?;
        rows += batch.events();
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------------
// The oracle: each query's answer from the deduplicated events (the independent verifier's raw rows).

fn minute(s: i64) -> i64 {
    s - s.rem_euclid(60)
}

fn hour(s: i64) -> i64 {
    s - s.rem_euclid(3600)
}

fn day(s: i64) -> i64 {
    s.div_euclid(86_400)
}

fn fmt_time(s: i64) -> String {
    DateTime::from_timestamp(s, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn fmt_day(d: i64) -> String {
    fmt_time(d * 86_400)[..10].to_owned()
}

fn opt<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| NULL.to_owned(), |v| v.to_string())
}

/// (clicks, unique visitors) per (tenant, short_code, bucket) for buckets `keep` accepts.
fn clicks(
    snap: &Snapshot,
    bucket: fn(i64) -> i64,
    keep: impl Fn(i64) -> bool,
) -> BTreeMap<BucketKey, (usize, usize)> {
    let mut sets: BTreeMap<BucketKey, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for c in &snap.click_events {
        let b = bucket(i64::from(c.occurred_at));
        if keep(b) {
            let entry = sets
                .entry((c.tenant_id.clone(), c.short_code.clone(), b))
                .or_default();
            entry.0.insert(&c.event_id);
            if let Some(v) = &c.visitor_id {
                entry.1.insert(v);
            }
        }
    }
    sets.into_iter()
        .map(|(k, (ids, visitors))| (k, (ids.len(), visitors.len())))
        .collect()
}

fn click_rows(snap: &Snapshot, bucket: fn(i64) -> i64, lo: i64, render: fn(i64) -> String) -> Rows {
    clicks(snap, bucket, |b| b >= lo)
        .into_iter()
        .map(|((t, s, b), (c, v))| vec![t, s, render(b), c.to_string(), v.to_string()])
        .collect()
}

fn top_links(snap: &Snapshot, now: i64) -> Rows {
    // (clicks, descending; short_code; unique visitors) per (tenant, day)
    type Link = (Reverse<usize>, String, usize);
    let mut per_day: BTreeMap<(String, i64), Vec<Link>> = BTreeMap::new();
    for ((t, s, d), (c, v)) in clicks(snap, day, |d| d >= day(now) - 6) {
        per_day.entry((t, d)).or_default().push((Reverse(c), s, v));
    }
    let mut out = Vec::new();
    for ((t, d), mut links) in per_day {
        links.sort();
        for (c, s, v) in links.into_iter().take(10) {
            out.push(vec![
                t.clone(),
                fmt_day(d),
                s,
                c.0.to_string(),
                v.to_string(),
            ]);
        }
    }
    out
}

type RankEntity = (String, String, String, String, String, String);
/// (seconds, microseconds, event_id, position) of one check.
type Check = (u32, u32, String, Option<u8>);

fn rank_checks(
    snap: &Snapshot,
    keep: impl Fn(i64) -> bool,
) -> BTreeMap<(RankEntity, i64), Vec<Check>> {
    let mut out: BTreeMap<(RankEntity, i64), Vec<Check>> = BTreeMap::new();
    for r in &snap.rank_events {
        let d = day(i64::from(r.occurred_at));
        if keep(d) {
            let entity = (
                r.tenant_id.clone(),
                r.campaign_id.clone(),
                r.keyword.clone(),
                r.geo.clone(),
                r.engine.clone(),
                r.device.clone(),
            );
            out.entry((entity, d)).or_default().push((
                r.occurred_at,
                r.occurred_at_micros,
                r.event_id.clone(),
                r.position,
            ));
        }
    }
    out
}

/// The position of the check with the greatest (time, event_id).
fn last(checks: &[Check]) -> Option<u8> {
    checks.iter().max().and_then(|c| c.3)
}

fn entity_cells(e: &RankEntity) -> Vec<String> {
    vec![
        e.0.clone(),
        e.1.clone(),
        e.2.clone(),
        e.3.clone(),
        e.4.clone(),
        e.5.clone(),
    ]
}

fn rank_history(snap: &Snapshot, now: i64) -> Rows {
    rank_checks(snap, |d| d >= day(now) - 29)
        .into_iter()
        .map(|((entity, d), checks)| {
            let ranked: Vec<u8> = checks.iter().filter_map(|c| c.3).collect();
            let mut row = entity_cells(&entity);
            row.extend([
                fmt_day(d),
                opt(last(&checks)),
                opt(ranked.iter().min()),
                opt(ranked.iter().max()),
                checks.len().to_string(),
            ]);
            row
        })
        .collect()
}

/// entity -> (day before's last position, yesterday's), `None` without a check that day, `Some(0)` when
/// the last check did not rank.
fn day_pairs(snap: &Snapshot, now: i64) -> BTreeMap<RankEntity, (Option<u8>, Option<u8>)> {
    let d = day(now) - 1;
    let mut out: BTreeMap<RankEntity, (Option<u8>, Option<u8>)> = BTreeMap::new();
    for ((entity, checks_day), checks) in rank_checks(snap, |x| x == d || x == d - 1) {
        let position = Some(last(&checks).unwrap_or(0));
        let pair = out.entry(entity).or_default();
        if checks_day == d {
            pair.1 = position;
        } else {
            pair.0 = position;
        }
    }
    out
}

/// Top 20 moves up (`up`) or down, both days ranked.
fn movers(snap: &Snapshot, now: i64, up: bool) -> Rows {
    let mut moves: Vec<(i16, RankEntity, u8, u8)> = Vec::new();
    for (entity, pair) in day_pairs(snap, now) {
        if let (Some(prev), Some(cur)) = pair {
            if prev == 0 || cur == 0 {
                continue;
            }
            let gain = i16::from(prev) - i16::from(cur);
            let size = if up { gain } else { -gain };
            if size > 0 {
                moves.push((-size, entity, prev, cur));
            }
        }
    }
    moves.sort();
    moves
        .into_iter()
        .take(20)
        .map(|(neg, entity, prev, cur)| {
            let mut row = entity_cells(&entity);
            row.extend([prev.to_string(), cur.to_string(), (-neg).to_string()]);
            row
        })
        .collect()
}

fn dropped_out(snap: &Snapshot, now: i64) -> Rows {
    let mut out: Vec<(u8, RankEntity)> = day_pairs(snap, now)
        .into_iter()
        .filter_map(|(entity, pair)| match pair {
            (Some(prev), Some(0)) if prev > 0 => Some((prev, entity)),
            _ => None,
        })
        .collect();
    out.sort();
    out.into_iter()
        .map(|(prev, entity)| {
            let mut row = entity_cells(&entity);
            row.push(prev.to_string());
            row
        })
        .collect()
}

/// (status_code, fetch_ms, bytes) of each crawl per (tenant, domain, hour) of the last 24 hours.
fn crawls_last_day(snap: &Snapshot, now: i64) -> BTreeMap<BucketKey, Vec<Fetch>> {
    let lo = hour(now - 86_400);
    let mut out: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for c in &snap.crawl_events {
        let h = hour(i64::from(c.occurred_at));
        if h >= lo {
            out.entry((c.tenant_id.clone(), c.domain.clone(), h))
                .or_default()
                .push((c.status_code, c.fetch_ms, c.bytes));
        }
    }
    out
}

fn status_mix(snap: &Snapshot, now: i64) -> Rows {
    crawls_last_day(snap, now)
        .into_iter()
        .map(|((t, d, h), crawls)| {
            let mut row = vec![t, d, fmt_time(h), crawls.len().to_string()];
            for class in 1..=5u16 {
                let n = crawls.iter().filter(|c| c.0 / 100 == class).count();
                row.push(n.to_string());
            }
            row.push(opt(crawls.iter().map(|c| c.1).max()));
            row
        })
        .collect()
}

/// ClickHouse's `quantileExact(level)`: the element at index floor(level × n) of the sorted values.
fn quantile_exact(sorted: &[u32], level: f64) -> u32 {
    let n = sorted.len();
    let index = if level < 1.0 {
        (level * n as f64) as usize
    } else {
        n - 1
    };
    sorted[index]
}

fn latency(snap: &Snapshot, now: i64) -> Rows {
    crawls_last_day(snap, now)
        .into_iter()
        .map(|((t, d, h), crawls)| {
            let mut ms: Vec<u32> = crawls.iter().map(|c| c.1).collect();
            ms.sort_unstable();
            let mut row = vec![t, d, fmt_time(h), ms.len().to_string()];
            for level in [0.5, 0.9, 0.99] {
                row.push(quantile_exact(&ms, level).to_string());
            }
            row.push(opt(ms.last()));
            row
        })
        .collect()
}

fn error_domains(snap: &Snapshot, now: i64) -> Rows {
    let mut per_domain: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for ((t, d, _), crawls) in crawls_last_day(snap, now) {
        let entry = per_domain.entry((t, d)).or_default();
        entry.0 += crawls.len() as u64;
        entry.1 += crawls.iter().filter(|c| c.0 >= 400).count() as u64;
    }
    let mut rows: Vec<(f64, (String, String), u64, u64)> = per_domain
        .into_iter()
        .filter(|(_, (pages, _))| *pages >= 20)
        .map(|(k, (pages, errors))| (errors as f64 / pages as f64, k, pages, errors))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    rows.into_iter()
        .take(20)
        .map(|(rate, (t, d), pages, errors)| {
            vec![
                t,
                d,
                pages.to_string(),
                errors.to_string(),
                rate.to_string(),
            ]
        })
        .collect()
}

fn volume_per_day(snap: &Snapshot, now: i64) -> Rows {
    let mut out: BTreeMap<(String, String, i64), (u64, u64, u64)> = BTreeMap::new();
    for c in &snap.crawl_events {
        let d = day(i64::from(c.occurred_at));
        if d >= day(now) - 6 {
            let entry = out
                .entry((c.tenant_id.clone(), c.domain.clone(), d))
                .or_default();
            entry.0 += 1;
            entry.1 += c.bytes;
            entry.2 += u64::from(c.fetch_ms);
        }
    }
    out.into_iter()
        .map(|((t, dom, d), (pages, bytes, ms))| {
            vec![
                t,
                dom,
                fmt_day(d),
                pages.to_string(),
                bytes.to_string(),
                ms.to_string(),
            ]
        })
        .collect()
}

fn clicks_by_country(snap: &Snapshot, now: i64) -> Rows {
    let mut groups: BTreeMap<(String, String), (usize, BTreeSet<&str>)> = BTreeMap::new();
    for c in &snap.click_events {
        if day(i64::from(c.occurred_at)) == day(now) - 1 {
            let country = c.country.clone().unwrap_or_else(|| "unknown".to_owned());
            let entry = groups.entry((c.tenant_id.clone(), country)).or_default();
            entry.0 += 1;
            if let Some(v) = &c.visitor_id {
                entry.1.insert(v);
            }
        }
    }
    let mut rows: Vec<(String, Reverse<usize>, String, usize)> = groups
        .into_iter()
        .map(|((t, c), (n, visitors))| (t, Reverse(n), c, visitors.len()))
        .collect();
    rows.sort();
    rows.into_iter()
        .map(|(t, n, c, v)| vec![t, c, n.0.to_string(), v.to_string()])
        .collect()
}

/// The expected rows of a documented query, `now` being the second the query ran.
fn expected(name: &str, snap: &Snapshot, now: i64) -> anyhow::Result<Rows> {
    Ok(match name {
        "clicks_per_minute" => click_rows(snap, minute, minute(now - 3600), fmt_time),
        "clicks_per_hour" => click_rows(snap, hour, hour(now - 86_400), fmt_time),
        "clicks_per_day" => click_rows(snap, day, day(now) - 6, fmt_day),
        "top_links_per_day" => top_links(snap, now),
        "rank_history" => rank_history(snap, now),
        "rank_gainers" => movers(snap, now, true),
        "rank_losers" => movers(snap, now, false),
        "rank_dropped_out" => dropped_out(snap, now),
        "crawl_status_mix" => status_mix(snap, now),
        "crawl_latency" => latency(snap, now),
        "crawl_error_domains" => error_domains(snap, now),
        "crawl_volume_per_day" => volume_per_day(snap, now),
        "clicks_by_country" => clicks_by_country(snap, now),
        other => bail!("docs/analytics.md has query {other}, which this test has no oracle for"),
    })
}

/// Equal cell by cell; cells that are not equal as text must both be numbers within 1e-9 relative
/// (ClickHouse and Rust may print the same Float64 differently).
fn same_rows(expected: &Rows, actual: &Rows) -> Option<String> {
    if expected.len() != actual.len() {
        return Some(format!(
            "expected {} rows, got {}; first expected {:?}, got {:?}",
            expected.len(),
            actual.len(),
            expected.iter().take(3).collect::<Vec<_>>(),
            actual.iter().take(3).collect::<Vec<_>>()
        ));
    }
    let same_cell = |e: &String, a: &String| {
        e == a
            || matches!((e.parse::<f64>(), a.parse::<f64>()),
                (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
    };
    expected
        .iter()
        .zip(actual)
        .enumerate()
        .find(|(_, (e, a))| {
            e.len() != a.len() || !e.iter().zip(a.iter()).all(|(x, y)| same_cell(x, y))
        })
        .map(|(i, (e, a))| format!("row {i}: expected {e:?}, got {a:?}"))
}

/// Runs a query within one wall-clock minute (the finest bucket a query depends on) and returns its
/// rows and the second it started.
async fn run_stable(db: &TestDb, sql: &str) -> anyhow::Result<(Rows, i64)> {
    for _ in 0..5 {
        let before = Utc::now().timestamp();
        let rows = db.rows(sql).await?;
        if minute(before) == minute(Utc::now().timestamp()) {
            return Ok((rows, before));
        }
    }
    bail!("could not run the query within one minute")
}

async fn check_all(
    db: &TestDb,
    queries: &[(String, String)],
    snap: &Snapshot,
    stage: &str,
) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for (name, sql) in queries {
        let (rows, now) = run_stable(db, sql).await?;
        let want = expected(name, snap, now)?;
        ensure!(
            !want.is_empty(),
            "{name}: the dataset leaves this query empty"
        );
        if let Some(problem) = same_rows(&want, &rows) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    if !failures.is_empty() {
        bail!("{stage}:\n{}", failures.join("\n"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_queries_match_an_independent_computation() -> anyhow::Result<()> {
    check_documented_queries(TestDb::new("analytics").await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn documented_queries_match_on_each_replica_of_the_cluster() -> anyhow::Result<()> {
    check_documented_queries(TestDb::on_cluster("analytics_cluster").await?).await
}

/// The load driver's accounting counts the crawls in `crawl_fetches` (`CRAWL_FETCHES`), the one table a
/// materialized view fills: on events written with duplicate deliveries and replayed batches, it must
/// give the number of distinct crawls, counted here from the events themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_accounting_counts_each_crawl_once_in_crawl_fetches() -> anyhow::Result<()> {
    use sluice_loadtest::load::accounting::CRAWL_FETCHES;
    let db = TestDb::new("analytics_crawl_fetches_total").await?;
    let events = events("crawl-fetches-total", Utc::now())?;
    let written = load(&db.sink, &events).await?;
    let crawls = events.iter().filter(|e| e.kind() == EventKind::Crawl);
    let distinct = crawls.map(Event::event_id).collect::<BTreeSet<_>>();
    assert!(written > events.len(), "the load wrote no duplicates");
    let rows = db.rows("SELECT count() FROM crawl_fetches").await?;
    assert!(
        rows[0][0].parse::<usize>()? > distinct.len(),
        "no crawl was written twice"
    );
    assert_eq!(
        db.rows(CRAWL_FETCHES).await?,
        [[distinct.len().to_string()]]
    );
    db.drop().await
}

/// Loads the events with duplicates into `db` and checks every documented query against the oracle on
/// each reader, before merges, after the latest migration ran again, and after merges.
async fn check_documented_queries(db: TestDb) -> anyhow::Result<()> {
    let queries = documented_queries()?;
    let names: BTreeSet<&str> = queries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), queries.len(), "duplicate query names");
    assert_eq!(
        names,
        BTreeSet::from(ORACLES),
        "documented queries and oracles differ"
    );

    // Keep every duplicate delivery a separate row while the queries run.
    db.merges("STOP").await?;
    let now = Utc::now();
    let events = events(&db.name, now)?;
    let delivered = load(&db.sink, &events).await?;
    assert!(
        delivered > events.len() + 500,
        "too few duplicate deliveries"
    );
    for table in [
        "rank_events",
        "crawl_events",
        "click_events",
        "crawl_fetches",
    ] {
        let counts = db
            .rows(&format!("SELECT count(), uniqExact(event_id) FROM {table}"))
            .await?;
        let (rows, distinct): (u64, u64) = (counts[0][0].parse()?, counts[0][1].parse()?);
        assert!(
            rows > distinct,
            "{table}: duplicates were collapsed already"
        );
    }
    let snap = Expected::from_events(&events);
    for (i, reader) in db.readers().await?.iter().enumerate() {
        check_all(
            reader,
            &queries,
            &snap,
            &format!("before merges (reader {})", i + 1),
        )
        .await?;
    }

    // An interrupted migration is applied again: it drops and re-creates the views over the raw tables
    // (and the migrations after it run again too).
    ensure!(
        MIGRATIONS.iter().any(|m| m.version == ROLLUPS_AS_VIEWS),
        "no rollups-as-views migration"
    );
    for migration in MIGRATIONS.iter().filter(|m| m.version >= ROLLUPS_AS_VIEWS) {
        for statement in statements(migration.base) {
            db.execute_ddl(&statement).await?;
        }
    }
    for (i, reader) in db.readers().await?.iter().enumerate() {
        check_all(
            reader,
            &queries,
            &snap,
            &format!("after the migration ran again (reader {})", i + 1),
        )
        .await?;
    }

    db.merges("START").await?;
    for table in db.merge_tree_tables().await? {
        db.optimize(&table).await?;
    }
    for (i, reader) in db.readers().await?.iter().enumerate() {
        check_all(
            reader,
            &queries,
            &snap,
            &format!("after merges (reader {})", i + 1),
        )
        .await?;
    }
    db.drop().await
}

#[derive(Row, Deserialize)]
struct Partition {
    table: String,
    partition: String,
}

/// Active (table, partition) pairs of the given tables.
async fn partitions(db: &TestDb, tables: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let parts: Vec<Partition> = db
        .client()
        .query(
            "SELECT table, partition FROM system.parts WHERE database = ? AND active \
             GROUP BY table, partition ORDER BY table, partition",
        )
        .bind(db.name.as_str())
        .fetch_all()
        .await?;
    Ok(parts
        .into_iter()
        .filter(|p| tables.contains(&p.table))
        .map(|p| (p.table, p.partition))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_exactly_the_expired_months() -> anyhow::Result<()> {
    let db = TestDb::new("analytics_retention").await?;
    let at = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.to_utc());
    let mut batch = PartitionBatch::new("retention", 0, None);
    let times = [
        "2025-12-15T10:00:00Z",
        "2026-04-30T23:59:59.999999Z",
        "2026-05-01T00:00:00Z",
        "2026-11-20T08:30:00Z",
    ];
    for (i, t) in times.iter().enumerate() {
        let t = at(t)?;
        let base = i64::try_from(i)? * 3;
        batch
            .add(rank(&format!("r{i}"), t, "kw", Some(3)), base)
            .expect("fits its ClickHouse columns");
        batch
            .add(
                crawl(&format!("w{i}"), t, "https://a.example/", 200),
                base + 1,
            )
            .expect("fits its ClickHouse columns");
        batch
            .add(click(&format!("c{i}"), t, Some("v")), base + 2)
            .expect("fits its ClickHouse columns");
    }
    db.sink.write(&batch).await?;
    let tables: Vec<String> = db
        .rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase() \
             AND partition_key LIKE 'toYYYYMM(%' ORDER BY name",
        )
        .await?
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    // 3 raw tables and crawl_fetches (the rollups are views over the raw tables since migration 0005).
    assert_eq!(tables.len(), 4, "{tables:?}");

    let today = NaiveDate::from_ymd_opt(2026, 11, 24).context("date")?;
    assert!(db.sink.apply_retention_at(0, today).await.is_err());
    let version = db.sink.server_version().await?;

    // Six months before 24 Nov 2026 is 24 May 2026: April and older hold only expired rows; May stays.
    let report = db.sink.apply_retention_at(6, today).await?;
    assert_eq!(report.cutoff, 202605);
    let mut want: Vec<DroppedPartition> = Vec::new();
    let mut kept = Vec::new();
    for table in &tables {
        for p in ["202512", "202604"] {
            want.push(DroppedPartition {
                table: table.clone(),
                partition: p.to_owned(),
            });
        }
        kept.extend(["202605", "202611"].map(|p| (table.clone(), p.to_owned())));
    }
    want.sort();
    assert_eq!(report.dropped, want);
    assert_eq!(partitions(&db, &tables).await?, kept);
    let clicks = db
        .rows("SELECT uniqExactMerge(clicks_state) FROM click_day")
        .await?;
    assert_eq!(clicks, vec![vec!["2".to_owned()]]);
    if version.is_modern() {
        assert_eq!(report.ttl_set, tables);
    } else {
        assert!(
            report.ttl_set.is_empty(),
            "{}: no TTL on this server",
            version.text
        );
    }

    // Idempotent: nothing left to drop, the TTL is in place.
    let again = db.sink.apply_retention_at(6, today).await?;
    assert!(
        again.dropped.is_empty() && again.ttl_set.is_empty(),
        "{again:?}"
    );
    assert_eq!(partitions(&db, &tables).await?, kept);
    db.drop().await
}

/// `click_day` as the migrations before 0004 made it: a table that its own materialized view fills.
const OLD_CLICK_DAY: [&str; 2] = [
    "CREATE TABLE click_day (tenant_id String, short_code String, day Date, \
     clicks_state AggregateFunction(uniqExact, String), \
     visitors_state AggregateFunction(uniqExactIf, String, UInt8)) \
     ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (tenant_id, short_code, day)",
    "CREATE MATERIALIZED VIEW click_day_mv TO click_day AS \
     SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, \
     uniqExactState(event_id) AS clicks_state, \
     uniqExactIfState(ifNull(visitor_id, ''), isNotNull(visitor_id)) AS visitors_state \
     FROM click_events GROUP BY tenant_id, short_code, day",
];

/// The engines of `click_day` and of its view, if any.
const ENGINES: &str = "SELECT name, engine FROM system.tables WHERE database = currentDatabase() \
                       AND name IN ('click_day', 'click_day_mv') ORDER BY name";

/// A click of link `code` of tenant `corner`.
fn click_on(code: &str, id: &str, at: &str, visitor: Option<&str>) -> anyhow::Result<Event> {
    let mut event = click(id, DateTime::parse_from_rfc3339(at)?.to_utc(), visitor);
    if let Event::Click(c) = &mut event {
        c.short_code = code.to_owned();
    }
    Ok(event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_click_day_table_becomes_the_view_and_answers_the_same() -> anyhow::Result<()> {
    let db = TestDb::new("analytics_click_day_view").await?;
    // Put the database back where migration 0003 left a server: click_day a table fed by its own
    // view, and 0004 not recorded.
    db.execute("DROP TABLE click_day").await?;
    for statement in OLD_CLICK_DAY {
        db.execute(statement).await?;
    }
    db.forget_migrations_from(4).await?;

    // Link a: three clicks on the 23rd (UTC; one at 23:59:59.999999), two of them by visitor v1 and
    // one anonymous, and one on the 24th by v2. Link b: two clicks on the 23rd by v3 and v4.
    let mut batch = PartitionBatch::new("click_day_view", 0, None);
    let clicks = [
        ("a", "c1", "2026-11-23T08:00:00Z", Some("v1")),
        ("a", "c2", "2026-11-23T23:59:59.999999Z", Some("v1")),
        ("a", "c3", "2026-11-23T12:30:00Z", None),
        ("a", "c4", "2026-11-24T00:00:00Z", Some("v2")),
        ("b", "c5", "2026-11-23T10:00:00Z", Some("v3")),
        ("b", "c6", "2026-11-23T10:00:30Z", Some("v4")),
    ];
    for (offset, (code, id, at, visitor)) in clicks.into_iter().enumerate() {
        batch
            .add(click_on(code, id, at, visitor)?, i64::try_from(offset)?)
            .expect("fits its ClickHouse columns");
    }
    // Every click reaches the raw table, and so each view, twice.
    db.sink.write(&batch).await?;
    db.sink.write(&batch).await?;

    let per_day = "SELECT short_code, day, uniqExactMerge(clicks_state), \
                   uniqExactIfMerge(visitors_state) FROM click_day \
                   GROUP BY short_code, day ORDER BY short_code, day";
    let row = |cells: [&str; 4]| cells.map(str::to_owned).to_vec();
    let mut want = vec![
        row(["a", "2026-11-23", "3", "1"]),
        row(["a", "2026-11-24", "1", "1"]),
        row(["b", "2026-11-23", "2", "2"]),
    ];
    assert_eq!(
        db.rows(ENGINES).await?,
        [
            ["click_day", "AggregatingMergeTree"],
            ["click_day_mv", "MaterializedView"]
        ]
    );
    assert_eq!(db.rows(per_day).await?, want, "from the old table");

    let applied = db.migrate().await?;
    assert_eq!(applied, ["click_day_view", "rollups_as_views"]);
    assert_eq!(db.rows(ENGINES).await?, [["click_day", "View"]]);
    assert_eq!(db.rows(per_day).await?, want, "from the view");

    // New clicks reach the view through the raw table: v1 on the 24th is a new visitor of that day.
    let mut later = PartitionBatch::new("click_day_view", 0, None);
    later
        .add(click_on("a", "c7", "2026-11-24T09:00:00Z", Some("v1"))?, 6)
        .expect("fits its ClickHouse columns");
    db.sink.write(&later).await?;
    want[1] = row(["a", "2026-11-24", "2", "2"]);
    assert_eq!(db.rows(per_day).await?, want, "after new clicks");
    assert!(
        db.migrate().await?.is_empty(),
        "a second migrate applied something"
    );
    db.drop().await
}

/// The rollup names of migration 0005 and their engines.
const ROLLUP_ENGINES: &str = "SELECT name, engine FROM system.tables WHERE database = currentDatabase() \
     AND (endsWith(name, '_mv') OR name IN ('click_minute', 'click_hour', 'click_day', 'rank_day', 'crawl_hour')) \
     ORDER BY name";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_tables_become_views_over_the_raw_tables_and_answer_the_same(
) -> anyhow::Result<()> {
    let db = TestDb::new("analytics_rollups_as_views").await?;
    // Put the database back where migration 0004 left a server: click_minute, rank_day and crawl_hour
    // tables fed by their materialized views (0002), click_hour and click_day views over click_minute
    // (0003, 0004), and 0005 not recorded.
    for view in [
        "click_day",
        "click_hour",
        "click_minute",
        "rank_day",
        "crawl_hour",
    ] {
        db.execute(&format!("DROP TABLE {view}")).await?;
    }
    for migration in MIGRATIONS.iter().filter(|m| (2..=4).contains(&m.version)) {
        for statement in statements(migration.base) {
            db.execute(&statement).await?;
        }
    }
    db.forget_migrations_from(5).await?;
    assert_eq!(
        db.rows(ROLLUP_ENGINES).await?,
        [
            ["click_day", "View"],
            ["click_hour", "View"],
            ["click_minute", "AggregatingMergeTree"],
            ["click_minute_mv", "MaterializedView"],
            ["crawl_fetches_mv", "MaterializedView"],
            ["crawl_hour", "AggregatingMergeTree"],
            ["crawl_hour_mv", "MaterializedView"],
            ["rank_day", "AggregatingMergeTree"],
            ["rank_day_mv", "MaterializedView"]
        ]
    );

    let at = |t: &str| -> anyhow::Result<DateTime<Utc>> {
        Ok(DateTime::parse_from_rfc3339(t)?.to_utc())
    };
    // A crawl of https://example.com/<id>.
    let page = |id: &str, t: &str, status: i32| -> anyhow::Result<Event> {
        Ok(crawl(
            id,
            at(t)?,
            &format!("https://example.com/{id}"),
            status,
        ))
    };
    let mut batch = PartitionBatch::new("rollups_as_views", 0, None);
    let events = [
        // Keyword k on the 23rd: ranked 5, then unranked, then 3 (the last check).
        rank("r1", at("2026-11-23T08:00:00Z")?, "k", Some(5)),
        rank("r2", at("2026-11-23T12:00:00Z")?, "k", None),
        rank("r3", at("2026-11-23T20:00:00Z")?, "k", Some(3)),
        // On the 24th: two checks at the same instant (the greater event id, r5, is the last) after an
        // unranked one.
        rank("r4", at("2026-11-24T06:00:00Z")?, "k", Some(7)),
        rank("r5", at("2026-11-24T06:00:00Z")?, "k", Some(9)),
        rank("r6", at("2026-11-24T03:00:00Z")?, "k", None),
        // example.com, 10:00-11:00 on the 23rd: two 2xx, one each of 3xx, 4xx and 5xx.
        page("p1", "2026-11-23T10:00:00Z", 200)?,
        page("p2", "2026-11-23T10:15:00Z", 204)?,
        page("p3", "2026-11-23T10:30:00Z", 301)?,
        page("p4", "2026-11-23T10:45:00Z", 404)?,
        page("p5", "2026-11-23T10:59:59Z", 503)?,
        // Link edge: two clicks in the minute 09:00 on the 23rd (visitor v1 twice), one at 09:01.
        click("c1", at("2026-11-23T09:00:00Z")?, Some("v1")),
        click("c2", at("2026-11-23T09:00:59.999999Z")?, Some("v1")),
        click("c3", at("2026-11-23T09:01:00Z")?, None),
    ];
    for (offset, event) in events.into_iter().enumerate() {
        batch
            .add(event, i64::try_from(offset)?)
            .expect("fits its ClickHouse columns");
    }
    // Every event reaches the raw table, and so each rollup, twice.
    db.sink.write(&batch).await?;
    db.sink.write(&batch).await?;

    let ranks = "SELECT keyword, day, nullIf(argMaxMerge(last_state), 0), \
                 nullIf(minMerge(best_state), 255), nullIf(maxMerge(worst_state), 0), \
                 uniqExactMerge(checks_state) FROM rank_day GROUP BY keyword, day ORDER BY keyword, day";
    let crawls = "SELECT domain, hour, uniqExactIfMerge(status_1xx_state), \
                  uniqExactIfMerge(status_2xx_state), uniqExactIfMerge(status_3xx_state), \
                  uniqExactIfMerge(status_4xx_state), uniqExactIfMerge(status_5xx_state), \
                  maxMerge(fetch_ms_max_state) FROM crawl_hour GROUP BY domain, hour ORDER BY domain, hour";
    let minutes = "SELECT short_code, minute, uniqExactMerge(clicks_state), \
                   uniqExactIfMerge(visitors_state) FROM click_minute \
                   GROUP BY short_code, minute ORDER BY short_code, minute";
    let hours = "SELECT short_code, hour, uniqExactMerge(clicks_state), \
                 uniqExactIfMerge(visitors_state) FROM click_hour GROUP BY short_code, hour";
    let days = "SELECT short_code, day, uniqExactMerge(clicks_state), \
                uniqExactIfMerge(visitors_state) FROM click_day GROUP BY short_code, day";
    let row = |cells: &[&str]| cells.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    let mut want = [
        vec![
            row(&["k", "2026-11-23", "3", "3", "5", "3"]),
            row(&["k", "2026-11-24", "9", "7", "9", "3"]),
        ],
        vec![row(&[
            "example.com",
            "2026-11-23 10:00:00",
            "0",
            "2",
            "1",
            "1",
            "1",
            "70",
        ])],
        vec![
            row(&["edge", "2026-11-23 09:00:00", "2", "1"]),
            row(&["edge", "2026-11-23 09:01:00", "1", "0"]),
        ],
        vec![row(&["edge", "2026-11-23 09:00:00", "3", "1"])],
        vec![row(&["edge", "2026-11-23", "3", "1"])],
    ];
    let answers = |label: &'static str| {
        let db = &db;
        async move {
            let mut got = Vec::new();
            for sql in [ranks, crawls, minutes, hours, days] {
                got.push(db.rows(sql).await.with_context(|| label)?);
            }
            anyhow::Ok(got)
        }
    };
    assert_eq!(answers("tables").await?, want, "from the tables");

    let applied = db.migrate().await?;
    assert_eq!(applied, ["rollups_as_views"]);
    assert_eq!(
        db.rows(ROLLUP_ENGINES).await?,
        [
            ["click_day", "View"],
            ["click_hour", "View"],
            ["click_minute", "View"],
            ["crawl_fetches_mv", "MaterializedView"],
            ["crawl_hour", "View"],
            ["rank_day", "View"]
        ]
    );
    assert_eq!(answers("views").await?, want, "from the views");

    // New events reach the views through the raw tables: a later ranked check on the 24th, a 1xx page,
    // and a click by a new visitor in the minute 09:01.
    let mut later = PartitionBatch::new("rollups_as_views", 0, None);
    later
        .add(rank("r7", at("2026-11-24T23:00:00Z")?, "k", Some(1)), 14)
        .expect("fits its ClickHouse columns");
    later
        .add(page("p6", "2026-11-23T10:20:00Z", 101)?, 15)
        .expect("fits its ClickHouse columns");
    later
        .add(click("c4", at("2026-11-23T09:01:30Z")?, Some("v2")), 16)
        .expect("fits its ClickHouse columns");
    db.sink.write(&later).await?;
    want[0][1] = row(&["k", "2026-11-24", "1", "1", "9", "4"]);
    want[1][0] = row(&[
        "example.com",
        "2026-11-23 10:00:00",
        "1",
        "2",
        "1",
        "1",
        "1",
        "70",
    ]);
    want[2][1] = row(&["edge", "2026-11-23 09:01:00", "2", "1"]);
    want[3][0] = row(&["edge", "2026-11-23 09:00:00", "4", "2"]);
    want[4][0] = row(&["edge", "2026-11-23", "4", "2"]);
    assert_eq!(answers("after new events").await?, want, "after new events");
    assert!(
        db.migrate().await?.is_empty(),
        "a second migrate applied something"
    );
    db.drop().await
}
