//! A short, bounded sweep of the real server with the load tester's library: the whole
//! flow (bench, serve, search, fractions, light-load users steps, the step at a fraction of
//! the engine ceiling, saturation, idle, metrics scrapes, SIGTERM, report) on one preset, in
//! seconds. Figures from it mean nothing; the flow and the report do, so the latency and
//! lateness targets are loose enough for a loaded CI machine.

mod common;

use loadtest::sweep::{run, SweepOptions};
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
    opts.open_fraction_of_ceiling = Some(0.3);
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
