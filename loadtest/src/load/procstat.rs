//! CPU time and memory of the processes a load run involves, read from `/proc`: `utime + stime` of
//! `/proc/<pid>/stat` (plus `cutime + cstime`, the time of children the process has reaped, which is
//! where a PostgreSQL backend's CPU goes when it exits), `VmRSS`/`VmHWM` of `/proc/<pid>/status`, and
//! for process families that share memory (PostgreSQL's backends all map `shared_buffers`: summing
//! their RSS would count it once per backend) the family's private memory plus its shared memory once
//! ([`family_resident_kb`]). The stack's processes are found through the pid files `infra/stack.sh`
//! writes under the state directory, or by name.

use std::path::Path;
use std::sync::OnceLock;

/// One process or a process family whose figures are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A single process (its threads included).
    Process(u32),
    /// A process and its direct children (PostgreSQL: the postmaster and its backends/workers).
    Family(u32),
}

impl Target {
    pub fn pid(self) -> u32 {
        match self {
            Target::Process(pid) | Target::Family(pid) => pid,
        }
    }
}

/// Fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    /// cutime + cstime (reaped children), in clock ticks.
    pub child_ticks: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every mainstream Linux).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Parses the text of a `/proc/<pid>/stat` file. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, so rest index 11.
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: u32::try_from(num(1)?).ok()?,
        ticks: num(11)? + num(12)?,
        child_ticks: num(13)? + num(14)?,
    })
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A `kB` field of `/proc/<pid>/status` (e.g. `VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&text, field)
}

fn kb_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split(':').next() == Some(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Direct children of `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// CPU seconds used so far: the process (and, for a family, its live children and the children it
/// has reaped). `None` when the process is gone.
pub fn cpu_seconds(target: Target) -> Option<f64> {
    let root = stat(target.pid())?;
    let ticks = match target {
        Target::Process(_) => root.ticks,
        Target::Family(pid) => {
            root.ticks
                + root.child_ticks
                + children(pid)
                    .into_iter()
                    .filter_map(stat)
                    .map(|s| s.ticks)
                    .sum::<u64>()
        }
    };
    Some(ticks as f64 / clk_tck())
}

/// Resident memory now, in kB: `VmRSS` of a process, [`family_resident_kb`] of a family.
pub fn memory_kb(target: Target) -> Option<u64> {
    match target {
        Target::Process(pid) => status_kb(pid, "VmRSS"),
        Target::Family(pid) => {
            let root = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let children = children(pid)
                .into_iter()
                .filter_map(|c| std::fs::read_to_string(format!("/proc/{c}/status")).ok());
            let statuses: Vec<String> = std::iter::once(root).chain(children).collect();
            Some(family_resident_kb(&statuses))
        }
    }
}

/// Resident memory of a family of processes that share memory, from their `/proc/<pid>/status`
/// texts: every process's private pages (`RssAnon`), plus the largest `RssShmem` and the largest
/// `RssFile` of any one of them — the shared memory (PostgreSQL's `shared_buffers`) and the mapped
/// binaries counted once, as the family's largest view of them. Every field is a counter the kernel
/// keeps: unlike `Pss` in `smaps_rollup`, reading it walks no page tables (a 10-minute run's driver
/// spent 122 CPU-s, twice its usual, sampling `Pss` with 8 GB of `shared_buffers`, docs/BENCHMARKS.md).
pub fn family_resident_kb(statuses: &[String]) -> u64 {
    let (mut private, mut shared, mut files) = (0, 0, 0);
    for text in statuses {
        private += kb_field(text, "RssAnon").unwrap_or(0);
        shared = shared.max(kb_field(text, "RssShmem").unwrap_or(0));
        files = files.max(kb_field(text, "RssFile").unwrap_or(0));
    }
    private + shared + files
}

/// CPU seconds and peak resident memory of this very process (for a generator's or drain's summary).
pub fn own_usage() -> (f64, u64) {
    let pid = std::process::id();
    (
        cpu_seconds(Target::Process(pid)).unwrap_or(0.0),
        status_kb(pid, "VmHWM").unwrap_or(0),
    )
}

/// The local stack's processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackPids {
    pub kafka: Option<u32>,
    pub postgres: Option<u32>,
    pub clickhouse: Option<u32>,
}

fn pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| stat(*pid).is_some_and(|s| s.state != 'Z'))
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The first live process whose command line satisfies `matches` (and whose parent does not, so a
/// PostgreSQL backend never wins over the postmaster).
fn find_by_cmdline(matches: impl Fn(&str) -> bool) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|&pid| {
        matches(&cmdline(pid))
            && stat(pid).is_some_and(|s| s.state != 'Z' && !matches(&cmdline(s.ppid)))
    })
}

/// Finds Kafka, PostgreSQL and ClickHouse: pid files under `state_dir` first, process names second.
pub fn find_stack(state_dir: &Path) -> StackPids {
    StackPids {
        kafka: pid_file(&state_dir.join("kafka/kafka.pid"))
            .or_else(|| find_by_cmdline(|c| c.contains("kafka.Kafka"))),
        postgres: pid_file(&state_dir.join("postgres/data/postmaster.pid"))
            .or_else(|| find_by_cmdline(|c| c.contains("postgres") && c.contains(" -D "))),
        clickhouse: pid_file(&state_dir.join("clickhouse/clickhouse.pid"))
            .or_else(|| find_by_cmdline(|c| c.contains("clickhouse-server"))),
    }
}

/// Load average (1, 5, 15 minutes).
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// Whole-machine CPU time (user+nice+system+irq+softirq+steal) and idle+iowait, in seconds, from
/// `/proc/stat`'s first line.
pub fn machine_cpu() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let idle = get(3) + get(4);
    Some((busy as f64 / clk_tck(), idle as f64 / clk_tck()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 4 0 \
                    100 1000 10 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 1,
                ticks: 300,
                child_ticks: 10
            }
        );
    }

    #[test]
    fn a_family_counts_private_memory_per_process_and_shared_memory_once() {
        let status = |anon: u64, shmem: u64, file: u64| {
            format!(
                "Name:\tpostgres\nVmRSS:\t{} kB\nRssAnon:\t{anon} kB\nRssFile:\t{file} kB\nRssShmem:\t{shmem} kB\n",
                anon + shmem + file
            )
        };
        // A postmaster and two backends: private 100 + 50 + 10, shared buffers seen at most 800,
        // the binary at most 30.
        let family = [status(100, 500, 30), status(50, 800, 30), status(10, 0, 25)];
        assert_eq!(family_resident_kb(&family), 160 + 800 + 30);
        assert_eq!(family_resident_kb(&[]), 0);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(Target::Process(pid)).is_some());
        assert!(memory_kb(Target::Process(pid)).unwrap() > 0);
        assert!(memory_kb(Target::Family(pid)).unwrap() > 0);
        assert!(status_kb(pid, "VmHWM").unwrap() > 0);
        assert!(clk_tck() > 0.0);
    }
}
