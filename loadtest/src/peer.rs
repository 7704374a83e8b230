//! External servers measured beside concur ("peers"), e.g. the Python
//! FastAPI server in `../shared/peers/`: started by a shell command in a
//! process group of their own, ready when `GET /health` answers 200, and
//! stopped by signalling the whole group, so a server that forks workers
//! (or a shell that does not `exec`) leaves nothing behind.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::server::{free_port, wait_until_ok, Probe};

/// The placeholder a peer command must contain; replaced by a free port.
pub const PORT: &str = "{port}";

/// A peer as given on the command line: `NAME=COMMAND`, where COMMAND runs
/// through `sh -c` with [`PORT`] replaced by a free loopback port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSpec {
    /// Short name for the report and the log file (`server-NAME.log`).
    pub name: String,
    /// The shell command, with the [`PORT`] placeholder.
    pub command: String,
}

impl PeerSpec {
    /// The command with the port filled in.
    pub fn command_for(&self, port: u16) -> String {
        self.command.replace(PORT, &port.to_string())
    }
}

impl FromStr for PeerSpec {
    type Err = anyhow::Error;

    /// Splits at the first `=`, so the command may itself set environment
    /// variables (`py=PEER_MODE=threads python -m uvicorn ...`).
    fn from_str(s: &str) -> Result<Self> {
        let (name, command) = s
            .split_once('=')
            .with_context(|| format!("peer {s:?}: expected NAME=COMMAND"))?;
        let name = name.trim();
        let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if name.is_empty() || !name.chars().all(valid) {
            bail!("peer name {name:?}: use letters, digits, '-', '_' or '.'");
        }
        if !command.contains(PORT) {
            bail!("peer {name}: the command must contain {PORT}, where the peer listens");
        }
        Ok(PeerSpec {
            name: name.to_string(),
            command: command.trim().to_string(),
        })
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.command)
    }
}

/// Sends `signal` to every process of group `pgid`; a group already gone
/// is not an error.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: `killpg` has no memory effects. The group is the one our
    // child leads; its id cannot be reused while any member lives.
    unsafe { libc::killpg(pgid, signal) };
}

/// Processes of group `pgid` that are still running (zombies excluded:
/// they hold no resources and only wait for their parent to reap them).
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and
            // parentheses, so fields are counted after the last ')'.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[2].parse() == Ok(pgid) && !matches!(fields[0], "Z" | "X")
        })
        .collect()
}

/// A running peer. Dropping it before [`Peer::stop`] finished (an error
/// path, a cancelled future) kills its group.
pub struct Peer {
    child: Child,
    /// The group id: the shell's pid, since it leads a new group.
    pgid: libc::pid_t,
    stopped: bool,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Where the peer's stdout and stderr go.
    pub log: PathBuf,
}

impl Peer {
    /// Runs the spec's command through `sh -c` in a new process group and
    /// waits until `GET /health` answers 200. Fails with the log's tail if
    /// the shell exits or the peer is not ready within `ready_timeout`.
    pub async fn start(spec: &PeerSpec, log: &Path, ready_timeout: Duration) -> Result<Self> {
        let port = free_port()?;
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(spec.command_for(port))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting peer {}", spec.name))?;
        let pgid = child.id().context("peer exited before it had a pid")? as libc::pid_t;
        let mut peer = Peer {
            child,
            pgid,
            stopped: false,
            base_url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        // On failure `peer` is dropped here, which kills the whole group.
        peer.wait_ready(ready_timeout).await?;
        Ok(peer)
    }

    /// The peer's process group id.
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let probe = Probe {
            what: "peer",
            path: "/health",
            state: "healthy",
        };
        wait_until_ok(&mut self.child, &self.base_url, &self.log, probe, timeout).await
    }

    /// SIGTERM to the group, then SIGKILL to whatever is still running
    /// after `grace`. Returns how it ended, e.g. `SIGTERM` or `SIGKILL
    /// after 10s`; fails only if a member outlives the SIGKILL.
    pub async fn stop(mut self, grace: Duration) -> Result<String> {
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        // Reap the shell first (a zombie would still count as a member
        // for `kill`), then wait for the rest of the group.
        let reaped = tokio::time::timeout_at(deadline.into(), self.child.wait()).await;
        while !live_group_members(self.pgid).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if reaped.is_ok() && live_group_members(self.pgid).is_empty() {
            self.stopped = true;
            return Ok("SIGTERM".into());
        }
        signal_group(self.pgid, libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let bound = Instant::now() + Duration::from_secs(5);
        while !live_group_members(self.pgid).is_empty() {
            if Instant::now() >= bound {
                bail!("peer group {} survived SIGKILL", self.pgid);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stopped = true;
        Ok(format!("SIGKILL after {grace:?}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_name_and_command() {
        let p: PeerSpec = "py=PEER_MODE=threads python -m uvicorn app --port {port}"
            .parse()
            .unwrap();
        assert_eq!(p.name, "py");
        assert_eq!(
            p.command,
            "PEER_MODE=threads python -m uvicorn app --port {port}"
        );
        assert_eq!(
            p.command_for(8123),
            "PEER_MODE=threads python -m uvicorn app --port 8123"
        );
        assert_eq!(p.to_string().parse::<PeerSpec>().unwrap(), p);
        assert!("no-equals-sign".parse::<PeerSpec>().is_err());
        assert!("=cmd {port}".parse::<PeerSpec>().is_err());
        assert!("a b=cmd {port}".parse::<PeerSpec>().is_err());
        let err = "py=python -m http.server".parse::<PeerSpec>().unwrap_err();
        assert!(err.to_string().contains("{port}"), "{err}");
    }

    #[test]
    fn live_group_members_sees_only_running_processes() {
        // SAFETY: getpgrp has no preconditions.
        let me = unsafe { libc::getpgrp() };
        assert!(live_group_members(me).contains(&(std::process::id() as i32)));
        // Above the kernel's pid limit (at most 2^22), so no group has it.
        assert!(live_group_members(i32::MAX).is_empty());
    }
}
