//! The five failures, each under a few thousand events/s: SIGKILL the broker leading most event
//! partitions (back after 30 s), SIGKILL one ClickHouse replica for 30 s, SIGKILL ZooKeeper for 20 s,
//! SIGKILL the PostgreSQL primary and promote the standby, restart PgBouncer; and a sixth: ingest
//! started while a ClickHouse replica is down. Every test ends with exact totals in PostgreSQL and on
//! both ClickHouse replicas, prints its longest stall and the time until the pipeline moved again, and
//! asserts a bound on the stall.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_loadtest::verify::{diff, Actual, Expected};
use sqlx::postgres::PgPoolOptions;

use crate::progress::{Progress, Stall};
use crate::support::{Ingest, TestStack, TrafficShape};
use crate::topology::{Cluster, Restore, CLICKHOUSE_REPLICAS};

/// New events per second: "a few thousand".
const RATE: u32 = 2000;

/// A test of this binary owns the whole cluster: one at a time even without `--test-threads=1`.
pub(crate) static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Traffic, ingest and the progress sampler of one failure test.
struct Run {
    test: TestStack,
    ingest: Ingest,
    progress: Progress,
    traffic: crate::support::Traffic,
}

impl Run {
    /// Fresh topics and databases, ingest, and `seconds` of traffic at [`RATE`]; returns after a few
    /// seconds of steady flow (both sinks have written: ingest is past its migrations).
    async fn start(cluster: &Cluster, name: &str, seconds: u32) -> anyhow::Result<Run> {
        let test = TestStack::on(&cluster.target()?, name, 6).await?;
        let run = Run::traffic(test, seconds)?;
        run.progress.wait_moving(Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(run)
    }

    /// Ingest and `seconds` of traffic at [`RATE`] on `test`'s topics and databases, from now.
    fn traffic(test: TestStack, seconds: u32) -> anyhow::Result<Run> {
        let ingest = test.spawn_ingest("main", &[])?;
        let progress = Progress::watch(&ingest.metrics_addr);
        let shape = TrafficShape::seed(15)
            .rate(RATE)
            .events((RATE * seconds) as usize);
        let traffic = test.start_traffic(shape)?;
        Ok(Run {
            test,
            ingest,
            progress,
            traffic,
        })
    }

    /// Waits for the traffic and for ingest to catch up, stops ingest (it must exit 0), compares
    /// PostgreSQL and every ClickHouse replica exactly with what was published, prints the longest stall
    /// from `fault` on (a sink's time without a move, [`Progress`]) and asserts it is below `bound`.
    /// `back` is when the failed server was running again (or the failover done), if it comes back.
    async fn finish(
        mut self,
        what: &str,
        fault: Instant,
        back: Option<Instant>,
        bound: Duration,
    ) -> anyhow::Result<()> {
        let events = self.traffic.join()?;
        let published = Instant::now();
        self.test
            .wait_caught_up_alive(&mut self.ingest, Duration::from_secs(180))
            .await?;
        let caught_up = Instant::now();
        let stalls = self.progress.stop(fault, caught_up);
        let status = self.ingest.terminate(Duration::from_secs(30))?;
        anyhow::ensure!(status.success(), "ingest exit status {status}");

        let expected = Expected::from_events(&events);
        let distinct =
            expected.rank_events.len() + expected.crawl_events.len() + expected.click_events.len();
        for (node, port) in CLICKHOUSE_REPLICAS {
            let ch = clickhouse::Client::default()
                .with_url(format!("http://127.0.0.1:{port}"))
                .with_database(&self.test.ch_database)
                .with_validation(false);
            // A replica that was down catches up by fetching parts: give it time.
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let actual = Actual::read(&self.test.pg, &ch).await?;
                let differences = diff(&expected, &actual, 10);
                if differences.is_empty() {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{node} / PostgreSQL differ from the expected aggregates:\n{}",
                    differences.join("\n")
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }

        let longest: &Stall = stalls.iter().max_by_key(|s| s.length()).expect("two sinks");
        let since = |t: Instant| t.saturating_duration_since(fault).as_secs_f64();
        let summary: Vec<String> = stalls
            .iter()
            .map(|s| {
                format!(
                    "{} longest stall {:.1} s (from +{:.1} s to +{:.1} s)",
                    s.sink,
                    s.length().as_secs_f64(),
                    since(s.from),
                    since(s.to)
                )
            })
            .collect();
        let back = back.map_or_else(String::new, |t| format!("back at +{:.1} s; ", since(t)));
        println!(
            "FAULT {what}: {} distinct events ({} published, re-sends included); fault at +0 s; {back}{}; \
             caught up {:.1} s after the traffic ended; exact in PostgreSQL and on {} replicas",
            distinct,
            events.len(),
            summary.join(", "),
            (caught_up - published).as_secs_f64(),
            CLICKHOUSE_REPLICAS.len()
        );
        anyhow::ensure!(
            longest.length() <= bound,
            "{what}: the {} sink stalled {:.1} s, over the bound of {:.0} s",
            longest.sink,
            longest.length().as_secs_f64(),
            bound.as_secs_f64()
        );
        self.test.cleanup().await
    }
}

/// The broker that leads the most partitions of the test's event topics (node name `kafkaN`).
fn busiest_leader(test: &TestStack) -> anyhow::Result<String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &test.brokers)
        .create()?;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for topic in test.topic_names() {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                *led.entry(p.leader()).or_default() += 1;
            }
        }
    }
    let (id, _) = led
        .into_iter()
        .max_by_key(|(id, n)| (*n, -id))
        .ok_or_else(|| anyhow::anyhow!("no partitions"))?;
    Ok(format!("kafka{id}"))
}

/// One kill-and-restart test: `seconds` of traffic; once it flows, the node `pick` names is SIGKILLed,
/// left down for `down`, started again; the longest stall must stay under `bound`.
async fn kill_and_restart(
    name: &str,
    seconds: u32,
    pick: impl FnOnce(&TestStack) -> anyhow::Result<String>,
    down: Duration,
    bound: Duration,
) -> anyhow::Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let cluster = Cluster::from_env();
    let _restore = Restore(&cluster);
    let run = Run::start(&cluster, name, seconds).await?;
    let node = pick(&run.test)?;
    let fault = Instant::now();
    cluster.kill(&node)?;
    tokio::time::sleep(down).await;
    cluster.start(&node)?;
    let back = Instant::now();
    let what = format!("SIGKILL {node}, started again after {} s", down.as_secs());
    run.finish(&what, fault, Some(back), bound).await
}

fn node(name: &str) -> impl FnOnce(&TestStack) -> anyhow::Result<String> + '_ {
    move |_| Ok(name.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn kafka_broker_leading_most_partitions_killed_for_30s() -> anyhow::Result<()> {
    let down = Duration::from_secs(30);
    kill_and_restart(
        "kafka_leader",
        45,
        busiest_leader,
        down,
        Duration::from_secs(30),
    )
    .await
}

/// clickhouse1 is the first URL of ingest's list: the replica it prefers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn clickhouse_replica_killed_for_30s() -> anyhow::Result<()> {
    let down = Duration::from_secs(30);
    kill_and_restart(
        "ch_replica",
        45,
        node("clickhouse1"),
        down,
        Duration::from_secs(15),
    )
    .await
}

/// Ingest (re)started while a ClickHouse replica is down, on a schema already in place: it must start
/// and write to the other replica. With nothing to migrate it runs no DDL (an `ON CLUSTER` statement,
/// even `CREATE … IF NOT EXISTS`, waits until every replica has run it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn ingest_starts_while_a_clickhouse_replica_is_down() -> anyhow::Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let cluster = Cluster::from_env();
    let _restore = Restore(&cluster);
    let test = TestStack::on(&cluster.target()?, "ch_down_start", 6).await?;
    test.run_ingest_command(&["migrate"], &[])?;
    let fault = Instant::now();
    cluster.kill("clickhouse1")?;
    let run = Run::traffic(test, 40)?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    cluster.start("clickhouse1")?;
    let back = Instant::now();
    run.finish(
        "ingest started with clickhouse1 down (SIGKILL), clickhouse1 started again after 30 s",
        fault,
        Some(back),
        Duration::from_secs(15),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn zookeeper_killed_for_20s() -> anyhow::Result<()> {
    let down = Duration::from_secs(20);
    kill_and_restart(
        "zookeeper",
        40,
        node("zookeeper"),
        down,
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn pgbouncer_restarted() -> anyhow::Result<()> {
    let bound = Duration::from_secs(15);
    kill_and_restart("pgbouncer", 25, node("pgbouncer"), Duration::ZERO, bound).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn postgres_primary_killed_and_standby_promoted() -> anyhow::Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let cluster = Cluster::from_env();
    let _restore = Restore(&cluster);
    let mut run = Run::start(&cluster, "pg_failover", 35).await?;
    let primary = cluster.postgres_primary()?;
    let fault = Instant::now();
    cluster.kill(&primary)?;
    cluster.script(&["postgres-failover"])?;
    let back = Instant::now();
    let promoted = cluster.postgres_primary()?;
    anyhow::ensure!(
        promoted != primary,
        "{primary} is still the primary after the failover"
    );
    // The test's own reads follow the promotion too.
    run.test.target.postgres_admin_url = cluster.postgres_primary_url("sluice")?;
    run.test.pg = PgPoolOptions::new()
        .max_connections(4)
        .connect(&cluster.postgres_primary_url(&run.test.name)?)
        .await?;
    run.finish(
        &format!("SIGKILL the PostgreSQL primary {primary}, {promoted} promoted"),
        fault,
        Some(back),
        Duration::from_secs(30),
    )
    .await
}
