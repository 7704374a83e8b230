//! The fake servers the sweep test's binary turns into: a fake `concur`
//! (`serve`, `bench`, `--version`) and a fake peer (`peer`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loadtest::sweep;

use super::common::{self, Reply};

/// What `concur bench --json` prints here: 400 sequences/s.
pub const BENCH_JSON: &str = r#"{"sequences_per_second": 400.0, "sequences": 400, "batches": 50, "batch_latency_seconds": {"p50": 0.01, "p90": 0.02, "p99": 0.03, "max": 0.04}, "padding_ratio": 0.2, "settings": {"fake": true}}"#;

fn arg<'a>(args: &'a [String], name: &str) -> &'a str {
    let i = args.iter().position(|a| a == name).expect("flag present");
    &args[i + 1]
}

/// `serve --config FILE --listen ADDR`: a server whose strategy is the
/// config's file stem; a preset named `broken` fails at start.
pub fn fake_serve(args: &[String]) {
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

/// `peer ADDR PIDFILE [ignore-term]`: a peer answering `GET /health` and
/// `POST /v1/embeddings`, like the Python one. It writes its pid to
/// PIDFILE so the test can check it is gone afterwards; with
/// `ignore-term` it ignores SIGTERM, so only SIGKILL stops it. Any other
/// request (`/metrics`, `/info`) is logged as unexpected.
pub fn fake_peer(args: &[String]) {
    std::fs::write(&args[2], std::process::id().to_string()).unwrap();
    if args.get(3).map(String::as_str) == Some("ignore-term") {
        // SAFETY: setting a signal's disposition to SIG_IGN has no memory
        // effects; no handler runs.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    let listen = args[1].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        let handler = |method: &str, path: &str, _: u64| {
            let (status, delay, body) = match (method, path) {
                ("GET", "/health") => (200, 0, r#"{"status": "ok", "mode": "fake"}"#),
                ("POST", "/v1/embeddings") => (200, 1, r#"{"object": "list", "data": []}"#),
                _ => {
                    eprintln!("unexpected {method} {path}");
                    (404, 0, "{}")
                }
            };
            Reply {
                status,
                delay: Duration::from_millis(delay),
                body: body.into(),
            }
        };
        common::serve(listener, Arc::new(handler), false).await;
    });
}
