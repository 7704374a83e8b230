//! The thread budget: how many threads the configuration asks for against the CPUs this
//! process may really use (cgroup quota and CPU affinity, not only the core count).

use crate::config::{Config, Strategy};
use crate::executor::width::Ladder;
use serde::Serialize;

/// What the configuration asks for and what the machine allows.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadBudget {
    /// The core budget of inference and the session widths that share it.
    pub ladder: Ladder,
    /// Cores the forward passes in flight use at most: the budget.
    pub inference_threads: usize,
    /// tokio worker threads (HTTP, JSON, tokenization of small requests).
    pub tokio_workers: usize,
    /// CPUs in this process's affinity mask.
    pub affinity_cpus: Option<usize>,
    /// The cgroup CPU quota in CPUs (`cpu.max`), if one is set.
    pub cgroup_quota_cpus: Option<f64>,
    /// What the process may use: the smallest of the above (std's view).
    pub available_cpus: usize,
    /// More inference threads than CPUs: they will take turns, adding latency.
    pub oversubscribed: bool,
}

impl ThreadBudget {
    pub fn compute(config: &Config) -> ThreadBudget {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let e = &config.executor;
        let ladder = Ladder::from_config(e, available);
        let inference_threads = ladder.cores;
        ThreadBudget {
            ladder,
            inference_threads,
            tokio_workers: e.tokio_worker_threads.unwrap_or(available),
            affinity_cpus: affinity_cpus(),
            cgroup_quota_cpus: cgroup_quota(),
            available_cpus: available,
            oversubscribed: inference_threads > available,
        }
    }

    /// Logs the budget, and warns when it oversubscribes the CPUs.
    pub fn log(&self, strategy: Strategy) {
        tracing::info!(
            strategy = strategy.as_str(),
            widths = ?self.ladder.rungs,
            inference_threads = self.inference_threads,
            tokio_workers = self.tokio_workers,
            available_cpus = self.available_cpus,
            cgroup_quota_cpus = ?self.cgroup_quota_cpus,
            affinity_cpus = ?self.affinity_cpus,
            "thread budget"
        );
        if self.oversubscribed {
            tracing::warn!(
                "the core budget of {} exceeds the {} CPUs this process may use; threads will contend",
                self.inference_threads,
                self.available_cpus
            );
        }
    }
}

/// CPUs in `Cpus_allowed_list` of /proc/self/status, e.g. "0-3,6".
fn affinity_cpus() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    parse_cpu_list(list.trim())
}

fn parse_cpu_list(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |n, part| {
        let count = match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<usize>().ok()? + 1 - a.trim().parse::<usize>().ok()?,
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
        Some(n + count)
    })
}

/// The cgroup v2 quota (`cpu.max` = "quota period", or "max period" for none).
fn cgroup_quota() -> Option<f64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    parse_cpu_max(&text)
}

fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?.parse::<f64>().ok()?;
    let period = parts.next()?.parse::<f64>().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// Sets the calling thread's nice value (only ever raised: lowering needs privileges).
///
/// On a machine with few cores, inference threads and tokio's workers compete for the
/// same CPUs; when a request arrives, the kernel may let a forward pass finish its time
/// slice before the event loop runs. A higher nice value for inference threads makes the
/// kernel prefer the event loop, which is what keeps event-loop lag low; throughput is
/// unchanged because the event loop needs little CPU.
pub fn lower_current_thread(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if result != 0 {
        tracing::warn!(
            "cannot set inference thread nice value to {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
    }

    #[test]
    fn oversubscription_is_flagged() {
        let mut config = Config::default();
        config.executor.parallelism = crate::config::Parallelism::Fixed;
        config.executor.sessions = 1024;
        config.executor.intra_op_threads = 4;
        assert!(ThreadBudget::compute(&config).oversubscribed);
        config.executor.sessions = 1;
        config.executor.intra_op_threads = 1;
        assert!(!ThreadBudget::compute(&config).oversubscribed);
        config.executor.parallelism = crate::config::Parallelism::Elastic;
        config.executor.cores = None;
        assert!(!ThreadBudget::compute(&config).oversubscribed);
        config.executor.cores = Some(1024);
        assert!(ThreadBudget::compute(&config).oversubscribed);
    }
}
