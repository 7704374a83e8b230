//! A short, bounded sweep of the real server with the load tester's library: the whole
//! flow (bench, serve, search, fractions, light-load users steps, the open-loop steps at
//! fractions of the engine ceiling, saturation, idle, metrics scrapes, SIGTERM, report) on
//! one preset, in seconds. Figures from it mean nothing; the flow and the report do, so the latency and
//! lateness targets are loose enough for a loaded CI machine.

mod common;

use loadtest::sweep::{run, SweepOptions, SweepReport};
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_sweep_of_the_real_server_writes_a_report() {
    let root = common::root();
    let out = root.join("target/test-sweep");
    let _ = std::fs::remove_dir_all(&out);
    let mut opts = SweepOptions::new(
        env!("CARGO_BIN_EXE_concur").into(),
        vec![root.join("config/workers.toml")],
        out.clone(),
        root.join("loadtest/corpus/chat.jsonl"),
    );
    opts.step = Duration::from_secs(2);
    opts.warmup = Duration::from_secs(1);
    opts.probe_users = 4;
    opts.saturation_users = 16;
    opts.max_steps = 2;
    opts.slo_p99 = Duration::from_secs(5);
    opts.max_late_fraction = 0.5;
    opts.late_threshold = Duration::from_millis(500);
    opts.users = vec![1, 4];
    opts.users_warmup = Duration::from_millis(500);
    opts.open_fractions_of_ceiling = vec![0.2, 0.3];
    opts.fractions = vec![0.5];
    opts.bench_seconds = 2;
    opts.idle_max_requests = 20;
    opts.idle_max = Duration::from_secs(5);
    let report = run(&opts).await.expect("sweep failed");
    let preset = &report.presets[0];
    assert_eq!(preset.name, "workers");
    assert!(preset.error.is_none(), "{:?}", preset.error);
    assert_eq!(preset.info.as_ref().unwrap()["strategy"], "workers");
    assert!(preset
        .bench
        .as_ref()
        .is_some_and(|b| b.sequences_per_second > 0.0));
    assert!(
        preset.max_rate.is_some_and(|r| r > 0.0),
        "no passing rate found"
    );
    for kind in [
        "probe",
        "search",
        "fraction",
        "users",
        "ceiling",
        "saturation",
        "idle",
    ] {
        let steps: Vec<_> = preset.steps_of(kind).collect();
        assert!(!steps.is_empty(), "no {kind} step");
        for s in steps {
            assert!(s.client.totals.successes > 0, "{kind}: nothing served");
            let server = s.server.as_ref().expect("metrics breakdown");
            assert!(
                server.batches.is_some_and(|b| b > 0.0),
                "{kind}: no batch seen in /metrics"
            );
        }
    }
    open_loop_steps_are_measured_and_reported(&report, &out);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| workers |"), "{md}");
    assert!(md.contains("Light load"), "{md}");
    assert_eq!(
        preset.steps_of("users").count(),
        2,
        "one step per user count"
    );
    for chart in ["latency_vs_throughput.svg", "event_loop_lag.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{chart}"
        );
    }
}

/// One open-loop step per fraction of the bench, at that fraction's rate, in the report's
/// open-loop table (p50, its multiple of the 1-user p50, p99) and in results.json.
fn open_loop_steps_are_measured_and_reported(report: &SweepReport, out: &Path) {
    let preset = &report.presets[0];
    let bench = preset.bench.as_ref().unwrap().sequences_per_second;
    let steps: Vec<_> = preset.steps_of("ceiling").collect();
    let fractions: Vec<_> = steps.iter().map(|s| s.fraction).collect();
    assert_eq!(fractions, [Some(0.2), Some(0.3)]);
    for s in &steps {
        let want = bench * s.fraction.unwrap();
        let rate = s.client.target_rate.expect("an open loop");
        assert!((rate - want).abs() < 1e-6, "{rate} against {want}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let (_, open) = md
        .split_once("## Open loop at fractions of the bench")
        .expect("an open-loop section");
    let header = format!(
        "| server | 1 user p50 (ms) | 0.2 × bench ({:.1} req/s) | 0.3 × bench ({:.1} req/s) | notes |",
        bench * 0.2,
        bench * 0.3
    );
    assert!(open.contains(&header), "{md}");
    let row = open.lines().find(|l| l.starts_with("| workers | "));
    let cells: Vec<&str> = row
        .expect("a workers row")
        .split('|')
        .map(str::trim)
        .collect();
    assert!(cells[2].parse::<f64>().is_ok(), "1-user p50: {cells:?}");
    for cell in &cells[3..5] {
        assert!(
            cell.starts_with("p50 ") && cell.contains(" × 1 user), p99 "),
            "{cells:?}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let rates = json["ceiling_rates"].as_array().expect("ceiling_rates");
    let fractions: Vec<_> = rates.iter().map(|c| c["fraction"].as_f64()).collect();
    assert_eq!(fractions, [Some(0.2), Some(0.3)]);
}
