//! The `sluice-ingest` child of a load run: started with a clean environment holding only the
//! run's `SLUICE_*` settings (its topics, group, databases, a free metrics port), stderr to a log
//! file; observed through its Prometheus `/metrics`; stopped with SIGTERM like an orchestrator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where one ingest instance reads from and writes to.
#[derive(Debug, Clone)]
pub struct IngestSetup {
    pub brokers: String,
    pub group: String,
    /// Rank, crawl and click topics.
    pub topics: [String; 3],
    pub dead_letter_topic: String,
    pub postgres_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    pub sinks_enabled: bool,
    /// More `SLUICE_*` settings (`--ingest-env KEY=VALUE`), applied last.
    pub extra_env: Vec<(String, String)>,
}

/// A running `sluice-ingest`.
#[derive(Debug)]
pub struct IngestProcess {
    child: Child,
    pub pid: u32,
    pub metrics_addr: String,
    pub log: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl IngestProcess {
    pub fn spawn(binary: &Path, setup: &IngestSetup, log: &Path) -> anyhow::Result<IngestProcess> {
        let metrics_addr = format!("127.0.0.1:{}", free_port()?);
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("SLUICE_KAFKA_BROKERS", &setup.brokers)
            .env("SLUICE_GROUP_ID", &setup.group)
            .env("SLUICE_RANK_TOPIC", &setup.topics[0])
            .env("SLUICE_CRAWL_TOPIC", &setup.topics[1])
            .env("SLUICE_CLICK_TOPIC", &setup.topics[2])
            .env("SLUICE_DEAD_LETTER_TOPIC", &setup.dead_letter_topic)
            .env("SLUICE_POSTGRES_URL", &setup.postgres_url)
            .env("SLUICE_CLICKHOUSE_URL", &setup.clickhouse_url)
            .env("SLUICE_CLICKHOUSE_DATABASE", &setup.clickhouse_database)
            .env("SLUICE_METRICS_ADDR", &metrics_addr)
            .env("SLUICE_SINKS_ENABLED", setup.sinks_enabled.to_string());
        for (k, v) in &setup.extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(IngestProcess {
            pid: child.id(),
            child,
            metrics_addr,
            log: log.to_owned(),
        })
    }

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        scrape(&self.metrics_addr).await
    }

    /// Still running? (An exit is an error for the run: ingest must outlive it.)
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "sluice-ingest exited early ({status}); log: {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Waits until every partition is assigned (`sluice_consumer_assigned_partitions` ≥ `partitions`);
    /// returns when that was first seen.
    pub async fn wait_assigned(
        &mut self,
        partitions: usize,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(text) = self.metrics().await {
                if metric_sum(&text, "sluice_consumer_assigned_partitions") >= partitions as f64 {
                    return Ok(Instant::now());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "sluice-ingest did not get its {partitions} partitions within {timeout:?}; log: {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the exit status (SIGKILL after `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "sluice-ingest did not exit within {timeout:?} of SIGTERM; log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// GET `/metrics` from `addr` (host:port); the body.
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .context("metrics endpoint timed out")??;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .context("metrics endpoint timed out")??;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_owned())
}

/// Sum of every sample of a metric family (`name` or `name{labels}`) in a Prometheus exposition.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_metric_families() {
        let text = "# TYPE x counter\nsluice_ingest_records_consumed_total{kind=\"rank\"} 5\n\
                    sluice_ingest_records_consumed_total{kind=\"click\"} 7\n\
                    sluice_ingest_records_consumed_total_other 100\nsluice_consumer_assigned_partitions 18\n";
        assert_eq!(
            metric_sum(text, "sluice_ingest_records_consumed_total"),
            12.0
        );
        assert_eq!(
            metric_sum(text, "sluice_consumer_assigned_partitions"),
            18.0
        );
        assert_eq!(metric_sum(text, "absent"), 0.0);
    }
}
