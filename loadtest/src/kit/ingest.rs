//! `sluice-ingest` as a child process of a test, a load run or the demo. An [`IngestSetup`] says where
//! ingest reads and writes (topics, group, databases); from it come the one-shot subcommands
//! (`provision`, `migrate`, `config`, …) and the long-running [`IngestProcess`]: started with a clean
//! environment holding only those `SLUICE_*` settings and a free metrics port, stderr to a log file,
//! observed through its HTTP port, stopped with SIGTERM as an orchestrator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::metrics::{self, metric_sum};

/// Where one ingest instance reads from and writes to.
#[derive(Debug, Clone)]
pub struct IngestSetup {
    /// The `sluice-ingest` executable.
    pub binary: PathBuf,
    pub brokers: String,
    pub group: String,
    /// Rank, crawl and click topics.
    pub topics: [String; 3],
    pub dead_letter_topic: String,
    pub postgres_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    /// `RUST_LOG` of the child.
    pub rust_log: String,
    /// More settings (`SLUICE_FLUSH_INTERVAL_MS`, `--ingest-env KEY=VALUE`, …), applied after the above.
    pub env: Vec<(String, String)>,
    /// Start the long-running process in a process group of its own, so that a Ctrl-C at the terminal
    /// reaches only the parent, which then stops it gracefully (the demo). Off, a parent killed by
    /// Ctrl-C takes the child with it (tests and load runs).
    pub own_process_group: bool,
}

impl IngestSetup {
    /// `sluice-ingest <args>` pointed at this setup's topics and databases and nothing else from the
    /// caller's environment; `extra` is applied last.
    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("RUST_LOG", &self.rust_log)
            .env("SLUICE_KAFKA_BROKERS", &self.brokers)
            .env("SLUICE_GROUP_ID", &self.group)
            .env("SLUICE_RANK_TOPIC", &self.topics[0])
            .env("SLUICE_CRAWL_TOPIC", &self.topics[1])
            .env("SLUICE_CLICK_TOPIC", &self.topics[2])
            .env("SLUICE_DEAD_LETTER_TOPIC", &self.dead_letter_topic)
            .env("SLUICE_POSTGRES_URL", &self.postgres_url)
            .env("SLUICE_CLICKHOUSE_URL", &self.clickhouse_url)
            .env("SLUICE_CLICKHOUSE_DATABASE", &self.clickhouse_database);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a one-shot subcommand, whatever its exit status.
    pub fn output(&self, args: &[&str], extra: &[(&str, &str)]) -> anyhow::Result<Output> {
        self.command(args, extra)
            .output()
            .with_context(|| format!("cannot run {}", self.binary.display()))
    }

    /// Runs a one-shot subcommand that must succeed; returns its stdout.
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> anyhow::Result<String> {
        let output = self.output(args, extra)?;
        if !output.status.success() {
            bail!(
                "sluice-ingest {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates this setup's event topics (`partitions` each) and its dead-letter topic
    /// (`dead_letter_partitions`) through `sluice-ingest provision`, the one way topics are made; topics
    /// that exist are left as they are. Returns provision's report, a line a topic.
    pub fn provision(
        &self,
        partitions: i32,
        dead_letter_partitions: i32,
    ) -> anyhow::Result<String> {
        let (n, d) = (partitions.to_string(), dead_letter_partitions.to_string());
        self.run(
            &[
                "provision",
                "--partitions",
                &n,
                "--dead-letter-partitions",
                &d,
            ],
            &[],
        )
    }

    /// Starts `sluice-ingest run` with stderr to `log` and its metrics on a free port, unless `self.env`
    /// or `extra` name one (`SLUICE_METRICS_ADDR`).
    pub fn spawn(&self, log: &Path, extra: &[(&str, &str)]) -> anyhow::Result<IngestProcess> {
        let named = extra
            .iter()
            .copied()
            .chain(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .find(|(k, _)| *k == "SLUICE_METRICS_ADDR")
            .map(|(_, v)| v.to_owned());
        let metrics_addr = match named {
            Some(addr) => addr,
            None => format!("127.0.0.1:{}", free_port()?),
        };
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        // The port before `self.env` and `extra`, so that either may still move it.
        let mut cmd = self.command(&["run"], &[]);
        cmd.env("SLUICE_METRICS_ADDR", &metrics_addr);
        for (k, v) in self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(stderr);
        if self.own_process_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        Ok(IngestProcess {
            pid: child.id(),
            child,
            metrics_addr,
            log: log.to_owned(),
        })
    }
}

/// A free TCP port on 127.0.0.1 (free when asked: the child binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `sluice-ingest run`; killed if dropped while running.
#[derive(Debug)]
pub struct IngestProcess {
    child: Child,
    pub pid: u32,
    /// host:port of `/metrics` and `/health/*`.
    pub metrics_addr: String,
    pub log: PathBuf,
}

impl IngestProcess {
    /// The Prometheus exposition.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        metrics::scrape(&self.metrics_addr).await
    }

    /// GET `path` on the metrics/health port: (status code, body).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        metrics::get(&self.metrics_addr, path).await
    }

    /// Polls the exposition until `ready` holds (or the timeout passes; then returns the last one).
    pub async fn metrics_when(
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

    /// Polls the exposition until the family `name` sums to at least `at_least` (or the timeout
    /// passes; then returns the last one).
    pub async fn metrics_after(
        &self,
        name: &str,
        at_least: f64,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        self.metrics_when(timeout, |text| metric_sum(text, name) >= at_least)
            .await
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Still running? (An exit is an error for a load run or the demo: ingest must outlive them.)
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "sluice-ingest exited early ({status}); log: {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Waits until every partition is assigned (`sluice_consumer_assigned_partitions` ≥ `partitions`); returns
    /// when that was first seen.
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

    /// SIGTERM, then waits for the exit status (SIGKILL after `timeout`, and an error).
    pub fn terminate(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        signal(self.pid, "TERM")?;
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

    /// SIGKILL: no flush, no commit, no goodbye.
    pub fn crash(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Resident memory of the process, in bytes (from /proc).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// What the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// `kill -<name> <pid>`.
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}
