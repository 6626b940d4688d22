//! CPU and memory of the processes a run watches (the stack's servers, ingest, the driver itself), the
//! machine as a whole, and the machine's description for the report.

use std::time::Instant;

use crate::load::procstat::{self, Target};
use crate::load::report::{Machine, ProcessFigure};

/// A process or family watched over a window.
#[derive(Debug, Clone)]
pub(super) struct Watched {
    pub(super) name: String,
    target: Target,
    note: String,
    start_cpu: Option<f64>,
    last_cpu: Option<f64>,
    peak_kb: u64,
}

impl Watched {
    pub(super) fn new(name: &str, target: Target, note: &str) -> Watched {
        Watched {
            name: name.to_owned(),
            target,
            note: note.to_owned(),
            start_cpu: None,
            last_cpu: None,
            peak_kb: 0,
        }
    }

    pub(super) fn start(&mut self) {
        self.start_cpu = procstat::cpu_seconds(self.target);
        self.last_cpu = self.start_cpu;
        self.sample();
    }

    pub(super) fn sample(&mut self) {
        if let Some(cpu) = procstat::cpu_seconds(self.target) {
            self.last_cpu = Some(cpu);
        }
        if let Some(kb) = procstat::memory_kb(self.target) {
            self.peak_kb = self.peak_kb.max(kb);
        }
    }

    pub(super) fn cpu(&self) -> f64 {
        match (self.start_cpu, self.last_cpu) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    pub(super) fn figure(&self, window_s: f64, vm_hwm_kb: Option<u64>) -> ProcessFigure {
        ProcessFigure {
            name: self.name.clone(),
            pids: match self.target {
                Target::Process(pid) => pid.to_string(),
                Target::Family(pid) => format!("{pid} + children"),
            },
            cpu_s: self.cpu(),
            cores: if window_s > 0.0 {
                self.cpu() / window_s
            } else {
                0.0
            },
            peak_rss_mib: self.peak_kb as f64 / 1024.0,
            vm_hwm_mib: vm_hwm_kb.map(|kb| kb as f64 / 1024.0),
            note: self.note.clone(),
        }
    }
}

pub(super) fn stack_watch(stack: &procstat::StackPids) -> Vec<Watched> {
    let mut out = Vec::new();
    if let Some(pid) = stack.kafka {
        out.push(Watched::new(
            "kafka broker",
            Target::Process(pid),
            "JVM; peak = highest 1 Hz RSS sample",
        ));
    }
    if let Some(pid) = stack.postgres {
        out.push(Watched::new(
            "postgres",
            Target::Family(pid),
            "postmaster + all backends/workers (CPU incl. exited ones); peak = highest 1 Hz sample of private memory summed + shared memory once",
        ));
    }
    if let Some(pid) = stack.clickhouse {
        out.push(Watched::new(
            "clickhouse-server",
            Target::Process(pid),
            "CPU includes the latency poller's lookups and background merges",
        ));
    }
    out
}

pub(super) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |(_, v)| v.trim().to_owned()),
        mem_total_gib: mem_kb / 1024.0 / 1024.0,
        loadavg_before: procstat::loadavg(),
        loadavg_after: [0.0; 3],
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Whole-machine busy CPU from a starting point: other work on a shared machine shows up here.
pub(super) struct MachineBusy {
    at: Instant,
    busy: Option<f64>,
}

impl MachineBusy {
    pub(super) fn start() -> MachineBusy {
        MachineBusy {
            at: Instant::now(),
            busy: procstat::machine_cpu().map(|c| c.0),
        }
    }

    /// Average busy cores since `start`.
    pub(super) fn cores(&self) -> f64 {
        match (self.busy, procstat::machine_cpu()) {
            (Some(a), Some((b, _))) => (b - a) / self.at.elapsed().as_secs_f64().max(1e-3),
            _ => 0.0,
        }
    }
}
