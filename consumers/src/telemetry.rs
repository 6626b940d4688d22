//! Process telemetry: tracing output (human text or JSON lines, filtered by `RUST_LOG`, default `info`),
//! and one small HTTP server on `metrics_addr` serving `/metrics` (Prometheus text), `/health/live`
//! (the poll loop is turning) and `/health/ready`: ready when ingest can make progress — joined the
//! group, both sinks reachable, a Kafka broker reachable within `ready_stall_timeout_ms`, no flush in
//! flight (retrying) for longer than that — else 503 with every failing condition named in the body.
//! Built on hyper, which the Prometheus exporter already brings in.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber. Safe to call once per process.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder (once) and returns its handle.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ])
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(PROMETHEUS.get_or_init(|| handle).clone())
}

/// What the health endpoints report; updated by the ingest loop and a sink checker.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix milliseconds of the poll loop's last turn.
    pub heartbeat_ms: AtomicU64,
    /// The consumer received its first assignment.
    pub joined: AtomicBool,
    /// The last sink check reached PostgreSQL (and ClickHouse when enabled).
    pub sinks_ok: AtomicBool,
    /// The process's shutdown signal: once set, not ready any more.
    pub shutdown: crate::ingest::shutdown::Shutdown,
    /// The last sink check could not reach PostgreSQL / ClickHouse.
    pub postgres_down: AtomicBool,
    pub clickhouse_down: AtomicBool,
    /// Unix ms since when no Kafka broker connection is up (0: one is, or not known yet).
    pub brokers_down_since_ms: AtomicU64,
    /// Unix ms when the flush now in flight started (0: none in flight).
    pub flush_started_ms: AtomicU64,
    /// `ready_stall_timeout_ms`: how long a flush may be in flight, or the brokers unreachable, before
    /// the process reports not ready (0 = the default, 60 s).
    pub stall_timeout_ms: AtomicU64,
}

const DEFAULT_STALL_TIMEOUT_MS: u64 = 60_000;

/// The poll loop must turn at least this often to count as live (a rebalance drain may block it for
/// up to `shutdown_timeout_ms`, 20 s by default).
const LIVENESS_WINDOW: Duration = Duration::from_secs(60);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn live(&self) -> bool {
        now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed))
            < LIVENESS_WINDOW.as_millis() as u64
    }

    pub fn ready(&self) -> bool {
        self.problems().is_empty()
    }

    pub fn brokers_down(&self) {
        let _ = self.brokers_down_since_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub fn brokers_up(&self) {
        self.brokers_down_since_ms.store(0, Ordering::Relaxed);
    }

    /// Why the process is not ready; empty when it is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let now = now_ms();
        let stall = match self.stall_timeout_ms.load(Ordering::Relaxed) {
            0 => DEFAULT_STALL_TIMEOUT_MS,
            ms => ms,
        };
        if !self.live() {
            problems.push("poll loop stalled".to_owned());
        }
        if self.shutdown.is_triggered() {
            problems.push("shutting down".to_owned());
        }
        if !self.joined.load(Ordering::Relaxed) {
            problems.push("not joined the consumer group yet".to_owned());
        }
        let down = self.brokers_down_since_ms.load(Ordering::Relaxed);
        if down > 0 && now.saturating_sub(down) >= stall {
            problems.push(format!(
                "no kafka broker reachable for {} s (ready_stall_timeout_ms={stall})",
                now.saturating_sub(down) / 1000
            ));
        }
        let started = self.flush_started_ms.load(Ordering::Relaxed);
        if started > 0 && now.saturating_sub(started) >= stall {
            problems.push(format!(
                "flush in flight for {} s, retrying (ready_stall_timeout_ms={stall})",
                now.saturating_sub(started) / 1000
            ));
        }
        if self.postgres_down.load(Ordering::Relaxed) {
            problems.push("postgres unreachable".to_owned());
        }
        if self.clickhouse_down.load(Ordering::Relaxed) {
            problems.push("clickhouse unreachable".to_owned());
        }
        if !self.sinks_ok.load(Ordering::Relaxed) && problems.is_empty() {
            problems.push("sinks not checked yet".to_owned());
        }
        problems
    }
}

/// Serves `/metrics`, `/health/live` and `/health/ready` on `addr`, and runs the exporter's periodic
/// upkeep, in tasks of `tasks`: they serve through the drain (readiness answers 503 while it runs) and
/// end when the caller shuts `tasks` down, last.
pub async fn serve(
    addr: &str,
    prometheus: PrometheusHandle,
    health: Arc<Health>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    let socket: SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid config: metrics_addr={addr:?} is not host:port"))?;
    let listener = tokio::net::TcpListener::bind(socket)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    tracing::info!(%addr, "serving /metrics, /health/live, /health/ready");
    let upkeep = prometheus.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tasks.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let prometheus = prometheus.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let response = respond(req.uri().path(), &prometheus, &health);
                        async move { Ok::<_, Infallible>(response) }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(())
}

fn respond(path: &str, prometheus: &PrometheusHandle, health: &Health) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/metrics" => (
            StatusCode::OK,
            prometheus.render(),
            "text/plain; version=0.0.4",
        ),
        "/health/live" if health.live() => (StatusCode::OK, "live\n".to_owned(), "text/plain"),
        "/health/live" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "poll loop stalled\n".to_owned(),
            "text/plain",
        ),
        "/health/ready" => {
            let problems = health.problems();
            if problems.is_empty() {
                (StatusCode::OK, "ready\n".to_owned(), "text/plain")
            } else {
                let why = format!("not ready: {}\n", problems.join("; "));
                (StatusCode::SERVICE_UNAVAILABLE, why, "text/plain")
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_owned(),
            "text/plain",
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Health {
        let h = Health::default();
        h.beat();
        h.joined.store(true, Ordering::Relaxed);
        h.sinks_ok.store(true, Ordering::Relaxed);
        h.stall_timeout_ms.store(5_000, Ordering::Relaxed);
        h
    }

    #[test]
    fn ready_names_every_failing_condition() {
        let h = healthy();
        assert!(h.ready(), "{:?}", h.problems());
        // A flush in flight or brokers down for less than the bound: still ready.
        h.flush_started_ms
            .store(now_ms() - 4_000, Ordering::Relaxed);
        h.brokers_down_since_ms
            .store(now_ms() - 4_000, Ordering::Relaxed);
        assert!(h.ready(), "{:?}", h.problems());
        h.flush_started_ms
            .store(now_ms() - 7_000, Ordering::Relaxed);
        h.brokers_down_since_ms
            .store(now_ms() - 12_000, Ordering::Relaxed);
        h.sinks_ok.store(false, Ordering::Relaxed);
        h.clickhouse_down.store(true, Ordering::Relaxed);
        assert_eq!(
            h.problems(),
            [
                "no kafka broker reachable for 12 s (ready_stall_timeout_ms=5000)",
                "flush in flight for 7 s, retrying (ready_stall_timeout_ms=5000)",
                "clickhouse unreachable",
            ]
        );
        h.brokers_up();
        h.flush_started_ms.store(0, Ordering::Relaxed);
        h.clickhouse_down.store(false, Ordering::Relaxed);
        h.sinks_ok.store(true, Ordering::Relaxed);
        assert!(h.ready());
        // brokers_down keeps the first time it was seen.
        h.brokers_down();
        let first = h.brokers_down_since_ms.load(Ordering::Relaxed);
        h.brokers_down_since_ms
            .store(first - 1_000, Ordering::Relaxed);
        h.brokers_down();
        assert_eq!(
            h.brokers_down_since_ms.load(Ordering::Relaxed),
            first - 1_000
        );
    }
}
