//! `/health/ready` tells the truth (docs/observability.md, "Health"), without stopping the shared servers:
//! - ClickHouse behind a TCP proxy the test can cut: with it cut, a flush retries past a short
//!   `ready_stall_timeout_ms` and ready turns 503 naming the stuck flush and the unreachable sink, while
//!   the age of the oldest uncommitted record grows; restored, ready is 200 again, the age falls back and
//!   both databases are exact.
//! - Kafka at a closed port: 503 naming the unreachable brokers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::support::{metric_value, Ingest, TestStack, TrafficShape};

/// A TCP forwarder to `upstream` that can refuse service (accepts and drops) and cut live connections.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(upstream: String) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let open = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (o, l) = (open.clone(), live.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(Proxy {
            port,
            open,
            live,
            accept,
        })
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Polls `/health/ready` until `want(status, body)` holds; returns the last answer either way.
async fn ready_when(
    ingest: &Ingest,
    timeout: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> anyhow::Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        // Connection refused while the process is still starting: try again.
        let answer = ingest.get("/health/ready").await;
        if let Ok((status, body)) = &answer {
            if want(*status, body) {
                return answer;
            }
        }
        if Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn oldest_age(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(sluice_consumers::metrics::OLDEST_UNCOMMITTED_AGE))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_stuck_on_an_unreachable_clickhouse_makes_ingest_unready() -> anyhow::Result<()> {
    let stack = TestStack::new("health_sink", 2).await?;
    let upstream = stack
        .ch_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start(upstream).await?;
    let proxied = format!("http://127.0.0.1:{}", proxy.port);
    let ingest = stack.spawn_ingest(
        "a",
        &[
            ("SLUICE_CLICKHOUSE_URL", &proxied),
            ("SLUICE_READY_STALL_TIMEOUT_MS", "3000"),
        ],
    )?;
    let first = stack.publish(TrafficShape::seed(81).rate(2_000).events(200))?;
    stack.wait_caught_up(Duration::from_secs(30)).await?;
    let (status, body) = ready_when(&ingest, Duration::from_secs(10), |s, _| s == 200).await?;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // ClickHouse unreachable: the next flush retries and cannot finish.
    proxy.cut();
    let second = stack.publish(TrafficShape::seed(82).rate(2_000).events(200).resends(0, 0))?;
    let cut_at = Instant::now();
    let (status, body) = ready_when(&ingest, Duration::from_secs(20), |s, b| {
        s == 503 && b.contains("flush in flight for") && b.contains("clickhouse unreachable")
    })
    .await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("flush in flight for"), "{body}");
    assert!(body.contains("ready_stall_timeout_ms=3000"), "{body}");
    assert!(body.contains("clickhouse unreachable"), "{body}");
    // The age gauge is refreshed once a second by the poll loop, so it may trail the readiness
    // answer (computed on request) by up to a second: wait for it within two.
    let text = ingest
        .metrics_when(Duration::from_secs(2), |t| oldest_age(t) >= 3.0)
        .await?;
    let age_then = oldest_age(&text);
    assert!(age_then >= 3.0, "oldest uncommitted age {age_then}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let age_later = oldest_age(&ingest.metrics().await?);
    assert!(
        age_later >= age_then + 1.0,
        "the age grows while nothing commits: {age_then} then {age_later}"
    );
    assert!(age_later <= cut_at.elapsed().as_secs_f64() + 2.0);
    // Liveness is another matter: the process is fine, it must not be restarted for this.
    assert_eq!(ingest.get("/health/live").await?.0, 200);

    proxy.restore();
    stack.wait_caught_up(Duration::from_secs(30)).await?;
    let (status, body) = ready_when(&ingest, Duration::from_secs(15), |s, _| s == 200).await?;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let text = ingest
        .metrics_when(Duration::from_secs(5), |t| oldest_age(t) < 3.0)
        .await?;
    assert!(oldest_age(&text) < 3.0, "age after recovery");
    assert!(
        metric_value(
            &text,
            sluice_sinks::metrics::SINK_RETRIES,
            &[("sink", "clickhouse")]
        ) >= 1.0
    );
    let mut events = first;
    events.extend(second);
    stack.finish(vec![ingest], &events).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_make_ingest_unready() -> anyhow::Result<()> {
    let stack = TestStack::new("health_broker", 1).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = closed.local_addr()?.port();
    drop(closed);
    let brokers = format!("127.0.0.1:{port}");
    let ingest = stack.spawn_ingest(
        "a",
        &[
            ("SLUICE_KAFKA_BROKERS", &brokers),
            ("SLUICE_READY_STALL_TIMEOUT_MS", "2000"),
        ],
    )?;
    let (status, body) = ready_when(&ingest, Duration::from_secs(20), |s, b| {
        s == 503 && b.contains("no kafka broker reachable")
    })
    .await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no kafka broker reachable"), "{body}");
    assert!(body.contains("not joined"), "{body}");
    assert_eq!(ingest.get("/health/live").await?.0, 200);
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status}");
    stack.cleanup().await
}

/// Ingest turns transparent huge pages off for its own process at start-up, whatever the system's
/// setting (`without_transparent_huge_pages` in main.rs; docs/BENCHMARKS.md, "Session 9"). The kernel
/// reports the process's setting in `/proc/<pid>/status` as `THP_enabled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_runs_without_transparent_huge_pages() -> anyhow::Result<()> {
    let stack = TestStack::new("health_thp", 1).await?;
    let ingest = stack.spawn_ingest("a", &[])?;
    let (status, body) = ready_when(&ingest, Duration::from_secs(30), |s, _| s == 200).await?;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", ingest.pid))?;
    let thp: Vec<&str> = proc_status
        .lines()
        .filter(|l| l.starts_with("THP_enabled:"))
        .collect();
    assert_eq!(thp, ["THP_enabled:\t0"], "{proc_status}");
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status}");
    stack.cleanup().await
}
