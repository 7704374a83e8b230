//! The connection cap: each connection holds one file descriptor, so the default cap is
//! the process's open-file limit (RLIMIT_NOFILE) minus what the rest of the process needs.

use crate::config::{ConnectionCap, ServerConfig};
use serde::Serialize;

/// Descriptors kept for the process itself: stdio, the runtime's epoll and event fds, the
/// listeners, the model, tokenizer and knowledge-base files while loading, the ONNX
/// Runtime library, and log files if stderr is redirected. A few dozen in practice.
const RESERVED: u64 = 64;

/// What [`derived_cap`] keeps free on top of [`RESERVED`], as a fraction of the limit:
/// connections asked to close (shed, timed out) hold their descriptor until the client
/// has finished closing, beyond the cap.
const CLOSING_SHARE: u64 = 64;

/// The fallback when the limit cannot be read (not a Unix system): Linux's usual default.
const UNKNOWN_LIMIT: u64 = 1024;

/// Raises the soft open-file limit to the hard limit, where allowed; returns the soft limit
/// now in force. Called once by `concur serve` at start (a process-wide setting, so not by
/// the library).
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft open-file limit now in force, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
}

/// The cap that fits an open-file limit of `limit`, leaving headroom for the process.
pub fn derived_cap(limit: u64) -> usize {
    let headroom = RESERVED + limit / CLOSING_SHARE;
    let cap = limit.saturating_sub(headroom).max(1);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The connection caps in force, as `/info` shows them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectionLimits {
    /// Open connections at most (both listeners).
    pub max: usize,
    /// Whether `max` was derived from the open-file limit (`max_connections = "auto"`).
    pub derived: bool,
    /// The soft RLIMIT_NOFILE when the server started, if known.
    pub open_file_limit: Option<u64>,
    /// Open connections per client address at most; None = off.
    pub max_per_client: Option<usize>,
}

impl ConnectionLimits {
    /// Resolves `server.max_connections` against the open-file limit now in force; warns
    /// when a configured cap cannot be reached under that limit.
    pub fn resolve(server: &ServerConfig) -> ConnectionLimits {
        let open_file_limit = open_file_limit();
        let fits = derived_cap(open_file_limit.unwrap_or(UNKNOWN_LIMIT));
        let (max, derived) = match server.max_connections {
            ConnectionCap::Auto => (fits, true),
            ConnectionCap::Fixed(n) => {
                if n > fits {
                    tracing::warn!(
                        max_connections = n,
                        open_file_limit,
                        "server.max_connections is above what the open-file limit allows \
                         ({fits}); accepting will fail with `too many open files` first"
                    );
                }
                (n, false)
            }
        };
        let limits = ConnectionLimits {
            max,
            derived,
            open_file_limit,
            max_per_client: server.max_connections_per_client,
        };
        tracing::info!(
            max_connections = limits.max,
            derived_from_open_file_limit = derived,
            open_file_limit,
            max_per_client = limits.max_per_client,
            "connection cap"
        );
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_derived_cap_leaves_headroom_below_the_limit() {
        assert_eq!(derived_cap(1024), 1024 - 64 - 16);
        assert_eq!(derived_cap(65_536), 65_536 - 64 - 1024);
        assert_eq!(derived_cap(10), 1, "never zero");
        assert!(derived_cap(u64::MAX) > 1_000_000);
    }

    #[test]
    fn auto_follows_the_open_file_limit_and_a_number_is_kept() {
        let limit = open_file_limit().expect("readable on Linux");
        let auto = ConnectionLimits::resolve(&Config::default().server);
        assert!(auto.derived);
        assert_eq!(auto.max, derived_cap(limit));
        assert_eq!(auto.open_file_limit, Some(limit));
        assert_eq!(auto.max_per_client, None);
        let text = "[server]\nmax_connections = 7\nmax_connections_per_client = 2\n";
        let fixed = ConnectionLimits::resolve(&Config::parse(text).unwrap().server);
        assert_eq!(
            (fixed.max, fixed.derived, fixed.max_per_client),
            (7, false, Some(2))
        );
    }
}
