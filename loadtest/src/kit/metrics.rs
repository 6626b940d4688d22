//! Ingest's HTTP port as the kit sees it: a plain HTTP/1.0 GET of `/metrics` or `/health/*` (status and
//! body), and the value of a series in the Prometheus text exposition that `/metrics` serves.
//!
//! Hand-written rather than an HTTP client crate and a Prometheus parser: one request shape and one
//! line shape (`name{labels} value`), and the load driver's own CPU is part of what a load run measures.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from `addr` (host:port): (status code, body). Connecting may take 2 s, reading 5 s.
pub async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .with_context(|| format!("{addr} did not accept a connection within 2 s"))??;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .with_context(|| format!("GET {path} from {addr} timed out"))??;
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

/// GET `/metrics` from `addr` (host:port): the exposition.
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    Ok(get(addr, "/metrics").await?.1)
}

/// The sum of the samples of `name` whose labels include every pair of `labels` (0 when there are
/// none): `metric_value(text, "x", &[])` sums the whole family, `&[("kind", "click")]` one series.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
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
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// Sum of every sample of a metric family (`name` or `name{labels}`).
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    metric_value(exposition, name, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE x counter\nsluice_ingest_records_consumed_total{kind=\"rank\"} 5\n\
                        sluice_ingest_records_consumed_total{kind=\"click\"} 7\n\
                        sluice_ingest_records_consumed_total_other 100\nsluice_consumer_assigned_partitions 18\n";

    #[test]
    fn sums_metric_families() {
        assert_eq!(
            metric_sum(TEXT, "sluice_ingest_records_consumed_total"),
            12.0
        );
        assert_eq!(
            metric_sum(TEXT, "sluice_consumer_assigned_partitions"),
            18.0
        );
        assert_eq!(metric_sum(TEXT, "absent"), 0.0);
    }

    #[test]
    fn selects_series_by_label() {
        let name = "sluice_ingest_records_consumed_total";
        assert_eq!(metric_value(TEXT, name, &[("kind", "click")]), 7.0);
        assert_eq!(metric_value(TEXT, name, &[("kind", "crawl")]), 0.0);
    }
}
