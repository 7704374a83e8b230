//! What a sweep measured, and the pass/fail rule for a step.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breakdown::Breakdown;
use crate::machine::Machine;
use crate::run::RunSummary;
use crate::server::BenchResult;
use crate::stats::Totals;

use super::SweepOptions;

/// One measured load step: the client's view and the server's breakdown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// `probe`, `search`, `fraction`, `users` (light load), `ceiling`,
    /// `saturation` or `idle`.
    pub kind: String,
    /// For `fraction` steps: the fraction of the found rate; for `ceiling`
    /// steps: the fraction of the first preset's `concur bench`.
    pub fraction: Option<f64>,
    /// Whether the step met the target (errors, late sends, p99); for the
    /// closed-loop `users` and `saturation` steps, which have no latency
    /// target, only errors count.
    pub pass: bool,
    /// Why it failed, or `ok`.
    pub verdict: String,
    /// What the client measured.
    pub client: RunSummary,
    /// Deltas of the server's metrics over the step (`None` if a scrape failed).
    pub server: Option<Breakdown>,
}

/// Everything measured for one preset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PresetResult {
    /// The config file's stem, e.g. `rayon`.
    pub name: String,
    /// The config file.
    pub config: PathBuf,
    /// `GET /info` as the server reported it.
    pub info: Option<serde_json::Value>,
    /// `concur bench` with this config.
    pub bench: Option<BenchResult>,
    /// Why the bench failed, if it did.
    pub bench_error: Option<String>,
    /// Steps in order: probe, search steps, fractions, users, ceiling steps
    /// (one per open fraction), saturation, idle.
    pub steps: Vec<Step>,
    /// Highest open-loop rate that passed.
    pub max_rate: Option<f64>,
    /// Achieved throughput at `max_rate`.
    pub max_throughput: Option<f64>,
    /// Achieved throughput of the closed-loop saturation step (req/s), no
    /// latency target; `None` if the step was skipped.
    pub saturated_throughput: Option<f64>,
    /// What stopped the preset early, with the server log's tail.
    pub error: Option<String>,
    /// The server's log file.
    pub log: PathBuf,
}

impl PresetResult {
    /// Steps of one kind, in order.
    pub fn steps_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Step> + 'a {
        self.steps.iter().filter(move |s| s.kind == kind)
    }
}

/// Everything measured for one peer: an external server run beside the
/// presets with the light-load and ceiling steps only (no bench, no
/// `/metrics`, no `/info`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerResult {
    /// The name given with `--peer NAME=COMMAND`.
    pub name: String,
    /// The command, with its `{port}` placeholder.
    pub command: String,
    /// `GET /health` as the peer answered it (JSON, else the raw text).
    pub health: Option<serde_json::Value>,
    /// Steps in order: users, ceiling steps (one per open fraction).
    pub steps: Vec<Step>,
    /// How the peer's process group ended: `SIGTERM`, or `SIGKILL after`
    /// the grace.
    pub stopped_by: Option<String>,
    /// What stopped the peer early, with its log's tail.
    pub error: Option<String>,
    /// The peer's log file (stdout and stderr).
    pub log: PathBuf,
}

/// The rate of one `ceiling` step: a fraction of the first preset's
/// `concur bench`, the same for every preset and peer so their p99s compare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeilingRate {
    /// The preset whose bench set it (the first one given).
    pub preset: String,
    /// That bench, sequences per second.
    pub bench_sps: f64,
    /// One of `--open-fractions-of-ceiling`.
    pub fraction: f64,
    /// `fraction * bench_sps`, requests per second.
    pub rate: f64,
}

/// Versions of the pieces that produced the figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Versions {
    /// `concur --version`.
    pub concur: Option<String>,
    /// `rustc -V`, if a toolchain is on PATH.
    pub rustc: Option<String>,
    /// This crate's version.
    pub loadtest: String,
}

/// The outcome of a sweep; also written to `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// The machine it ran on.
    pub machine: Machine,
    /// Versions of the server, compiler and load tester.
    pub versions: Versions,
    /// The options used.
    pub options: SweepOptions,
    /// One entry per config, in order.
    pub presets: Vec<PresetResult>,
    /// One entry per `--peer`, in order; measured after the presets.
    pub peers: Vec<PeerResult>,
    /// The rates of the `ceiling` steps, one per open fraction in order;
    /// empty if none was asked for or the first preset's bench did not run.
    pub ceiling_rates: Vec<CeilingRate>,
    /// Highest `concur bench` rate over all presets, sequences per second.
    pub engine_ceiling_sps: Option<f64>,
    /// Preset with the highest sustainable rate.
    pub best_preset: Option<String>,
    /// Files written (report.md, charts, results.json).
    pub files: Vec<PathBuf>,
}

/// Why a step fails the target, or `Ok` if it meets it.
pub fn verdict(t: &Totals, slo_p99: Duration, max_late_fraction: f64) -> Result<(), String> {
    let slo_ms = slo_p99.as_secs_f64() * 1000.0;
    if t.error_count() > 0 {
        return Err(format!("{} errors {:?}", t.error_count(), t.errors));
    }
    if t.latency.count == 0 {
        return Err("no successful requests".into());
    }
    if t.late_fraction() > max_late_fraction {
        return Err(format!("{:.1}% late sends", t.late_fraction() * 100.0));
    }
    if t.latency.p99_ms > slo_ms {
        return Err(format!("p99 {:.1} ms > {slo_ms:.0} ms", t.latency.p99_ms));
    }
    Ok(())
}

/// The informational verdict of the closed-loop `users` and `saturation`
/// steps: no latency target and no late sends (closed loop), so it fails
/// only on errors or if nothing succeeded.
pub fn closed_loop_verdict(t: &Totals) -> Result<(), String> {
    if t.error_count() > 0 {
        return Err(format!("{} errors {:?}", t.error_count(), t.errors));
    }
    if t.latency.count == 0 {
        return Err("no successful requests".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn totals(p99_ms: f64) -> Totals {
        Totals {
            requests: 100,
            successes: 100,
            latency: LatencySummary {
                count: 100,
                p99_ms,
                ..LatencySummary::default()
            },
            ..Totals::default()
        }
    }

    #[test]
    fn verdict_checks_errors_lateness_and_p99() {
        let slo = Duration::from_millis(100);
        assert!(verdict(&totals(99.0), slo, 0.01).is_ok());
        assert!(verdict(&totals(101.0), slo, 0.01)
            .unwrap_err()
            .contains("p99"));
        let mut late = totals(10.0);
        late.late_sends = 2;
        assert!(verdict(&late, slo, 0.01).unwrap_err().contains("late"));
        let mut errs = totals(10.0);
        errs.errors.insert("429".into(), 1);
        assert!(verdict(&errs, slo, 0.01).unwrap_err().contains("errors"));
        assert!(verdict(&Totals::default(), slo, 0.01).is_err());
    }

    #[test]
    fn closed_loop_verdict_ignores_p99_but_not_errors() {
        assert!(closed_loop_verdict(&totals(5000.0)).is_ok());
        let mut errs = totals(10.0);
        errs.errors.insert("503".into(), 3);
        assert!(closed_loop_verdict(&errs).unwrap_err().contains("3 errors"));
        assert!(closed_loop_verdict(&Totals::default()).is_err());
    }
}
