//! Overload, fault isolation and access control on the real server.

mod common;

use common::{floats, TestServer};
use concur::engine::{Batch, Engine, EngineError, EngineFactory, OnnxEngine, SharedWeights};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Resident memory high-water mark of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Far more concurrent clients than the queue admits, for a bounded burst: the excess is
/// refused (429), everything admitted is answered correctly, memory stays bounded, and the
/// server serves normally as soon as the burst ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_fast_and_recovered_from() {
    let server = Arc::new(
        TestServer::start("[batching]\nqueue_capacity = 8\n[limits]\nmax_inputs = 4\ndefault_deadline_ms = 20000\n[chat]\nenabled = false\n").await,
    );
    let before = peak_rss_mib();
    let clients = 48;
    let per_client = 12;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..per_client {
                    let text = format!("client {c} message {i}: where is my parcel? It should have arrived on Monday.");
                    let (s, headers, body) = server.post("/v1/embeddings", &json!({"input": [text.clone(), text]})).await;
                    match s.as_u16() {
                        200 => assert_eq!(floats(&body["data"][1]["embedding"]).len(), 384),
                        429 => {
                            assert_eq!(headers["retry-after"], "1");
                            assert_eq!(body["error"]["code"], "overloaded");
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                    statuses.push(s.as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for t in tasks {
        for s in t.await.unwrap() {
            *counts.entry(s).or_insert(0) += 1;
        }
    }
    println!("statuses under overload: {counts:?}");
    assert_eq!(
        counts.values().sum::<usize>(),
        clients * per_client,
        "every request answered"
    );
    assert!(
        counts.get(&429).copied().unwrap_or(0) > 0,
        "the queue never filled: {counts:?}"
    );
    assert!(
        counts.get(&200).copied().unwrap_or(0) > 0,
        "nothing was served: {counts:?}"
    );
    let growth = peak_rss_mib() - before;
    assert!(
        growth < 400.0,
        "peak memory grew by {growth:.0} MiB under a bounded queue"
    );
    // Recovery: at once, a normal request succeeds and the queue is empty.
    let (s, _, _) = server
        .post("/embed", &json!({"inputs": "back to normal?"}))
        .await;
    assert_eq!(s, 200);
    let m = common::scrape(&server).await;
    assert_eq!(
        common::sample(&m, "concur_queue_depth", &[]),
        0.0,
        "queue not empty"
    );
    common::stop_shared(server).await;
}

/// The real engine, which panics on the next batch when told to.
struct Faulty {
    inner: OnnxEngine,
    fail_next: Arc<AtomicBool>,
}

impl Engine for Faulty {
    fn embed(&mut self, batch: &Batch) -> Result<Vec<Vec<f32>>, EngineError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            panic!("injected fault");
        }
        self.inner.embed(batch)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_fails_only_its_requests() {
    for strategy in ["workers", "spawn_blocking", "rayon", "inline"] {
        let config = common::config(&format!(
            "[executor]\nstrategy = \"{strategy}\"\n[chat]\nenabled = false\n"
        ));
        let fail_next = Arc::new(AtomicBool::new(false));
        let (model, exec, flag) = (
            config.model.clone(),
            config.executor.clone(),
            fail_next.clone(),
        );
        let shared = SharedWeights::new();
        let factory: EngineFactory = Arc::new(move |width| {
            Ok(Box::new(Faulty {
                inner: OnnxEngine::load(&model, &exec, width, &shared)?,
                fail_next: flag.clone(),
            }) as Box<dyn Engine>)
        });
        let server = TestServer::start_with(config, |s| s.engine_factory(factory)).await;
        fail_next.store(true, Ordering::SeqCst);
        let (s, _, body) = server
            .post("/embed", &json!({"inputs": "this batch fails"}))
            .await;
        assert_eq!(s, 500, "{strategy}: {body}");
        assert_eq!(body["error"]["type"], "server_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("server failed"),
            "{body}"
        );
        // The pool replaced the engine; the server keeps serving.
        for _ in 0..3 {
            let (s, _, body) = server
                .post(
                    "/embed",
                    &json!({"inputs": ["after the fault", "still fine"]}),
                )
                .await;
            assert_eq!(s, 200, "{strategy}: {body}");
        }
        let m = common::scrape(&server).await;
        assert_eq!(
            common::sample(&m, "concur_worker_restarts_total", &[]),
            1.0,
            "{strategy}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_inference_routes_only() {
    let key = "sk-test-0123456789abcdef";
    let server = TestServer::start(&format!(
        "[auth]\napi_keys = [\"{key}\", \"sk-other-key-0123456789\"]\n[chat]\nenabled = false\n"
    ))
    .await;
    let body = json!({"input": "hello"}).to_string();
    let send = |auth: Option<String>| {
        let mut req = hyper::Request::post(server.url("/v1/embeddings"))
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
            .unwrap()
    };
    for (auth, expected) in [
        (None, 401),
        (Some("Bearer wrong-key-0123456789abcd".to_string()), 401),
        (Some(format!("Basic {key}")), 401),
        (Some(format!("Bearer {key}x")), 401),
        (Some(format!("Bearer {key}")), 200),
        (Some("Bearer sk-other-key-0123456789".to_string()), 200),
    ] {
        let (s, _, b) = server.send(send(auth.clone())).await;
        assert_eq!(s, expected, "{auth:?}: {}", String::from_utf8_lossy(&b));
        if expected == 401 {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["error"]["code"], "invalid_api_key");
        }
    }
    // Health, readiness and metrics stay open for probes and scrapers.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(server.get(path).await.0, 200, "{path}");
    }
    server.stop().await;
}

/// GET over a fresh connection; returns the status line's code.
async fn raw_status(addr: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out)[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_move_to_a_separate_admin_listener() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    admin.set_nonblocking(true).unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let admin = tokio::net::TcpListener::from_std(admin).unwrap();
    let config = common::config("[chat]\nenabled = false\n");
    let server = TestServer::start_with(config, |s| s.admin_listener(admin)).await;
    // Public listener: inference and probes, no metrics.
    assert_eq!(raw_status(server.addr, "GET", "/metrics").await, 404);
    assert_eq!(raw_status(server.addr, "GET", "/health").await, 200);
    assert_eq!(raw_status(server.addr, "POST", "/embed").await, 422);
    // Admin listener: probes, info and metrics, no inference.
    for path in ["/metrics", "/health", "/ready", "/info"] {
        assert_eq!(raw_status(admin_addr, "GET", path).await, 200, "{path}");
    }
    assert_eq!(raw_status(admin_addr, "POST", "/embed").await, 404);
    server.stop().await;
}
