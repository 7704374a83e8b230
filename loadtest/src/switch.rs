//! Live switches during one run: the load keeps going while the server is reconfigured
//! (`POST /admin/reload`) on a schedule, and the run is reported segment by segment, one
//! segment per configuration, side by side.
//!
//! A segment starts when its reload has *finished* (the new configuration is live), so
//! requests answered by the old executor while the new one was being built count for
//! the old segment. Each sample is attributed by its scheduled send time.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::stats::{Recorder, Sample, Totals};

/// One configuration to switch to: a label for the report and the TOML to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    /// Shown in the report, e.g. `rayon`.
    pub label: String,
    /// The body of `POST /admin/reload`, e.g. `executor.strategy = "rayon"`.
    pub toml: String,
}

impl Switch {
    /// Switches to each strategy in turn.
    pub fn strategies(names: &[String]) -> Vec<Switch> {
        names
            .iter()
            .map(|s| Switch {
                label: s.clone(),
                toml: format!("executor.strategy = {s:?}"),
            })
            .collect()
    }
}

/// When and where to switch: `steps` in turn (cycling), the first at the start of the
/// measured window, each next one `every` after the previous reload finished, so every
/// configuration is live for `every` whatever its reload took.
#[derive(Clone, Debug)]
pub struct SwitchPlan {
    /// Base URL of the listener that serves `/admin/reload` (the admin listener if any).
    pub admin_url: String,
    /// Time between two switches.
    pub every: Duration,
    /// The configurations, in order.
    pub steps: Vec<Switch>,
}

/// What one segment of a switching run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// The switch's label.
    pub label: String,
    /// When the segment started, seconds after the measured window began.
    pub start_s: f64,
    /// How long the reload that opened it took, as the server reported it.
    pub reload_ms: f64,
    /// The configuration generation it reported.
    pub generation: u64,
    /// What the load saw while this configuration was live.
    #[serde(flatten)]
    pub totals: Totals,
}

/// A reload that completed: when, and what the server said.
#[derive(Clone, Debug)]
struct Applied {
    label: String,
    at: Instant,
    took_ms: f64,
    generation: u64,
}

/// Samples kept for splitting into segments at the end of the run.
#[derive(Default)]
pub struct Segments {
    samples: Mutex<Vec<Sample>>,
    applied: Mutex<Vec<Applied>>,
}

impl Segments {
    /// Keeps one measured sample.
    pub fn record(&self, s: &Sample) {
        self.samples.lock().expect("samples lock").push(*s);
    }

    /// Applies the plan's switches from `start` until `end`; fails on the first reload
    /// the server refuses, since a run that did not switch measures nothing it claims.
    pub async fn drive(
        self: Arc<Self>,
        plan: SwitchPlan,
        start: Instant,
        end: Instant,
    ) -> Result<()> {
        let client = Client::new(&plan.admin_url)?;
        let mut at = start;
        for k in 0.. {
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            let step = &plan.steps[k % plan.steps.len()];
            let (status, body) = client
                .post("/admin/reload", &step.toml, Duration::from_secs(120))
                .await?;
            if status != 200 {
                bail!("reload to {} answered {status}: {body}", step.label);
            }
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let done = Instant::now();
            self.applied.lock().expect("applied lock").push(Applied {
                label: step.label.clone(),
                at: done,
                took_ms: v["took_ms"].as_f64().unwrap_or(0.0),
                generation: v["generation"].as_u64().unwrap_or(0),
            });
            at = done + plan.every;
        }
        Ok(())
    }

    /// Splits the kept samples at each completed reload. Samples before the first
    /// completed reload form a segment labelled `before switching`.
    pub fn summarise(
        &self,
        window_start: Instant,
        window_end: Instant,
        late: Duration,
    ) -> Vec<SegmentSummary> {
        let applied = self.applied.lock().expect("applied lock").clone();
        let mut bounds = vec![(window_start, None)];
        // A reload that finished after the window measured nothing.
        bounds.extend(
            applied
                .iter()
                .filter(|a| a.at < window_end)
                .map(|a| (a.at.max(window_start), Some(a))),
        );
        let samples = self.samples.lock().expect("samples lock");
        let mut out = Vec::with_capacity(bounds.len());
        for (i, (from, switch)) in bounds.iter().enumerate() {
            let to = bounds
                .get(i + 1)
                .map_or(window_end, |b| b.0)
                .min(window_end);
            let mut recorder = Recorder::new(late);
            for s in samples
                .iter()
                .filter(|s| s.scheduled >= *from && s.scheduled < to)
            {
                recorder.record(s);
            }
            let window = to.saturating_duration_since(*from);
            if window.is_zero() && switch.is_none() {
                continue;
            }
            out.push(SegmentSummary {
                label: switch.map_or("before switching".into(), |a| a.label.clone()),
                start_s: from.saturating_duration_since(window_start).as_secs_f64(),
                reload_ms: switch.map_or(0.0, |a| a.took_ms),
                generation: switch.map_or(0, |a| a.generation),
                totals: recorder.totals(window),
            });
        }
        out
    }
}

/// The segments side by side, one row each.
pub struct SegmentTable<'a>(pub &'a [SegmentSummary]);

impl fmt::Display for SegmentTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| segment | from s | reload ms | ok | errors | req/s | p50 ms | p99 ms | max ms |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|")?;
        for s in self.0 {
            let t = &s.totals;
            writeln!(
                f,
                "| {} | {:.1} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.label,
                s.start_s,
                s.reload_ms,
                t.successes,
                t.error_count(),
                t.throughput_rps,
                t.latency.p50_ms,
                t.latency.p99_ms,
                t.latency.max_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Endpoint, Outcome};

    fn ok_at(base: Instant, ms: u64, took: u64) -> Sample {
        let at = base + Duration::from_millis(ms);
        Sample {
            endpoint: Endpoint::Embeddings,
            scheduled: at,
            sent: at,
            done: at + Duration::from_millis(took),
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn samples_are_split_at_each_completed_reload() {
        let base = Instant::now();
        let seg = Segments::default();
        for ms in [100, 200, 1_100, 1_200, 1_300, 2_500] {
            seg.record(&ok_at(base, ms, 10));
        }
        for (label, at) in [("rayon", 1_000), ("workers", 2_000)] {
            seg.applied.lock().unwrap().push(Applied {
                label: label.into(),
                at: base + Duration::from_millis(at),
                took_ms: 50.0,
                generation: 2,
            });
        }
        let s = seg.summarise(
            base,
            base + Duration::from_secs(3),
            Duration::from_millis(5),
        );
        let rows: Vec<(&str, u64)> = s
            .iter()
            .map(|s| (s.label.as_str(), s.totals.successes))
            .collect();
        assert_eq!(
            rows,
            [("before switching", 2), ("rayon", 3), ("workers", 1)]
        );
        assert!((s[1].totals.throughput_rps - 3.0).abs() < 1e-9);
        assert!((s[1].start_s - 1.0).abs() < 1e-9);
        let table = SegmentTable(&s).to_string();
        assert!(
            table.contains("| rayon | 1.0 | 50 | 3 | 0 | 3.0 |"),
            "{table}"
        );
    }

    #[test]
    fn strategies_become_reload_bodies() {
        let s = Switch::strategies(&["inline".into(), "rayon".into()]);
        assert_eq!(s[1].toml, "executor.strategy = \"rayon\"");
        assert_eq!(s[0].label, "inline");
    }
}
