//! End-to-end check of `loadtest::sweep::run` against a fake `concur`.
//!
//! This test has its own `main` (harness = false) so that its binary can
//! also *be* the fake server: the sweep execs it as `concur serve ...`,
//! `concur bench ...` and `concur --version`, and it answers like concur
//! with canned metrics. The real server is exercised by the server crate's
//! own integration tests.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Reply;
use loadtest::sweep::{self, SweepOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") => println!("concur 0.0.0-fake"),
        Some("bench") => println!(
            "{}",
            r#"{"sequences_per_second": 400.0, "sequences": 400, "batches": 50,
               "batch_latency_seconds": {"p50": 0.01, "p90": 0.02, "p99": 0.03, "max": 0.04},
               "padding_ratio": 0.2, "settings": {"fake": true}}"#
                .replace('\n', "")
        ),
        Some("serve") => fake_serve(&args),
        _ => run_test(),
    }
}

fn arg<'a>(args: &'a [String], name: &str) -> &'a str {
    let i = args.iter().position(|a| a == name).expect("flag present");
    &args[i + 1]
}

/// `serve --config FILE --listen ADDR`: a server whose strategy is the
/// config's file stem; a preset named `broken` fails at start.
fn fake_serve(args: &[String]) {
    let strategy = sweep::preset_name(Path::new(arg(args, "--config")));
    if strategy == "broken" {
        eprintln!("error: model directory models/missing not found");
        std::process::exit(2);
    }
    let listen = arg(args, "--listen").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        let posts = Arc::new(AtomicU64::new(0));
        let handler = move |method: &str, path: &str, _: u64| {
            let ok = |body: String| Reply {
                status: 200,
                delay: Duration::ZERO,
                body,
            };
            match (method, path) {
                ("GET", "/ready") => ok("ready".into()),
                ("GET", "/info") => ok(format!(r#"{{"strategy": "{strategy}"}}"#)),
                ("GET", "/metrics") => ok(metrics(&strategy, posts.load(Ordering::SeqCst))),
                _ => {
                    posts.fetch_add(1, Ordering::SeqCst);
                    Reply {
                        status: 200,
                        delay: Duration::from_millis(1),
                        body: "{}".into(),
                    }
                }
            }
        };
        // Serves until SIGTERM ends the process (the default disposition).
        common::serve(listener, Arc::new(handler), true).await;
    });
}

/// Canned metrics that grow with the number of POSTs served.
fn metrics(strategy: &str, n: u64) -> String {
    let l = format!(r#"strategy="{strategy}",model="m""#);
    let mut s = format!("# TYPE concur_requests_total counter\nconcur_requests_total{{{l},route=\"/v1/embeddings\",status=\"200\"}} {n}\n");
    for (name, le, sum) in [
        ("concur_queue_wait_seconds", "0.005", 0.001),
        ("concur_inference_seconds", "0.01", 0.002),
        ("concur_batch_size", "4", 2.0),
        ("concur_event_loop_lag_seconds", "0.001", 0.0002),
    ] {
        s += &format!(
            "{name}_bucket{{{l},le=\"{le}\"}} {n}\n{name}_bucket{{{l},le=\"+Inf\"}} {n}\n"
        );
        s += &format!(
            "{name}_sum{{{l}}} {}\n{name}_count{{{l}}} {n}\n",
            sum * n as f64
        );
    }
    s
}

fn run_test() {
    let dir = std::env::temp_dir().join(format!("loadtest-sweep-{}", std::process::id()));
    let configs: Vec<PathBuf> = ["fast", "broken"]
        .iter()
        .map(|name| {
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join(format!("{name}.toml"));
            std::fs::write(&p, "# fake preset\n").unwrap();
            p
        })
        .collect();
    let corpus = dir.join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"text\": \"hello\"}\n{\"text\": \"where is my order?\"}\n",
    )
    .unwrap();
    let me = std::env::current_exe().unwrap();
    let mut o = SweepOptions::new(me, configs, dir.join("out"), corpus);
    o.step = Duration::from_millis(800);
    o.warmup = Duration::from_millis(300);
    o.max_steps = 3;
    o.fractions = vec![0.5, 0.9];
    // Enough users for a deep queue, few enough for a shared test machine.
    o.saturation_users = 32;
    o.bench_seconds = 1;
    o.idle_max_requests = 10;
    o.idle_max = Duration::from_secs(2);
    o.ready_timeout = Duration::from_secs(10);
    // Generous targets: this checks the flow, not this machine's speed.
    o.slo_p99 = Duration::from_secs(1);
    o.max_late_fraction = 1.0;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(sweep::run(&o)).expect("sweep runs");

    let fast = &report.presets[0];
    assert!(fast.error.is_none(), "{:?}", fast.error);
    assert!(fast.max_rate.is_some());
    assert_eq!(fast.info.as_ref().unwrap()["strategy"], "fast");
    assert_eq!(fast.steps_of("probe").count(), 1);
    assert_eq!(fast.steps_of("search").count(), 3);
    assert_eq!(fast.steps_of("fraction").count(), 2);
    let kinds: Vec<&str> = fast.steps.iter().map(|s| s.kind.as_str()).collect();
    let n = kinds.len();
    assert_eq!(
        kinds[n - 4..],
        ["fraction", "fraction", "saturation", "idle"],
        "saturation runs after the fractions, before idle: {kinds:?}"
    );
    let sat = fast.steps_of("saturation").next().unwrap();
    assert_eq!(sat.client.users, Some(32));
    assert_eq!(sat.client.target_rate, None, "closed loop");
    assert!(sat.pass, "{}", sat.verdict);
    assert!(sat.client.totals.successes > 0);
    assert!(sat.server.is_some(), "metrics scraped around saturation");
    assert_eq!(
        fast.saturated_throughput,
        Some(sat.client.totals.throughput_rps)
    );
    assert!(fast.saturated_throughput.unwrap() > 0.0);
    let idle = fast.steps_of("idle").next().unwrap();
    assert_eq!(
        idle.client.totals.requests, 2,
        "idle run is one pass over the corpus"
    );
    let half = fast.steps_of("fraction").next().unwrap();
    let server = half.server.as_ref().expect("metrics scraped");
    assert_eq!(server.batch_size_mean, Some(2.0));
    assert!(server.event_loop_lag_p99_ms.unwrap() <= 1.0);
    assert_eq!(report.engine_ceiling_sps, Some(400.0));
    assert_eq!(report.best_preset.as_deref(), Some("fast"));
    assert_eq!(report.versions.concur.as_deref(), Some("concur 0.0.0-fake"));

    let broken = &report.presets[1];
    let err = broken.error.as_deref().expect("broken preset fails");
    assert!(err.contains("models/missing"), "log tail in error: {err}");

    let md = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(md.contains("| fast | fast |"), "{md}");
    assert!(md.contains("broken"));
    for column in [
        "| max rate under SLO (req/s) |",
        "| max-rate throughput % of engine ceiling |",
        "| saturated (req/s) | saturated % of own bench | saturated % of engine ceiling |",
    ] {
        assert!(md.contains(column), "missing {column}: {md}");
    }
    // The fast row's saturated figures are filled in, as a share of the
    // fake bench's 400 seq/s (own bench and engine ceiling alike).
    let row = md
        .lines()
        .find(|l| l.starts_with("| fast | fast |"))
        .unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let sat_rps = fast.saturated_throughput.unwrap();
    assert_eq!(cells[7], format!("{sat_rps:.1}"), "{row}");
    let sat_pct = format!("{:.0}%", sat_rps / 400.0 * 100.0);
    assert_eq!(cells[8], sat_pct, "{row}");
    assert_eq!(cells[9], sat_pct, "{row}");
    assert!(md.contains("closed loop of 32 users"), "{md}");
    assert!(md.contains("| saturation (32 users) |"), "{md}");
    for f in ["latency_vs_throughput.svg", "event_loop_lag.svg"] {
        let svg = std::fs::read_to_string(dir.join("out").join(f)).unwrap();
        assert!(svg.contains("<polyline") && svg.contains("fast"), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
    assert_eq!(json["presets"][0]["name"], "fast");
    assert_eq!(json["presets"][0]["saturated_throughput"], sat_rps);
    assert_eq!(json["options"]["saturation_users"], 32);
    if std::env::var_os("KEEP_SWEEP_OUT").is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    // The plain closing line CI and people read.
    println!("1 passed, 0 failed");
}
