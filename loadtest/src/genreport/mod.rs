//! `loadtest gen-report DIR`: the report of a generation sweep
//! (`scripts/generation-sweep.sh`), written from the `loadtest stream
//! --json` files it left in DIR: `README.md` with one Markdown table per
//! part of the sweep, and SVG charts of output tokens/s, TTFT and ITL
//! against concurrent streams, one line per concur scheduler and one for
//! llama-server.
//!
//! The sweep names its files `{server}-{part}.json`: `concur-continuous-16`
//! (16 concurrent streams), `llama-16-mixed` (max_tokens 16-256),
//! `concur-static-ttft200` (a ~200-token prompt), `llama-open70` (open
//! loop at 70% of the continuous scheduler's capacity). A run the sweep
//! skipped or lost has no file and shows as not run; a file that does not
//! parse shows as unreadable. Neither stops the report.
//!
//! Inside: [`runs`] reads the folder, [`tables`] and [`charts`] render it.

pub mod charts;
pub mod runs;
pub mod tables;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use runs::Runs;

/// A server of the sweep: its row label and the prefix of its file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// Label in tables and chart legends.
    pub label: &'static str,
    /// File name prefix: `{prefix}-{part}.json`.
    pub prefix: &'static str,
}

/// concur's continuous-batching scheduler: the open loop's reference.
pub const CONTINUOUS: Server = Server {
    label: "concur continuous",
    prefix: "concur-continuous",
};

/// llama.cpp's llama-server, the peer.
pub const LLAMA: Server = Server {
    label: "llama-server",
    prefix: "llama",
};

/// Every server, in table and legend order (a server's index is its
/// chart colour, so it stays the same across charts).
pub const SERVERS: [Server; 4] = [
    CONTINUOUS,
    Server {
        label: "concur static",
        prefix: "concur-static",
    },
    Server {
        label: "concur sequential",
        prefix: "concur-sequential",
    },
    LLAMA,
];

/// The closed-loop stream counts the sweep runs by default: listed even
/// when a folder has no run of them, so a skipped count shows as not run.
pub const STREAM_COUNTS: [usize; 4] = [1, 4, 16, 32];

/// The run whose streams/s is the capacity the open loops are fractions of.
pub const CAPACITY_RUN: &str = "concur-continuous-16";

/// The file prefixes of every server.
pub fn prefixes() -> Vec<&'static str> {
    SERVERS.iter().map(|s| s.prefix).collect()
}

/// The closed-loop stream counts the report shows for `runs`.
pub fn stream_counts(runs: &Runs) -> Vec<usize> {
    runs.stream_counts(&prefixes(), &STREAM_COUNTS)
}

/// What [`write`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// The files written.
    pub files: Vec<PathBuf>,
    /// Run files that did not parse, with why (the report says so too).
    pub unreadable: Vec<(String, String)>,
}

/// Reads the sweep's runs in `dir` and writes `README.md` and the charts
/// beside them.
pub fn write(dir: &Path) -> Result<Written> {
    let runs = Runs::read(dir)?;
    let mut texts: Vec<(&str, String)> = charts::CHARTS
        .iter()
        .map(|c| (c.file, c.render(&runs)))
        .collect();
    texts.push((
        "README.md",
        tables::markdown(&dir.display().to_string(), &runs),
    ));
    let mut written = Written::default();
    for (name, text) in texts {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.files.push(path);
    }
    written.unreadable = runs
        .unreadable()
        .map(|(k, e)| (k.to_string(), e.to_string()))
        .collect();
    Ok(written)
}
