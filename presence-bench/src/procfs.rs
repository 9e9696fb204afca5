//! Server CPU time and memory from /proc: the given PIDs and all their descendants (Kamailio
//! forks its workers), each process with all its threads.
//!
//! CPU: `utime + stime` (plus `cutime + cstime`, the time of children already reaped, so that
//! a worker exiting between two samples does not make time vanish) from `/proc/PID/stat`, in
//! clock ticks of 1/100 s (USER_HZ, 100 on every Linux ABI). Memory: `VmRSS` from
//! `/proc/PID/status` and `Pss` from `/proc/PID/smaps_rollup`. Summing RSS over forked
//! processes counts shared memory (Kamailio's shm) once per process; PSS splits shared pages
//! between the processes that map them, so its sum is the real footprint.

use std::collections::HashMap;

/// Clock ticks per second of /proc/PID/stat (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// One sample of a process tree.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Processes found (roots and descendants).
    pub processes: usize,
    pub user_ticks: u64,
    pub sys_ticks: u64,
    pub rss_kb: u64,
    /// None when smaps_rollup could not be read for some process.
    pub pss_kb: Option<u64>,
}

impl Sample {
    /// CPU seconds (user, system) from `earlier` to this sample.
    pub fn cpu_since(&self, earlier: &Sample) -> (f64, f64) {
        (
            self.user_ticks.saturating_sub(earlier.user_ticks) as f64 / TICKS_PER_SECOND,
            self.sys_ticks.saturating_sub(earlier.sys_ticks) as f64 / TICKS_PER_SECOND,
        )
    }

    /// The memory figure to compare: PSS when known, else RSS (kB).
    pub fn memory_kb(&self) -> u64 {
        self.pss_kb.unwrap_or(self.rss_kb)
    }
}

/// Fields of /proc/PID/stat after the command name.
struct Stat {
    ppid: u32,
    user: u64,
    sys: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    let num = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    Some(Stat {
        ppid: u32::try_from(num(1)?).ok()?,
        user: num(11)? + num(13)?,
        sys: num(12)? + num(14)?,
    })
}

/// `pids` and every process descending from them.
pub fn process_tree(pids: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(st) = read_stat(pid) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out: Vec<u32> = Vec::new();
    let mut todo: Vec<u32> = pids.to_vec();
    while let Some(pid) = todo.pop() {
        if out.contains(&pid) {
            continue;
        }
        out.push(pid);
        if let Some(c) = children.get(&pid) {
            todo.extend_from_slice(c);
        }
    }
    out
}

fn status_kb(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.get(key.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples `pids` and their descendants; None when `pids` is empty or none of them exists.
pub fn sample(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    let mut s = Sample {
        processes: 0,
        user_ticks: 0,
        sys_ticks: 0,
        rss_kb: 0,
        pss_kb: Some(0),
    };
    for pid in process_tree(pids) {
        let Some(st) = read_stat(pid) else { continue };
        s.processes += 1;
        s.user_ticks += st.user;
        s.sys_ticks += st.sys;
        s.rss_kb += status_kb(pid, "status", "VmRSS:").unwrap_or(0);
        s.pss_kb = match (s.pss_kb, status_kb(pid, "smaps_rollup", "Pss:")) {
            (Some(total), Some(p)) => Some(total + p),
            _ => None,
        };
    }
    (s.processes > 0).then_some(s)
}

/// This process's own CPU time (user + system seconds).
pub fn own_cpu_seconds() -> f64 {
    read_stat(std::process::id())
        .map(|s| (s.user + s.sys) as f64 / TICKS_PER_SECOND)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let s = sample(&[me]).expect("our own process");
        assert!(s.processes >= 1);
        assert!(s.rss_kb > 0);
        assert!(process_tree(&[1]).contains(&1));
        assert!(sample(&[]).is_none());
        assert!(sample(&[u32::MAX]).is_none());
    }
}
