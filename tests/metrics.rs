//! /metrics: a valid Prometheus exposition (checked by promtool), counters and histograms
//! that move as they should for a known sequence of requests, and the event-loop lag that
//! tells `inline` from `workers`.

mod common;

use bytes::Bytes;
use common::{sample, scrape, TestServer};
use concur::engine::{Batch, Engine, EngineError, EngineFactory, OnnxEngine, SharedWeights};
use http_body_util::Full;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Gate = Arc<(Mutex<bool>, Condvar)>;

/// The real engine behind a gate the test opens and closes; counts the rows it ran.
struct Gated {
    inner: OnnxEngine,
    gate: Gate,
    rows: Arc<AtomicUsize>,
}

impl Engine for Gated {
    fn embed(&mut self, batch: &Batch) -> Result<Vec<Vec<f32>>, EngineError> {
        let (lock, cv) = &*self.gate;
        drop(cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap());
        self.rows.fetch_add(batch.rows.len(), Ordering::SeqCst);
        self.inner.embed(batch)
    }
}

fn set_gate(gate: &(Mutex<bool>, Condvar), open: bool) {
    *gate.0.lock().unwrap() = open;
    gate.1.notify_all();
}

/// A real server whose engine runs behind a gate.
struct GatedServer {
    server: Arc<TestServer>,
    gate: Gate,
    rows: Arc<AtomicUsize>,
}

impl GatedServer {
    async fn start(extra: &str) -> GatedServer {
        let config = common::config(extra);
        let gate: Gate = Arc::new((Mutex::new(true), Condvar::new()));
        let rows = Arc::new(AtomicUsize::new(0));
        let (model, exec, g, r) = (
            config.model.clone(),
            config.executor.clone(),
            gate.clone(),
            rows.clone(),
        );
        let shared = SharedWeights::new();
        let factory: EngineFactory = Arc::new(move |width| {
            Ok(Box::new(Gated {
                inner: OnnxEngine::load(&model, &exec, width, &shared)?,
                gate: g.clone(),
                rows: r.clone(),
            }) as Box<dyn Engine>)
        });
        let server = Arc::new(TestServer::start_with(config, |s| s.engine_factory(factory)).await);
        GatedServer { server, gate, rows }
    }

    /// Closes the gate and sends `text`, which then holds the (only) session; returns once
    /// the engine is busy with it.
    async fn hold_session(
        &self,
        text: &str,
    ) -> tokio::task::JoinHandle<(hyper::StatusCode, hyper::HeaderMap, serde_json::Value)> {
        set_gate(&self.gate, false);
        let (server, body) = (self.server.clone(), json!({"inputs": text}));
        let held = tokio::spawn(async move { server.post("/embed", &body).await });
        while sample(&scrape(&self.server).await, "concur_busy_workers", &[]) < 1.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        held
    }

    async fn stop(self) {
        common::stop_shared(self.server).await;
    }
}

fn promtool_check(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run `make test-setup` (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_follow_a_known_sequence() {
    let gated = GatedServer::start(
        "[executor]\nstrategy = \"workers\"\nparallelism = \"fixed\"\nsessions = 1\n[batching]\nqueue_capacity = 2\n[limits]\nmax_inputs = 2\n[chat]\nenabled = false\n",
    )
    .await;
    let server = gated.server.clone();
    let (s, _, _) = server
        .post("/embed", &json!({"inputs": "hello there"}))
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = server.post("/embed", &json!({"inputs": []})).await;
    assert_eq!(s, 422);
    // Routing failures: counted apart from invalid inference input.
    assert_eq!(server.get("/wp-login.php").await.0, 404);
    assert_eq!(server.get("/embed").await.0, 405);

    // Hold the only session, so the next inputs wait in the queue.
    let blocked = gated.hold_session("this one holds the session").await;
    let expiring = {
        let server = server.clone();
        tokio::spawn(async move {
            let req = hyper::Request::post(server.url("/embed"))
                .header("content-type", "application/json")
                .header("x-deadline-ms", "300")
                .body(Full::new(Bytes::from(
                    json!({"inputs": "I will expire"}).to_string(),
                )))
                .unwrap();
            server.send(req).await
        })
    };
    while sample(&scrape(&server).await, "concur_queue_depth", &[]) < 1.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One slot left of two: a request with two inputs is refused whole, at once.
    let (s, headers, body) = server.post("/embed", &json!({"inputs": ["a", "b"]})).await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let (s, _, body) = expiring.await.unwrap();
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&body));
    set_gate(&gated.gate, true);
    let (s, headers, _) = blocked.await.unwrap();
    assert_eq!(s, 200);
    // Its batch sat in the engine behind the gate until the 300 ms deadline above had passed,
    // and its response headers say so.
    let header = |name: &str| -> f64 { headers[name].to_str().unwrap().parse().unwrap() };
    assert!(header("x-inference-time") >= 300.0, "{headers:?}");
    assert!(header("x-total-time") >= header("x-inference-time"));
    assert_eq!(header("x-batch-size"), 1.0);

    let m = scrape(&server).await;
    let route = |status: &str| {
        sample(
            &m,
            "concur_requests_total",
            &[("route", "embed"), ("status", status)],
        )
    };
    assert_eq!(
        (
            route("200"),
            route("405"),
            route("422"),
            route("429"),
            route("503")
        ),
        (2.0, 1.0, 1.0, 1.0, 1.0)
    );
    let rejected =
        |reason: &str| sample(&m, "concur_rejected_requests_total", &[("reason", reason)]);
    assert_eq!(rejected("overloaded"), 1.0);
    assert_eq!(rejected("deadline"), 1.0);
    assert_eq!(rejected("invalid"), 1.0);
    assert_eq!(rejected("not_found"), 1.0);
    assert_eq!(rejected("method_not_allowed"), 1.0);
    assert_eq!(rejected("cancelled"), 0.0);
    // Two batches ran (the expired input never reached the engine).
    assert_eq!(sample(&m, "concur_batch_size_count", &[]), 2.0);
    assert_eq!(sample(&m, "concur_inference_seconds_count", &[]), 2.0);
    assert_eq!(sample(&m, "concur_queue_wait_seconds_count", &[]), 2.0);
    assert_eq!(sample(&m, "concur_batch_padding_ratio_count", &[]), 2.0);
    // Tokenized: hello, the blocked one, the expired one, the refused one.
    assert_eq!(sample(&m, "concur_tokenization_seconds_count", &[]), 4.0);
    assert_eq!(sample(&m, "concur_queue_depth", &[]), 0.0);
    assert_eq!(sample(&m, "concur_inflight_batches", &[]), 0.0);
    let duration = |outcome: &str| {
        sample(
            &m,
            "concur_request_duration_seconds_count",
            &[("route", "embed"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (
            duration("success"),
            duration("client_error"),
            duration("rejected")
        ),
        (2.0, 2.0, 2.0),
        "200 x2; 422 and 405; 429 and 503"
    );
    assert!(sample(&m, "concur_event_loop_lag_seconds_count", &[]) > 0.0);
    // Every series carries the strategy and the model.
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.contains("strategy=\"workers\"") && line.contains("model=\"all-MiniLM-L6-v2\""),
            "{line}"
        );
    }
    promtool_check(&m);
    drop(server);
    gated.stop().await;
}

/// Fraction of lag-probe wakes later than `threshold` seconds (a bucket boundary).
fn late_fraction(m: &str, threshold: &str) -> f64 {
    let within = sample(
        m,
        "concur_event_loop_lag_seconds_bucket",
        &[("le", threshold)],
    );
    let all = sample(m, "concur_event_loop_lag_seconds_count", &[]);
    1.0 - within / all
}

/// Drives `server` with `clients` concurrent clients for `seconds` (bounded), then returns
/// the exposition.
async fn load_then_scrape(server: Arc<TestServer>, clients: usize, seconds: u64) -> String {
    let texts: Vec<String> = (0..clients)
        .map(|i| format!("Client {i} asks: my order arrived damaged and I would like a refund or a replacement, what are my options? ").repeat(4))
        .collect();
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = texts
        .into_iter()
        .map(|text| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                while tokio::time::Instant::now() < end && sent < 200 {
                    let (s, _, body) = server.post("/embed", &json!({"inputs": text})).await;
                    assert_eq!(s, 200, "{body}");
                    sent += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    scrape(&server).await
}

/// The reason `inline` is kept: a forward pass on a tokio worker stalls everything queued
/// there, and the lag probe sees it. With the same load, `workers` keeps the loop free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_blocks_the_event_loop_and_workers_does_not() {
    let mut late = Vec::new();
    for strategy in ["inline", "workers"] {
        let extra = format!("[executor]\nstrategy = \"{strategy}\"\nparallelism = \"fixed\"\nsessions = 2\nintra_op_threads = 1\n[chat]\nenabled = false\n");
        let server = Arc::new(TestServer::start(&extra).await);
        let m = load_then_scrape(server.clone(), 6, 4).await;
        assert!(sample(&m, "concur_batch_size_count", &[]) > 0.0);
        late.push((late_fraction(&m, "0.02"), late_fraction(&m, "0.005")));
        common::stop_shared(server).await;
    }
    let (inline, workers) = (late[0], late[1]);
    println!("probe wakes later than 20 ms / 5 ms: inline {inline:?}, workers {workers:?}");
    assert!(
        inline.0 > 0.05,
        "inline should stall the event loop: {inline:?}"
    );
    assert!(
        workers.0 < 0.01,
        "workers should leave the event loop free: {workers:?}"
    );
    assert!(
        inline.0 > 10.0 * workers.0.max(0.001),
        "inline {inline:?} vs workers {workers:?}"
    );
}

/// A client that hangs up while its input waits in the queue: the input is dropped before
/// it reaches the engine, and counted as cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_client_never_reaches_the_engine() {
    use tokio::io::AsyncWriteExt;

    let gated = GatedServer::start(
        "[executor]\nstrategy = \"workers\"\nparallelism = \"fixed\"\nsessions = 1\n[chat]\nenabled = false\n",
    )
    .await;
    let server = gated.server.clone();
    let blocked = gated.hold_session("holding the session").await;
    // A raw client sends a whole request, then hangs up while it is queued.
    let body = json!({"inputs": "nobody will read this answer"}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    while sample(&scrape(&server).await, "concur_queue_depth", &[]) < 1.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tcp);
    while sample(
        &scrape(&server).await,
        "concur_rejected_requests_total",
        &[("reason", "cancelled")],
    ) < 1.0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    set_gate(&gated.gate, true);
    assert_eq!(blocked.await.unwrap().0, 200);
    // Another request, so the batcher has certainly pruned the queue since the hang-up.
    assert_eq!(
        server.post("/embed", &json!({"inputs": "after"})).await.0,
        200
    );
    assert_eq!(
        gated.rows.load(Ordering::SeqCst),
        2,
        "the cancelled input reached the engine"
    );
    let m = scrape(&server).await;
    assert_eq!(sample(&m, "concur_queue_depth", &[]), 0.0);
    drop(server);
    gated.stop().await;
}
