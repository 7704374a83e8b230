//! What the run's machine is: CPU model, cores, cgroup CPU quota and
//! affinity, so a reader can tell what the figures were measured on.

use serde::{Deserialize, Serialize};

/// The machine a sweep ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Logical CPUs listed in /proc/cpuinfo.
    pub logical_cpus: usize,
    /// Raw /sys/fs/cgroup/cpu.max (`quota period`, or `max period`).
    pub cgroup_cpu_max: Option<String>,
    /// The quota as a number of CPUs, if one is set.
    pub cgroup_cpus: Option<f64>,
    /// CPUs in this process's affinity mask.
    pub affinity_cpus: Option<usize>,
    /// What the standard library thinks may run in parallel.
    pub available_parallelism: Option<usize>,
    /// Kernel release.
    pub kernel: Option<String>,
}

/// CPUs granted by a cgroup v2 `cpu.max` line; `None` when unlimited.
pub fn cgroup_cpus(cpu_max: &str) -> Option<f64> {
    let mut parts = cpu_max.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

fn affinity_cpus() -> Option<usize> {
    // SAFETY: `set` is a plain bitmask that sched_getaffinity fills in; the
    // size passed is its real size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(libc::CPU_COUNT(&set) as usize)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

impl Machine {
    /// Reads the current machine's description; missing files become `None`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let logical_cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cgroup_cpu_max = read_trimmed("/sys/fs/cgroup/cpu.max");
        Machine {
            cpu_model,
            logical_cpus,
            cgroup_cpus: cgroup_cpu_max.as_deref().and_then(cgroup_cpus),
            cgroup_cpu_max,
            affinity_cpus: affinity_cpus(),
            available_parallelism: std::thread::available_parallelism().ok().map(|n| n.get()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_quota_parses() {
        assert_eq!(cgroup_cpus("200000 100000"), Some(2.0));
        assert_eq!(cgroup_cpus("max 100000"), None);
        assert_eq!(cgroup_cpus(""), None);
    }

    #[test]
    fn detect_finds_some_cpus() {
        let m = Machine::detect();
        assert!(m.affinity_cpus.unwrap_or(1) >= 1);
    }
}
