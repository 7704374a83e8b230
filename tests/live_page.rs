//! The live page in a real browser: headless Debian chromium (driven by playwright-core from
//! `tests/browser/`) opens `/` on the real binary while a bounded load runs, checks that the
//! charts receive data and the page shows numbers, runs the page's own streaming chat load
//! against the generative model and sees the generation charts fed by it, clicks a scheduler
//! switch while it runs and a strategy switch, and sees `/info` and the page's configuration
//! panel follow (the strategy switch is refused without the API key, applied with it). The
//! screenshot is kept in `target/artifacts/live-page.png`. `make test-setup` installs
//! chromium and playwright-core.

mod common;

use bytes::Bytes;
use common::{root, Binary, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Closed-loop users of the background load, and the most requests it sends in all.
const USERS: usize = 4;
const MAX_REQUESTS: u64 = 20_000;
/// The server's one API key: the load sends it, and the page must be given it to switch.
const KEY: &str = "live-page-test-key-0123456789";

/// Counts of the background load's answers.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Sends embeddings requests from `USERS` closed-loop users until `stop` (or the cap).
fn background_load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let texts = [
        "Where is my order?",
        "How do I change the delivery address of an order I placed yesterday?",
    ];
    (0..USERS)
        .map(|user| {
            let (client, stop, tally) = (client.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut i = user;
                while !stop.load(Ordering::Relaxed)
                    && tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed)
                        < MAX_REQUESTS
                {
                    let body = serde_json::json!({"input": texts[i % texts.len()]}).to_string();
                    let req = Request::builder()
                        .method(Method::POST)
                        .uri(format!("http://{addr}/v1/embeddings"))
                        .header("content-type", "application/json")
                        .header("authorization", format!("Bearer {KEY}"))
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let ok = match client.request(req).await {
                        Ok(r) => r.status().is_success() && r.into_body().collect().await.is_ok(),
                        Err(_) => false,
                    };
                    let counter = if ok { &tally.ok } else { &tally.failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect()
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .request(
            Request::get(format!("http://{addr}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .expect("GET");
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).expect("JSON")
}

/// The browser tools `make test-setup` installs; a clear message when they are missing.
fn browser_tools() -> std::path::PathBuf {
    let dir = root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium or playwright-core missing: run `make test-setup` (scripts/test-setup.sh)"
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_charts_the_load_and_switches_strategy() {
    let browser = browser_tools();
    let keys = format!("auth.api_keys=[\"{KEY}\"]");
    let server = Binary::start(&["executor.strategy=\"workers\"", &keys]).await;
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let users = background_load(server.addr, stop.clone(), tally.clone());

    let artifacts = root().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let url = format!("http://{}/", server.addr);
    let out = tokio::task::spawn_blocking({
        let artifacts = artifacts.clone();
        move || {
            Command::new("node")
                .current_dir(&browser)
                .arg("live_page.mjs")
                .args(["--url", &url, "--out"])
                .arg(&artifacts)
                .args(["--switch", "rayon", "--key", KEY, "--scheduler", "static"])
                .output()
                .expect("cannot run node")
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for u in users {
        u.await.unwrap();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser check failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");

    let findings: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(findings["strategy_before"], "workers");
    assert_eq!(findings["strategy_after"], "rayon");
    let page_load = findings["page_load"].as_str().unwrap_or_default();
    assert!(
        page_load.contains(" 0 failed"),
        "the page's own load: {page_load}"
    );
    // The generation row: fed by the page's streaming chats, its scheduler switched under them.
    assert_eq!(findings["scheduler_before"], "continuous");
    assert_eq!(findings["scheduler_after"], "static");
    let chats = findings["chat_load"].as_str().unwrap_or_default();
    assert!(
        chats.contains(" 0 failed"),
        "the page's streaming chats: {chats}"
    );
    for chart in ["tokens", "ttft", "itl", "sequences"] {
        let points = findings["generation_points"][chart].as_u64().unwrap_or(0);
        assert!(points > 0, "no points on the {chart} chart: {findings}");
    }
    let refused = findings["without_key"].as_str().unwrap_or_default();
    assert!(
        refused.contains("401"),
        "the switch without the key: {refused}"
    );
    assert!(findings["throughput"].as_f64().unwrap() > 0.0, "{findings}");
    assert_eq!(
        findings["external"],
        serde_json::json!([]),
        "the page fetched from elsewhere"
    );
    // The server agrees, and switching under load lost no request.
    let info = get_json(server.addr, "/info").await;
    assert_eq!(info["strategy"], "rayon");
    assert_eq!(info["generative"]["scheduler"], "static");
    assert!(info["generation"].as_u64().unwrap() >= 2, "{info}");
    let ok = tally.ok.load(Ordering::Relaxed);
    assert!(ok > 0);
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "{ok} answered");
    let png = std::fs::metadata(artifacts.join("live-page.png")).expect("screenshot");
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
}

/// The page and its feed live where the metrics live: on the admin listener when there is
/// one. The feed counts answered inference requests (not its own polls) and their latency.
#[tokio::test]
async fn the_feed_counts_what_was_served_beside_the_metrics() {
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let server = TestServer::start_with(common::config(""), |s| s.admin_listener(admin)).await;
    let get = |addr: SocketAddr, path: &str| {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        server.send(req)
    };
    for path in ["/", "/live", "/live.json"] {
        assert_eq!(
            server.get(path).await.0,
            404,
            "{path} on the public listener"
        );
    }
    let (status, headers, body) = get(admin_addr, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(String::from_utf8_lossy(&body).contains("new uPlot("));
    assert_eq!(
        get(admin_addr, "/live").await.1["content-type"],
        "text/html; charset=utf-8"
    );

    let feed = |bytes: Bytes| serde_json::from_slice::<Value>(&bytes).expect("JSON feed");
    let before = feed(get(admin_addr, "/live.json").await.2);
    assert_eq!(
        before["requests"]["ok"], 0,
        "start-up work is not a request: {before}"
    );
    assert!(
        before.get("generation").is_none(),
        "a generation part without the generative model: {before}"
    );
    for text in ["Where is my order?", "How do I reset my password?", "Hello"] {
        let (status, _, _) = server
            .post("/v1/embeddings", &serde_json::json!({"input": text}))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = server
        .post("/v1/embeddings", &serde_json::json!({"input": 7}))
        .await;
    assert_eq!(status, 422);
    let after = feed(get(admin_addr, "/live.json").await.2);
    assert_eq!(after["requests"]["ok"], 3, "{after}");
    assert_eq!(after["requests"]["client_errors"], 1, "{after}");
    assert_eq!(
        after["latency"]["count"], 3,
        "only answered requests: {after}"
    );
    assert!(after["batch_size"]["count"].as_u64().unwrap() >= 1);
    assert!(after["clock_seconds"].as_f64() > before["clock_seconds"].as_f64());
    // Batches by width count start-up batches too: the page charts differences, as here.
    let batches = |feed: &Value| -> u64 {
        let widths = feed["batches_by_width"].as_object().unwrap();
        widths.values().map(|n| n.as_u64().unwrap()).sum()
    };
    let sizes = |feed: &Value| feed["batch_size"]["count"].as_u64().unwrap();
    assert_eq!(
        batches(&after) - batches(&before),
        sizes(&after) - sizes(&before),
        "{after}"
    );
    server.stop().await;
}
