//! The runs of one generation sweep folder: every `loadtest stream --json`
//! file in it by name, plus the memory and `/info` notes the sweep script
//! leaves beside them. A file the sweep did not write is simply absent; one
//! that does not parse is kept as its error, so the report can say so
//! instead of failing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use crate::stream::StreamSummary;

/// One run file: its summary, or why it could not be read.
pub type Loaded = std::result::Result<StreamSummary, String>;

/// What a sweep folder holds, by file stem (`concur-continuous-16`).
#[derive(Clone, Debug, Default)]
pub struct Runs {
    /// Run summaries (or their read errors), by stem.
    pub runs: BTreeMap<String, Loaded>,
    /// Resident memory after a scheduler's runs, KiB, by scheduler.
    pub rss_kib: BTreeMap<String, u64>,
    /// `GET /info` of a scheduler's server, by scheduler.
    pub info: BTreeMap<String, serde_json::Value>,
}

impl Runs {
    /// Reads every `*.json` run file of `dir` (`*-info.json` are the
    /// servers' `/info`), and the `concur-*-rss-kib.txt` notes.
    pub fn read(dir: &Path) -> Result<Self> {
        let mut runs = Runs::default();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let text = || std::fs::read_to_string(&path).map_err(|e| e.to_string());
            if let Some(sched) = scheduler_note(name, "-info.json") {
                if let Ok(v) =
                    text().and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                {
                    runs.info.insert(sched, v);
                }
            } else if let Some(sched) = scheduler_note(name, "-rss-kib.txt") {
                if let Some(kib) = text().ok().and_then(|t| t.trim().parse().ok()) {
                    runs.rss_kib.insert(sched, kib);
                }
            } else if let Some(stem) = name.strip_suffix(".json") {
                let loaded =
                    text().and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
                runs.runs.insert(stem.to_string(), loaded);
            }
        }
        Ok(runs)
    }

    /// The run named `stem`, if the sweep wrote it.
    pub fn get(&self, stem: &str) -> Option<&Loaded> {
        self.runs.get(stem)
    }

    /// The summary of run `stem`, if it was written and reads.
    pub fn ok(&self, stem: &str) -> Option<&StreamSummary> {
        self.get(stem)?.as_ref().ok()
    }

    /// The run files that did not parse, with why.
    pub fn unreadable(&self) -> impl Iterator<Item = (&str, &str)> {
        self.runs
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_ref().err()?.as_str())))
    }

    /// Closed-loop stream counts with a run of any server in `prefixes`
    /// (`{prefix}-{n}`), together with `always`: the counts the sweep runs
    /// by default, so a missing one shows as not run.
    pub fn stream_counts(&self, prefixes: &[&str], always: &[usize]) -> Vec<usize> {
        let mut counts: BTreeSet<usize> = always.iter().copied().collect();
        counts.extend(
            self.suffixes(prefixes, "")
                .filter_map(|s| s.parse::<usize>().ok()),
        );
        counts.into_iter().collect()
    }

    /// Open-loop percentages with a run of any server in `prefixes`
    /// (`{prefix}-open{pct}`), ascending.
    pub fn open_percents(&self, prefixes: &[&str]) -> Vec<u32> {
        let pcts: BTreeSet<u32> = self
            .suffixes(prefixes, "open")
            .filter_map(|s| s.parse().ok())
            .collect();
        pcts.into_iter().collect()
    }

    /// What follows `{prefix}-{part}` in the run stems, for every prefix.
    fn suffixes<'a>(
        &'a self,
        prefixes: &'a [&str],
        part: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        self.runs.keys().filter_map(move |stem| {
            prefixes.iter().find_map(|p| {
                let rest = stem
                    .strip_prefix(p)?
                    .strip_prefix('-')?
                    .strip_prefix(part)?;
                rest.bytes().all(|b| b.is_ascii_digit()).then_some(rest)
            })
        })
    }
}

/// The scheduler of a `concur-{scheduler}{suffix}` note file.
fn scheduler_note(name: &str, suffix: &str) -> Option<String> {
    let sched = name.strip_prefix("concur-")?.strip_suffix(suffix)?;
    (!sched.is_empty()).then(|| sched.to_string())
}

/// The file stem of a server's open loop at `pct` percent of capacity, as
/// the sweep script names it (`llama-open70` for 0.7).
pub fn open_stem(prefix: &str, pct: u32) -> String {
    format!("{prefix}-open{pct}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(stems: &[&str]) -> Runs {
        let mut r = Runs::default();
        for s in stems {
            r.runs.insert(s.to_string(), Ok(StreamSummary::default()));
        }
        r
    }

    #[test]
    fn stream_counts_join_the_defaults_and_the_files() {
        let r = runs(&[
            "llama-8",
            "concur-static-64",
            "concur-static-16-mixed",
            "llama-ttft200",
            "other-2",
        ]);
        let prefixes = ["concur-static", "llama"];
        assert_eq!(r.stream_counts(&prefixes, &[1, 4]), [1, 4, 8, 64]);
    }

    #[test]
    fn open_percents_come_from_the_file_names() {
        let r = runs(&["concur-continuous-open70", "llama-open50", "llama-open7x"]);
        assert_eq!(r.open_percents(&["concur-continuous", "llama"]), [50, 70]);
        assert_eq!(open_stem("llama", 70), "llama-open70");
    }

    #[test]
    fn notes_are_named_by_scheduler() {
        assert_eq!(
            scheduler_note("concur-static-rss-kib.txt", "-rss-kib.txt").as_deref(),
            Some("static")
        );
        assert_eq!(scheduler_note("llama-info.json", "-info.json"), None);
    }
}
