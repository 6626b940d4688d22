//! The driver's side of the generators: starts `sluice-load generate --share k/N …` processes, reads
//! their JSON lines (progress ticks, latency samples, the final summary and clock log) into shared
//! state, and waits for them to finish. Their stderr goes to `gen-<k>.log` in the run's directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::generate::{GenMsg, GenSummary, ProducerSettings, Shape};
use super::latency::Tracker;

/// What a phase asks of its generators.
#[derive(Debug, Clone)]
pub struct GenPlan {
    /// Names the log files: `gen-<label>-<k>.log`.
    pub label: String,
    pub brokers: String,
    /// Rank, crawl and click topics.
    pub topics: [String; 3],
    pub run_id: String,
    pub generators: u32,
    /// Events/s of the whole phase; 0 = as fast as possible.
    pub rate: f64,
    pub duration_s: Option<f64>,
    pub count: Option<u64>,
    pub sample_every: u64,
    pub start_at_ms: Option<i64>,
    pub shape: Shape,
    pub producer: ProducerSettings,
}

/// What one generator has reported so far.
#[derive(Debug, Clone, Default)]
pub struct GenState {
    pub ready: bool,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub clock: Vec<(u64, i64)>,
    pub summary: Option<GenSummary>,
}

/// Running generator processes.
#[derive(Debug)]
pub struct Generators {
    children: Vec<(u32, Child)>,
    state: Arc<Mutex<Vec<GenState>>>,
    logs: Vec<PathBuf>,
}

impl Generators {
    pub fn spawn(plan: &GenPlan, tracker: &Tracker, log_dir: &Path) -> anyhow::Result<Generators> {
        let exe = std::env::current_exe().context("cannot find the sluice-load executable")?;
        let state = Arc::new(Mutex::new(vec![
            GenState::default();
            plan.generators as usize
        ]));
        let mut children = Vec::new();
        let mut logs = Vec::new();
        for k in 1..=plan.generators {
            let log = log_dir.join(format!("gen-{}-{k}.log", plan.label));
            let stderr = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let mut cmd = Command::new(&exe);
            cmd.arg("generate")
                .arg(format!("--brokers={}", plan.brokers))
                .arg(format!("--rank-topic={}", plan.topics[0]))
                .arg(format!("--crawl-topic={}", plan.topics[1]))
                .arg(format!("--click-topic={}", plan.topics[2]))
                .arg(format!("--share={k}/{}", plan.generators))
                .arg(format!("--rate={}", plan.rate))
                .arg(format!("--run-id={}", plan.run_id))
                .arg(format!("--sample-every={}", plan.sample_every))
                .args(plan.shape.to_args())
                .args(plan.producer.to_args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .kill_on_drop(true);
            if let Some(d) = plan.duration_s {
                cmd.arg(format!("--duration-s={d}"));
            }
            if let Some(c) = plan.count {
                cmd.arg(format!("--count={c}"));
            }
            if let Some(at) = plan.start_at_ms {
                cmd.arg(format!("--start-at-ms={at}"));
            }
            let mut child = cmd.spawn().context("cannot start a generator")?;
            let stdout = child
                .stdout
                .take()
                .context("generator stdout not captured")?;
            let state = Arc::clone(&state);
            let tracker = tracker.clone();
            let slot = (k - 1) as usize;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let msg = match serde_json::from_str::<GenMsg>(&line) {
                        Ok(msg) => msg,
                        Err(e) => {
                            tracing::warn!(generator = slot + 1, error = %e, "unreadable generator line");
                            continue;
                        }
                    };
                    if let GenMsg::Sample(sample) = msg {
                        tracker.add(sample);
                        continue;
                    }
                    let mut all = lock(&state);
                    let st = &mut all[slot];
                    match msg {
                        GenMsg::Ready { .. } => st.ready = true,
                        GenMsg::Tick {
                            sent,
                            delivered,
                            failed,
                            clock,
                            ..
                        } => {
                            st.sent = sent;
                            st.delivered = delivered;
                            st.failed = failed;
                            st.clock.extend(clock);
                        }
                        GenMsg::Done { summary, clock } => {
                            st.sent = summary.sent;
                            st.delivered = summary.delivered;
                            st.failed = summary.failed;
                            st.clock.extend(clock);
                            st.summary = Some(summary);
                        }
                        GenMsg::Sample(_) => {}
                    }
                }
            });
            children.push((k, child));
            logs.push(log);
        }
        Ok(Generators {
            children,
            state,
            logs,
        })
    }

    pub fn state(&self) -> Vec<GenState> {
        lock(&self.state).clone()
    }

    /// Waits until every generator has connected its producer.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.state().iter().all(|s| s.ready) {
            for (k, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "generator {k} exited at start-up ({status}); log: {}",
                        self.logs[(*k - 1) as usize].display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("generators not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// True once every generator process has exited.
    pub fn all_exited(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|(_, c)| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Waits for every generator to exit and returns their summaries and clock logs.
    pub async fn finish(
        mut self,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(GenSummary, Vec<(u64, i64)>)>> {
        for (k, child) in &mut self.children {
            let status = tokio::time::timeout(timeout, child.wait())
                .await
                .with_context(|| format!("generator {k} did not finish within {timeout:?}"))??;
            if !status.success() {
                bail!(
                    "generator {k} failed ({status}); log: {}",
                    self.logs[(*k - 1) as usize].display()
                );
            }
        }
        // The reader tasks may still be parsing the last lines.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = self.state();
            if state.iter().all(|s| s.summary.is_some()) {
                return state
                    .into_iter()
                    .map(|s| {
                        let summary = s.summary.context("generator summary missing")?;
                        Ok((summary, s.clock))
                    })
                    .collect();
            }
            if Instant::now() > deadline {
                bail!("a generator exited without its summary");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn lock(state: &Mutex<Vec<GenState>>) -> MutexGuard<'_, Vec<GenState>> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}
