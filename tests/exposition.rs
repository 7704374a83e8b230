//! What a Prometheus user reads off /metrics besides the request counts: bucket bounds
//! written as short decimals (PromQL matches `le` as a string), start-up work kept out of the
//! request histograms, and the process and build series.

mod common;

use common::{sample, scrape, TestServer};
use loadtest::prom::Scrape;
use serde_json::json;

/// The short decimal a bucket bound is meant to be: at most 15 significant digits (float
/// noise such as 0.30000000000000004 sits in the 17th), printed as Rust prints the double
/// nearest it, which is the shortest form that reads back to that double.
fn short_decimal(x: f64) -> String {
    let rounded: f64 = format!("{x:.14e}").parse().unwrap();
    rounded.to_string()
}

/// Every `le` of every histogram is its short decimal, and the SLO bound 0.3 exists.
fn assert_exact_bounds(exposition: &str) {
    let scrape = Scrape::parse(exposition).expect("exposition parses");
    let mut bounds = 0;
    for s in &scrape.samples {
        let Some(le) = s.labels.get("le").filter(|le| *le != "+Inf") else {
            continue;
        };
        let x: f64 = le.parse().unwrap_or_else(|_| panic!("{}: le={le}", s.name));
        assert_eq!(*le, short_decimal(x), "{} has a noisy bound", s.name);
        bounds += 1;
    }
    assert!(bounds > 100, "only {bounds} bucket bounds");
    let slo = |name: &str| {
        scrape
            .samples
            .iter()
            .any(|s| s.name == name && s.labels.get("le").map(String::as_str) == Some("0.3"))
    };
    assert!(slo("concur_request_duration_seconds_bucket"));
    assert!(slo("concur_batch_padding_ratio_bucket"));
}

#[test]
fn the_bound_check_catches_float_noise() {
    assert_eq!(short_decimal(0.1 + 0.2), "0.3");
    assert_ne!((0.1 + 0.2).to_string(), "0.3");
    assert_eq!(short_decimal(0.000015), "0.000015");
    assert_eq!(short_decimal(256.0), "256");
}

/// Before any request, the knowledge base's start-up batches are not in the request
/// histograms (only in `concur_startup_seconds`); the first requests are. The same
/// exposition carries the process and build series and exact bucket bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_work_stays_out_of_request_histograms() {
    let server = TestServer::start("[executor]\nstrategy = \"workers\"\ncores = 1\n").await;
    let request_path = [
        "concur_queue_wait_seconds_count",
        "concur_tokenization_seconds_count",
        "concur_inference_seconds_count",
        "concur_batch_size_count",
        "concur_batch_tokens_count",
        "concur_batch_padding_ratio_count",
    ];
    let m = scrape(&server).await;
    for name in request_path {
        assert_eq!(sample(&m, name, &[]), 0.0, "{name} before any request");
    }
    for stage in ["engines", "knowledge_base"] {
        assert!(sample(&m, "concur_startup_seconds", &[("stage", stage)]) > 0.0);
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(&m, "concur_build_info", &[("version", version)]),
        1.0
    );
    let build = m
        .lines()
        .find(|l| l.starts_with("concur_build_info{"))
        .unwrap();
    assert!(build.contains("onnxruntime=\"1."), "{build}");
    assert!(sample(&m, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(sample(&m, "process_open_fds", &[]) > 0.0);
    assert!(sample(&m, "process_cpu_seconds_total", &[]) > 0.0);

    let (s, _, _) = server.post("/embed", &json!({"inputs": "hello"})).await;
    assert_eq!(s, 200);
    let chat = json!({"messages": [{"role": "user", "content": "where is my order?"}]});
    assert_eq!(server.post("/v1/chat/completions", &chat).await.0, 200);
    let m = scrape(&server).await;
    // One input each, sent in turn: two tokenizations, two queue waits, two batches.
    for name in request_path {
        assert_eq!(sample(&m, name, &[]), 2.0, "{name}");
    }
    assert_exact_bounds(&m);
    server.stop().await;
}
