//! Idle keep-alive connections held open beside a run (`loadtest run --idle-connections N`):
//! what many cheap connections cost the server, in memory and in the throughput and latency
//! of the load it serves meanwhile.
//!
//! Each connection sends one `GET /health`, reads the answer and then stays silent, as a
//! pooled keep-alive client between requests does. The server must keep them open longer
//! than the run for the figures to mean anything: raise `server.header_read_timeout_ms`
//! and `server.idle_timeout_ms`; the report counts the ones it closed anyway.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::check_loopback;

/// Connections being opened at once: enough to open 10,000 in seconds without overrunning
/// the server's listen backlog.
const OPENING_AT_ONCE: usize = 64;

/// Descriptors this process needs besides the held connections (the load's own pool,
/// stdio, the runtime).
const OWN_DESCRIPTORS: u64 = 256;

/// What holding the connections cost the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub requested: usize,
    /// Connections that got their `/health` answer and were held.
    pub opened: usize,
    /// Held connections the server had closed by the end of the run.
    pub closed_by_server: usize,
    /// The server's resident memory before opening them (needs `--server-pid`).
    pub server_rss_before_kib: Option<u64>,
    /// The server's resident memory once they were all open and idle.
    pub server_rss_held_kib: Option<u64>,
    /// (held - before) / opened.
    pub rss_per_connection_bytes: Option<f64>,
}

/// Idle connections held open; [`Held::finish`] reports and closes them.
pub struct Held {
    tasks: JoinSet<()>,
    closed: Arc<AtomicUsize>,
    report: IdleReport,
}

impl Held {
    /// Opens `count` keep-alive connections to the loopback server at `base_url`, each
    /// after one answered request, and measures the server's memory around it.
    pub async fn open(base_url: &str, count: usize, server_pid: Option<u32>) -> Result<Held> {
        let addr = resolve(base_url).await?;
        ensure_open_file_limit(count)?;
        let rss_before = server_pid.and_then(rss_kib);
        let closed = Arc::new(AtomicUsize::new(0));
        let opened = Arc::new(AtomicUsize::new(0));
        let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
        let mut tasks = JoinSet::new();
        for _ in 0..count {
            let permit = opening.clone().acquire_owned().await?;
            let (closed, opened) = (closed.clone(), opened.clone());
            tasks.spawn(async move {
                let Ok(mut stream) = open_one(addr).await else {
                    return;
                };
                drop(permit);
                opened.fetch_add(1, Ordering::SeqCst);
                // Silent from now on: any outcome of this read means the server closed it.
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte).await;
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Every opening task holds a permit until it has its answer or failed.
        let all = u32::try_from(OPENING_AT_ONCE).expect("small");
        let _ = tokio::time::timeout(Duration::from_secs(60), opening.acquire_many(all)).await;
        // Let the server finish its bookkeeping before measuring it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_held = server_pid.and_then(rss_kib);
        let opened = opened.load(Ordering::SeqCst);
        if opened < count {
            eprintln!("opened {opened} of {count} idle connections");
        }
        let rss_per_connection_bytes = match (rss_before, rss_held) {
            (Some(b), Some(h)) if opened > 0 => {
                Some((h as f64 - b as f64) * 1024.0 / opened as f64)
            }
            _ => None,
        };
        Ok(Held {
            tasks,
            closed,
            report: IdleReport {
                requested: count,
                opened,
                closed_by_server: 0,
                server_rss_before_kib: rss_before,
                server_rss_held_kib: rss_held,
                rss_per_connection_bytes,
            },
        })
    }

    /// The report, with how many the server closed meanwhile; closes the rest.
    pub async fn finish(mut self) -> IdleReport {
        self.report.closed_by_server = self.closed.load(Ordering::SeqCst);
        self.tasks.shutdown().await;
        self.report
    }
}

/// One connection that has sent `GET /health` and read the whole answer.
async fn open_one(addr: SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: loadtest\r\n\r\n")
        .await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await??;
        if n == 0 {
            bail!("closed before the answer");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(total) = response_len(&buf) {
            if buf.len() >= total {
                break;
            }
        }
    }
    if !buf.starts_with(b"HTTP/1.1 200") {
        bail!("answer was not 200");
    }
    Ok(stream)
}

/// Length of a response with a `content-length`, once its head is complete.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let body = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(head_end + body)
}

async fn resolve(base_url: &str) -> Result<SocketAddr> {
    let uri = check_loopback(base_url)?;
    let host = uri.host().context("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let found = tokio::net::lookup_host((host, port))
        .await?
        .find(|a| a.ip().is_loopback());
    found.with_context(|| format!("{host} does not resolve to a loopback address"))
}

/// Raises this process's soft open-file limit to the hard limit; fails if `count`
/// connections still would not fit.
fn ensure_open_file_limit(count: usize) -> Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("reading RLIMIT_NOFILE")?;
    let needed = count as u64 + OWN_DESCRIPTORS;
    if limit < needed {
        bail!("{count} idle connections need an open-file limit of {needed}; this process may use {limit} (ulimit -n)");
    }
    Ok(())
}

/// Resident memory of process `pid`, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_length_counts_head_and_body() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(response_len(r), Some(r.len()));
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\ncontent-len"), None);
        assert_eq!(response_len(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(27));
    }

    #[test]
    fn own_rss_is_readable() {
        let rss = rss_kib(std::process::id()).expect("VmRSS in /proc/self/status");
        assert!(rss > 100, "{rss} KiB");
    }
}
