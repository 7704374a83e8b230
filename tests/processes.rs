//! The `processes` strategy's promises, on the real binary and model: a child killed
//! (SIGKILL), crashed (SIGSEGV) or hung (SIGSTOP past the batch timeout) under load costs
//! no request; the children come back; a child that keeps failing to start turns `/ready`
//! 503 and backs off; SIGTERM drains and leaves no child behind. (Golden vectors and
//! mixed lengths through `processes` are in tests/strategies.rs, with every strategy.)

mod common;

use bytes::Bytes;
use common::{children_of, cosine, floats, process_exists, sample, Binary, TestServer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const TEXTS: [&str; 6] = [
    "Where is my order?",
    "How do I return a pair of shoes that do not fit?",
    "Can I pay with a credit card, and is there a fee for paying in instalments over a year?",
    "Cancel my Acme Plus membership.",
    "What is the rate limit of the Acme API for a free account, per minute and per day?",
    "hello",
];

async fn post(client: &HttpClient, addr: SocketAddr, text: &str) -> Result<(u16, Value), String> {
    let body = json!({ "inputs": text }).to_string();
    let req = hyper::Request::post(format!("http://{addr}/embed"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let value = serde_json::from_slice(&bytes.to_bytes()).unwrap_or(Value::Null);
    Ok((status, value))
}

async fn get_text(client: &HttpClient, addr: SocketAddr, path: &str) -> (u16, String) {
    let req = hyper::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("GET failed");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Clients in a loop, each request one of [`TEXTS`]; every answer is checked against that
/// text's vector, so a batch answered to the wrong requests (or twice) would show.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(
        client: &HttpClient,
        addr: SocketAddr,
        users: usize,
        expected: Arc<Vec<Vec<f32>>>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..users)
            .map(|u| {
                let (client, stop, expected) = (client.clone(), stop.clone(), expected.clone());
                tokio::spawn(async move {
                    let (mut ok, mut bad) = (0, Vec::new());
                    let mut i = u;
                    while !stop.load(Ordering::SeqCst) {
                        let k = i % TEXTS.len();
                        match post(&client, addr, TEXTS[k]).await {
                            Ok((200, body)) => {
                                let c = cosine(&floats(&body[0]), &expected[k]);
                                if c < 0.9999 {
                                    bad.push(format!("text {k}: cosine {c}"));
                                }
                                ok += 1;
                            }
                            Ok((status, body)) => bad.push(format!("{status}: {body}")),
                            Err(e) => bad.push(format!("no answer: {e}")),
                        }
                        i += 1;
                    }
                    (ok, bad)
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut ok, mut bad) = (0, Vec::new());
        for t in self.tasks {
            let (o, b) = t.await.unwrap();
            ok += o;
            bad.extend(b);
        }
        (ok, bad)
    }
}

/// Waits until `pid` has `n` children, none of them in `gone`, and the server counts `n`
/// up (loaded and ready for batches); returns them.
async fn children_recover(
    server: (&HttpClient, SocketAddr, u32),
    n: usize,
    gone: &[u32],
) -> Vec<u32> {
    let (client, addr, pid) = server;
    let started = Instant::now();
    loop {
        let now = children_of(pid);
        if now.len() == n && now.iter().all(|c| !gone.contains(c)) {
            let (_, metrics) = get_text(client, addr, "/metrics").await;
            if sample(&metrics, "concur_worker_processes", &[]) == n as f64 {
                return now;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "children did not recover: {now:?} (gone: {gone:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `signal` until `pid` is gone. One SIGSEGV sent with kill(2) is not always
/// fatal: Rust's stack-overflow handler takes the first, resets the default action and
/// returns (a real fault would re-execute and die), so it is sent again.
async fn signal_until_gone(pid: u32, signal: i32) {
    for _ in 0..100 {
        // SAFETY: kill only sends a signal to a process this test's server started.
        unsafe { libc::kill(pid as i32, signal) };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie its parent has yet to reap.
        if state.is_empty() || state.contains(") Z ") {
            return;
        }
    }
    panic!("process {pid} survived signal {signal}");
}

/// Reference vectors: each text alone, before anything is killed.
async fn alone(client: &HttpClient, addr: SocketAddr) -> Arc<Vec<Vec<f32>>> {
    let mut vectors = Vec::new();
    for t in TEXTS {
        let (status, body) = post(client, addr, t).await.unwrap();
        assert_eq!(status, 200, "{body}");
        vectors.push(floats(&body[0]));
    }
    Arc::new(vectors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_crashed_and_hung_children_cost_no_request() {
    let server = Binary::start(&[
        "executor.strategy=\"processes\"",
        "executor.cores=2",
        "executor.batch_timeout_ms=3000",
        "chat.enabled=false",
        "limits.default_deadline_ms=60000",
    ])
    .await;
    let (pid, addr) = (server.pid(), server.addr);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let expected = alone(&client, addr).await;
    let at = (&client, addr, pid);
    let first = children_recover(at, 2, &[]).await;
    let load = Load::start(&client, addr, 16, expected.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    // One fault at a time, each once the children are back, so another child is always up
    // to take the retry: every request must then be answered 200.
    signal_until_gone(first[0], libc::SIGKILL).await;
    children_recover(at, 2, &first[..1]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal_until_gone(first[1], libc::SIGSEGV).await;
    let third = children_recover(at, 2, &first).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGSTOP: the child hangs; the batch timeout kills it.
    // SAFETY: a signal to a process the server under test started.
    unsafe { libc::kill(third[0] as i32, libc::SIGSTOP) };
    children_recover(at, 2, &[first[0], first[1], third[0]]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (ok, bad) = load.finish().await;
    assert!(ok > 0, "nothing was served");
    assert!(
        bad.is_empty(),
        "{} bad answers of {}: {:?}",
        bad.len(),
        ok + bad.len(),
        &bad[..bad.len().min(5)]
    );
    let (_, metrics) = get_text(&client, addr, "/metrics").await;
    let restarts = sample(&metrics, "concur_worker_restarts_total", &[]);
    assert!(restarts >= 3.0, "restarts {restarts}");
    assert_eq!(sample(&metrics, "concur_batch_failures_total", &[]), 0.0);
    // Each request answered once: the server's count is the clients' (plus the six alone).
    let served = sample(
        &metrics,
        "concur_requests_total",
        &[("route", "embed"), ("status", "200")],
    );
    assert_eq!(served as usize, ok + TEXTS.len());
    let (status, _) = get_text(&client, addr, "/ready").await;
    assert_eq!(status, 200);
    println!(
        "{ok} requests answered 200 through a SIGKILL, a SIGSEGV and a hang; {restarts} restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_leaves_no_child() {
    let mut server = Binary::start(&[
        "executor.strategy=\"processes\"",
        "executor.cores=2",
        "chat.enabled=false",
        "server.shutdown_grace_ms=1000",
    ])
    .await;
    let (pid, addr) = (server.pid(), server.addr);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let expected = alone(&client, addr).await;
    let at = (&client, addr, pid);
    let children = children_recover(at, 2, &[]).await;
    let load = Load::start(&client, addr, 8, expected);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // SAFETY: a signal to the server this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    // Clients stop sending once readiness turns 503, as a load balancer's would.
    let sent = Instant::now();
    while get_text(&client, addr, "/ready").await.0 == 200 {
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (ok, bad) = load.finish().await;
    assert!(ok > 0);
    assert!(
        bad.is_empty(),
        "{} failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(30));
        (status, server)
    })
    .await
    .unwrap();
    let (status, _server) = status;
    let status = status.expect("the server did not exit within 30 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    let left: Vec<u32> = children
        .into_iter()
        .filter(|c| process_exists(*c))
        .collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
}

/// A worker executable that runs the real one until a flag file exists, then fails at
/// once: a child that crashes at start, on demand.
fn flaky_worker(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let flag = dir.join("broken");
    let script = dir.join("worker.sh");
    let text = format!(
        "#!/bin/sh\nif [ -e {flag:?} ]; then echo 'worker: broken on purpose' >&2; exit 7; fi\nexec {exe:?} \"$@\"\n",
        exe = env!("CARGO_BIN_EXE_concur"),
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, flag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_child_backs_off_and_turns_ready_503() {
    let dir = tempfile::tempdir().unwrap();
    let (script, flag) = flaky_worker(dir.path());
    let server = TestServer::start(&format!(
        "[executor]\nstrategy = \"processes\"\ncores = 1\nworker_exe = {script:?}\n[chat]\nenabled = false\n"
    ))
    .await;
    let children = children_of(std::process::id());
    let workers: Vec<u32> = children
        .into_iter()
        .filter(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__worker"))
        })
        .collect();
    assert_eq!(workers.len(), 1, "one core, one child: {workers:?}");
    std::fs::write(&flag, "").unwrap();
    signal_until_gone(workers[0], libc::SIGKILL).await;
    // Respawned at once, then after 250 ms: two failed starts make three deaths in a row.
    let started = Instant::now();
    let body = loop {
        let (status, body) = server.get_json("/ready").await;
        if status == 503 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/ready stayed {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["error"]["code"], "workers_crashing", "{body}");
    // No child to run it: a request fails at once with 500, it does not hang.
    let (status, _, body) = server.post("/embed", &json!({"inputs": "hello"})).await;
    assert_eq!(status, 500, "{body}");
    let metrics = common::scrape(&server).await;
    assert_eq!(
        sample(&metrics, "concur_worker_processes_crash_looping", &[]),
        1.0
    );
    // Backing off, not a hot loop: a handful of starts in a second, not hundreds.
    let before = sample(&metrics, "concur_worker_restarts_total", &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = sample(
        &common::scrape(&server).await,
        "concur_worker_restarts_total",
        &[],
    );
    assert!(
        after - before <= 2.0,
        "{before} -> {after} starts in one second"
    );
    // Fixed: the next start succeeds and the server is ready again.
    std::fs::remove_file(&flag).unwrap();
    let started = Instant::now();
    while server.get_json("/ready").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, body) = server.post("/embed", &json!({"inputs": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_fails_startup_with_its_reason() {
    let config = common::config("[executor]\nstrategy = \"processes\"\ncores = 1\nworker_exe = \"/nonexistent/concur\"\n[chat]\nenabled = false\n");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result = concur::Server::new(config, listener).run(shutdown).await;
    let error = result.expect_err("started without a worker").to_string();
    assert!(error.contains("/nonexistent/concur"), "{error}");
}
