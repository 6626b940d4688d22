//! Process telemetry: tracing output (human text or JSON lines, filtered by `RUST_LOG`, default `info`)
//! and the Prometheus exporter serving `/metrics` on its own port.

use std::io::IsTerminal;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
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

/// Starts the Prometheus exporter on `addr` (`host:port`); an empty address disables it. Needs a Tokio
/// runtime.
pub fn init_metrics(addr: &str) -> anyhow::Result<()> {
    if addr.is_empty() {
        return Ok(());
    }
    let socket: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid config: metrics_addr={addr:?} is not host:port"))?;
    PrometheusBuilder::new()
        .with_http_listener(socket)
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ])
        .context("invalid histogram buckets")?
        .install()
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    tracing::info!(%addr, "serving prometheus metrics");
    Ok(())
}
