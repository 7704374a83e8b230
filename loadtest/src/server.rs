//! Starting and stopping `concur` processes, and running `concur bench`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::client::Client;

/// Asks the kernel for a free loopback port. The port is released before
/// the server binds it; another process could take it in between, which
/// on a test machine is rare enough to accept.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running `concur serve` process.
pub struct Server {
    /// `kill_on_drop` is set, so an error path that drops the handle still
    /// ends the process instead of leaking a server.
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Where the server's stdout and stderr go.
    pub log: PathBuf,
}

impl Server {
    /// Starts `concur serve --config CONFIG --listen 127.0.0.1:PORT` and
    /// waits until `GET /ready` answers 200. Fails with the log's tail if
    /// the process exits or is not ready within `ready_timeout`.
    pub async fn start(
        concur: &Path,
        config: &Path,
        log: &Path,
        ready_timeout: Duration,
    ) -> Result<Self> {
        let port = free_port()?;
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(concur)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", concur.display()))?;
        let mut server = Server {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        server.wait_ready(ready_timeout).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let probe = Probe {
            what: "server",
            path: "/ready",
            state: "ready",
        };
        wait_until_ok(&mut self.child, &self.base_url, &self.log, probe, timeout).await
    }

    /// Sends SIGTERM and waits up to `grace` for the drain to finish;
    /// after that the process is killed and an error returned.
    pub async fn stop(mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(pid) = self.child.id() {
            // SAFETY: `kill` has no memory effects; the pid is our own
            // child, which cannot have been reaped since we have not waited.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!("server did not exit within {grace:?} of SIGTERM; killed")
            }
        }
    }
}

/// Percentiles of batch latency reported by `concur bench`, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchLatency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// The JSON object `concur bench --json` prints: the raw engine ceiling
/// with no HTTP, no admission and no async runtime in the way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Sequences embedded per second.
    pub sequences_per_second: f64,
    /// Sequences embedded in total.
    #[serde(default)]
    pub sequences: u64,
    /// Batches run.
    #[serde(default)]
    pub batches: u64,
    /// Batch latency percentiles.
    #[serde(default)]
    pub batch_latency_seconds: BenchLatency,
    /// Fraction of token slots that were padding.
    #[serde(default)]
    pub padding_ratio: f64,
    /// The settings the bench ran with.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// Runs `concur bench` for `seconds` and parses its JSON. The process is
/// killed if it overruns by more than two minutes (model load included).
pub async fn bench(
    concur: &Path,
    config: &Path,
    corpus: &Path,
    seconds: u64,
) -> Result<BenchResult> {
    let child = Command::new(concur)
        .arg("bench")
        .arg("--config")
        .arg(config)
        .arg("--corpus")
        .arg(corpus)
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} bench", concur.display()))?;
    let limit = Duration::from_secs(seconds + 120);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .context("concur bench overran")??;
    if !out.status.success() {
        bail!(
            "concur bench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The JSON object is the last non-empty line, whatever was logged before it.
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("parsing concur bench output {line:?}"))
}

/// First line printed by `PROGRAM ARGS`, or `None` if it cannot run.
pub fn command_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}

/// What [`wait_until_ok`] polls, and the words its errors use.
pub(crate) struct Probe {
    pub what: &'static str,
    pub path: &'static str,
    pub state: &'static str,
}

/// Polls `GET base_url + probe.path` until it answers 200. Fails with the log's tail if
/// `child` exits first or `timeout` passes. Shared by concur servers and external peers.
pub(crate) async fn wait_until_ok(
    child: &mut Child,
    base_url: &str,
    log: &Path,
    probe: Probe,
    timeout: Duration,
) -> Result<()> {
    let client = Client::new(base_url)?;
    let deadline = Instant::now() + timeout;
    let Probe { what, path, state } = probe;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited with {status} before it was {state}; log:\n{}",
                log_tail(log, 30)
            );
        }
        // Connection refused while the model loads is expected.
        if let Ok((200, _)) = client.get(path, Duration::from_secs(2)).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} not {state} after {timeout:?}; log:\n{}",
                log_tail(log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_json_parses_with_optional_fields() {
        let b: BenchResult = serde_json::from_str(
            r#"{"sequences_per_second": 151.5, "sequences": 1515, "batches": 100,
                "batch_latency_seconds": {"p50": 0.05, "p90": 0.07, "p99": 0.09, "max": 0.1},
                "padding_ratio": 0.12, "settings": {"threads": 2}}"#,
        )
        .unwrap();
        assert_eq!(b.sequences_per_second, 151.5);
        assert_eq!(b.batch_latency_seconds.p99, 0.09);
        let minimal: BenchResult = serde_json::from_str(r#"{"sequences_per_second": 1}"#).unwrap();
        assert_eq!(minimal.batches, 0);
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port().unwrap(), 0);
    }
}
