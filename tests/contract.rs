//! The API contract, checked against the real server (real model, real HTTP over loopback)
//! with API keys and an admin listener configured:
//!
//! 1. each listener's `/openapi.json` is valid OpenAPI 3.1 (`openapi-spec-validator`) and
//!    lists exactly the routes that listener answers;
//! 2. schemathesis attacks every operation with generated valid and invalid bodies and
//!    headers: no 500, every answer matches the document, auth is enforced, 405s carry
//!    `Allow` (settings and the reasons for them: tests/contract/schemathesis.toml);
//! 3. every failure schemathesis ever found (tests/contract/regressions.json) stays fixed;
//! 4. afterwards the server still answers, and never counted a 500.
//!
//! The tools live in `.venv-contract/` (pinned in tests/contract/requirements.txt), which
//! `make test-setup` creates. CONCUR_CONTRACT_EXAMPLES (default 100 per operation) and
//! CONCUR_CONTRACT_SEED tune the schemathesis run.

mod common;

use bytes::Bytes;
use common::TestServer;
use concur::http::{self, Scope};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "contract-test-key-0123456789";
/// A hard stop for the schemathesis run: a hang fails the test instead of the CI job.
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_published_contract() {
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    // Generation on, with few new tokens: schemathesis's generated requests that reach
    // the model finish in a few steps.
    let generation =
        common::generation("max_context = 256\nmax_tokens_cap = 4\ndefault_max_tokens = 4\n");
    let config = common::config(&format!(
        "[auth]\napi_keys = [\"{KEY}\"]\n[limits]\nmax_inputs = 8\nmax_input_chars = 2000\n{generation}"
    ));
    let server = TestServer::start_with(config, |s| s.admin_listener(admin)).await;
    for (scope, addr) in [(Scope::Public, server.addr), (Scope::Admin, admin_addr)] {
        document_is_valid_and_complete(scope, addr).await;
    }
    let url = server.url("/openapi.json");
    tokio::task::spawn_blocking(move || schemathesis(&url))
        .await
        .unwrap();
    regressions_stay_fixed(server.addr).await;
    still_serving(server.addr, admin_addr).await;
    server.stop().await;
}

/// The listener's document is valid OpenAPI 3.1 and documents exactly its routes.
async fn document_is_valid_and_complete(scope: Scope, addr: SocketAddr) {
    let (status, _, body) = send(addr, Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let file = std::env::temp_dir().join(format!("concur-openapi-{}.json", addr.port()));
    std::fs::write(&file, &body).unwrap();
    let out = Command::new(tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{scope:?}: not valid OpenAPI:\n{text}"
    );
    let _ = std::fs::remove_file(&file);

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = http::routes(scope)
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, served,
        "{scope:?}: document and router disagree"
    );
    // The router really answers each documented route, and nothing else.
    for (method, path) in &documented {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, _, _) = send(addr, method, path, &[], Some("{}".into())).await;
        assert_ne!(
            status, 404,
            "{scope:?}: {path} is documented but not served"
        );
    }
    let hidden = if scope == Scope::Admin {
        "/embed"
    } else {
        "/metrics"
    };
    let (status, _, _) = send(addr, Method::GET, hidden, &[], None).await;
    assert_eq!(
        status, 404,
        "{scope:?}: {hidden} is served but not documented"
    );
}

/// Runs schemathesis against the served document; any failure fails the test.
fn schemathesis(url: &str) {
    let examples = std::env::var("CONCUR_CONTRACT_EXAMPLES").unwrap_or_else(|_| "100".into());
    let config = common::root().join("tests/contract/schemathesis.toml");
    let report = common::root().join("target/schemathesis");
    let mut cmd = Command::new(tool("schemathesis"));
    cmd.arg("--config-file")
        .arg(&config)
        .args(["run", url, "--header"])
        .arg(format!("Authorization: Bearer {KEY}"))
        .args(["--max-examples", &examples, "--workers", "2", "--no-color"])
        .args([
            "--request-timeout",
            "30",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Ok(seed) = std::env::var("CONCUR_CONTRACT_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("cannot start schemathesis");
    // Drain both pipes on threads so a chatty run cannot block on a full pipe.
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCHEMATHESIS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = out.join().unwrap() + &err.join().unwrap();
    let Some(status) = status else {
        panic!("schemathesis ran past {SCHEMATHESIS_TIMEOUT:?}:\n{text}");
    };
    assert!(
        status.success(),
        "schemathesis found contract violations:\n{text}"
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Seed:") || l.contains("issues"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
}

/// Replays tests/contract/regressions.json: each request and the answer it must get now.
async fn regressions_stay_fixed(addr: SocketAddr) {
    let path = common::root().join("tests/contract/regressions.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(!cases.is_empty());
    for case in &cases {
        let what = case["found"].as_str().unwrap();
        let method = Method::from_bytes(case["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut headers: Vec<(String, String)> = case["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        headers.push(("authorization".into(), format!("Bearer {KEY}")));
        let body = case.get("body").map(|b| b.to_string());
        let path = case["path"].as_str().unwrap();
        let (status, got_headers, bytes) = send(addr, method, path, &headers, body).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status.as_u16() as u64, case["status"], "{what}: {text}");
        for (name, want) in case["response_headers"].as_object().into_iter().flatten() {
            assert_eq!(
                got_headers.get(name).map(|v| v.to_str().unwrap()),
                want.as_str(),
                "{what}"
            );
        }
        if case["sse"] == true {
            check_events(&text, what);
        }
    }
    println!("{} schemathesis regressions replayed", cases.len());
}

/// Every event is a chat completion chunk, and the last is `[DONE]`.
fn check_events(text: &str, what: &str) {
    let data: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{what}: {e:?}"))
        })
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{what}");
    for d in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{what}: {e}: {d}"));
        assert_eq!(chunk["object"], "chat.completion.chunk", "{what}");
    }
}

/// The server survived: it answers, is ready, and never counted a 500.
async fn still_serving(addr: SocketAddr, admin: SocketAddr) {
    let (status, _, _) = send(addr, Method::GET, "/ready", &[], None).await;
    assert_eq!(status, 200);
    let auth = [("authorization".to_string(), format!("Bearer {KEY}"))];
    let body = Some(r#"{"inputs": "still here?"}"#.to_string());
    let (status, _, _) = send(addr, Method::POST, "/embed", &auth, body).await;
    assert_eq!(status, 200);
    let (_, _, metrics) = send(admin, Method::GET, "/metrics", &[], None).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(metrics.contains("concur_requests_total"));
    assert!(!metrics.contains("status=\"500\""), "a request got a 500");
}

/// The path of a tool in the contract-test virtual environment.
fn tool(name: &str) -> PathBuf {
    let path = common::root().join(".venv-contract/bin").join(name);
    assert!(
        path.is_file(),
        "{} missing: run `make test-setup`",
        path.display()
    );
    path
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    body: Option<String>,
) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let body = Full::new(Bytes::from(body.unwrap_or_default()));
    let resp = client.request(req.body(body).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}
