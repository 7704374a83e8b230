//! The report's fixtures (shared with the section modules' tests) and its own tests.

use super::*;
use crate::machine::Machine;
use crate::run::RunSummary;
use crate::server::BenchResult;
use crate::stats::{LatencySummary, Totals};
use crate::sweep::options::SweepOptions;
use crate::sweep::results::Versions;

pub(super) fn step(
    kind: &str,
    fraction: Option<f64>,
    users: Option<usize>,
    rps: f64,
    p99: f64,
) -> Step {
    Step {
        kind: kind.into(),
        fraction,
        pass: true,
        verdict: "ok".into(),
        client: RunSummary {
            users,
            target_rate: users.is_none().then_some(rps),
            totals: Totals {
                requests: 100,
                successes: 100,
                throughput_rps: rps,
                latency: LatencySummary {
                    count: 100,
                    p50_ms: p99 / 2.0,
                    p99_ms: p99,
                    ..LatencySummary::default()
                },
                ..Totals::default()
            },
            ..RunSummary::default()
        },
        server: None,
    }
}

pub(super) fn report(saturation_users: usize) -> SweepReport {
    let mut options = SweepOptions::new(
        "concur".into(),
        vec!["config/workers.toml".into()],
        "out".into(),
        "corpus.jsonl".into(),
    );
    options.saturation_users = saturation_users;
    let mut saturation = step("saturation", None, Some(256), 210.0, 1500.0);
    saturation.verdict = "ok (no latency target)".into();
    let preset = PresetResult {
        name: "workers".into(),
        config: "config/workers.toml".into(),
        bench: Some(BenchResult {
            sequences_per_second: 190.0,
            ..BenchResult::default()
        }),
        steps: vec![
            step("probe", None, Some(8), 165.0, 60.0),
            step("search", None, None, 150.0, 90.0),
            step("fraction", Some(0.5), None, 75.0, 20.0),
            saturation,
            step("idle", None, Some(1), 20.0, 8.0),
        ],
        max_rate: Some(150.0),
        max_throughput: Some(150.0),
        saturated_throughput: (saturation_users > 0).then_some(210.0),
        ..PresetResult::default()
    };
    SweepReport {
        machine: Machine::default(),
        versions: Versions::default(),
        options,
        presets: vec![preset],
        peers: Vec::new(),
        ceiling_rates: Vec::new(),
        engine_ceiling_sps: Some(200.0),
        best_preset: Some("workers".into()),
        files: Vec::new(),
    }
}

#[test]
fn summary_states_both_throughputs_against_the_ceilings() {
    let md = markdown(&report(256));
    assert!(md.contains("| max rate under SLO (req/s) |"), "{md}");
    assert!(md.contains("| max-rate throughput % of own bench | max-rate throughput % of engine ceiling | saturated (req/s) | saturated % of own bench | saturated % of engine ceiling |"), "{md}");
    // max rate 150 (79% of its 190 bench, 75% of the 200 ceiling);
    // saturated 210 (111% and 105%).
    assert!(
        md.contains("| workers | workers | 150.0 | 150.0 | 79% | 75% | 210.0 | 111% | 105% | 10.0 / 20.0 | 8.0 |"),
        "{md}"
    );
    assert!(
        md.contains("closed loop of 256 users with no think time"),
        "{md}"
    );
    assert!(md.contains("within 100 ms"), "{md}");
    assert!(md.contains("| best |"), "{md}");
}

#[test]
fn step_table_lists_the_saturation_step() {
    let md = markdown(&report(256));
    assert!(
        md.contains("| saturation (256 users) | – | 210.0 |"),
        "{md}"
    );
    assert!(md.contains("| ok (no latency target) |"), "{md}");
    assert!(md.contains("| probe (8 users) |"), "{md}");
    assert!(md.contains("| fraction 0.5 | 75.0 |"), "{md}");
    assert!(md.contains("| idle | – |"), "{md}");
}

#[test]
fn disabled_or_failed_saturation_is_shown() {
    let md = markdown(&report(0));
    assert!(md.contains("| 75% | – | – | – |"), "{md}");
    assert!(md.contains("saturation step disabled"), "{md}");
    let mut r = report(256);
    let s = &mut r.presets[0].steps[3];
    s.pass = false;
    s.verdict = "3 errors {\"503\": 3}".into();
    let md = markdown(&r);
    assert!(md.contains("| best; saturation step had errors |"), "{md}");
}
