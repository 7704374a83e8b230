//! Live reload against the real binary and the real model: switching strategy,
//! parallelism and model variant under load drops nothing; invalid reloads change nothing;
//! reloads are serialised; SIGHUP re-reads the file.

mod common;

use bytes::Bytes;
use common::{cosine, golden, Binary};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    c: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = c.request(req).await.expect("request failed");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn reload(c: &HttpClient, addr: SocketAddr, toml: &str) -> (StatusCode, Value) {
    send(c, addr, Method::POST, "/admin/reload", toml).await
}

async fn info(c: &HttpClient, addr: SocketAddr) -> Value {
    let (status, mut body) = send(c, addr, Method::GET, "/info", "").await;
    assert_eq!(status, 200);
    // Resident memory is read anew for each request: not part of the configuration.
    if let Some(g) = body.get_mut("generative").and_then(Value::as_object_mut) {
        assert!(g
            .remove("process_rss_bytes")
            .is_some_and(|v| v.as_u64() > Some(0)));
    }
    body
}

/// Every golden text in one request: the vectors must match the reference.
async fn check_golden(c: &HttpClient, addr: SocketAddr, min_cosine: f32, when: &str) {
    let golden = golden();
    let texts: Vec<&str> = golden.items.iter().map(|(t, _, _)| t.as_str()).collect();
    let (status, body) = send(
        c,
        addr,
        Method::POST,
        "/embed",
        &json!({ "inputs": texts }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{when}: {body}");
    for (row, (text, _, expected)) in body.as_array().unwrap().iter().zip(&golden.items) {
        let got = common::floats(row);
        let cos = cosine(&got, expected);
        assert!(cos >= min_cosine, "{when}: cosine {cos} for {text:?}");
    }
}

/// Closed-loop users until `stop`: each request carries one golden text and must get its
/// own vector back (int8's tolerance, since a switch may change the variant mid-flight).
async fn user(
    addr: SocketAddr,
    offset: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) {
    let c = client();
    let golden = golden();
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) {
        let (text, _, expected) = &golden.items[i % golden.items.len()];
        i += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        let (status, body) = send(
            &c,
            addr,
            Method::POST,
            "/embed",
            &json!({ "inputs": text }).to_string(),
        )
        .await;
        let ok = status == 200
            && body
                .get(0)
                .map(|v| cosine(&common::floats(v), expected) >= 0.95)
                .unwrap_or(false);
        if !ok {
            failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("failed request: {status} {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_everything_under_load_drops_nothing() {
    let server = Binary::start(&[]).await;
    let (c, addr) = (client(), server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let users: Vec<_> = (0..16)
        .map(|u| {
            tokio::spawn(user(
                addr,
                u * 3,
                stop.clone(),
                sent.clone(),
                failed.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = server.rss_bytes();
    // Every strategy, both parallelism modes, fp32 -> int8 -> fp32, back to the start.
    let steps: [(&str, f32); 10] = [
        ("executor.strategy = \"inline\"", 0.9999),
        ("executor.strategy = \"processes\"", 0.9999),
        ("executor.strategy = \"spawn_blocking\"", 0.9999),
        ("executor.strategy = \"rayon\"", 0.9999),
        (
            "[executor]\nparallelism = \"fixed\"\nsessions = 2\nintra_op_threads = 1",
            0.9999,
        ),
        ("executor.strategy = \"workers\"", 0.9999),
        ("model.variant = \"int8\"", 0.95),
        ("model.variant = \"fp32\"", 0.9999),
        ("[batching]\nmax_batch_size = 8\nmax_wait_ms = 1.0", 0.9999),
        ("", 0.9999),
    ];
    let mut generation = info(&c, addr).await["generation"].as_u64().unwrap();
    for (i, (toml, min_cosine)) in steps.iter().enumerate() {
        // The last step drops every override: back to the file's config.
        let path = if toml.is_empty() {
            "/admin/reload?reset"
        } else {
            "/admin/reload"
        };
        let (status, body) = send(&c, addr, Method::POST, path, toml).await;
        assert_eq!(status, 200, "step {i} {toml:?}: {body}");
        assert!(
            !body["changed"].as_array().unwrap().is_empty(),
            "step {i}: {body}"
        );
        generation += 1;
        assert_eq!(body["generation"], generation, "{body}");
        check_golden(&c, addr, *min_cosine, toml).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for u in users {
        u.await.unwrap();
    }
    let live = info(&c, addr).await;
    assert_eq!(live["strategy"], "workers");
    assert_eq!(live["parallelism"]["mode"], "elastic");
    assert_eq!(live["model"]["variant"], "fp32");
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "{sent} requests under {} switches, {failed} failed",
        steps.len()
    );
    assert!(sent > 100, "the load did not run: {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed across the switches"
    );
    let metrics = send_text(&c, addr, "/metrics").await;
    let applied = common::sample(&metrics, "concur_reloads_total", &[("outcome", "applied")]);
    assert_eq!(applied as usize, steps.len());
    assert_eq!(
        common::sample(
            &metrics,
            "concur_config_generation",
            &[("strategy", "workers")]
        ) as u64,
        generation
    );
    // The replaced executors are gone: memory back near where it was before the cycle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = server.rss_bytes();
    println!("RSS before the cycle {rss_before}, after {rss_after}");
    assert!(
        rss_after < rss_before + rss_before / 4,
        "RSS grew from {rss_before} to {rss_after} bytes over the cycle"
    );
}

async fn send_text(c: &HttpClient, addr: SocketAddr, path: &str) -> String {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reloads_change_nothing_and_say_why() {
    let server = Binary::start(&["chat.enabled=false"]).await;
    let (c, addr) = (client(), server.addr);
    let before = info(&c, addr).await;
    let cases = [
        ("executor.bogus = 1", "invalid_config", None),
        (
            "batching.max_batch_size = 0",
            "invalid_config",
            Some("batching.max_batch_size"),
        ),
        (
            "executor.strategy = \"threads\"",
            "invalid_config",
            Some("executor.strategy"),
        ),
        (
            "server.listen = \"127.0.0.1:1\"",
            "not_live",
            Some("server.listen"),
        ),
        ("model.dir = \"/elsewhere\"", "not_live", Some("model.dir")),
        (
            "[executor]\nstrategy = \"rayon\"\ntokio_worker_threads = 7",
            "not_live",
            Some("executor.tokio_worker_threads"),
        ),
        ("this is not toml", "invalid_config", None),
    ];
    for (toml, code, param) in cases {
        let (status, body) = reload(&c, addr, toml).await;
        assert_eq!(status, 400, "{toml}: {body}");
        assert_eq!(body["error"]["code"], code, "{toml}: {body}");
        if let Some(p) = param {
            assert_eq!(body["error"]["param"], p, "{toml}: {body}");
        }
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // A page of another site cannot reload, even without API keys.
    let req = Request::post(format!("http://{addr}/admin/reload"))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from("executor.strategy = \"inline\"")))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("cross_origin"));
    // Nothing changed, and the server still serves.
    assert_eq!(info(&c, addr).await, before);
    check_golden(&c, addr, 0.9999, "after invalid reloads").await;
    let metrics = send_text(&c, addr, "/metrics").await;
    assert_eq!(
        common::sample(&metrics, "concur_reloads_total", &[("outcome", "rejected")]) as usize,
        cases.len()
    );
    // A rejected reload leaves no override behind: the next one starts from the live config.
    let (status, body) = reload(&c, addr, "limits.max_inputs = 64").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"][0]["key"], "limits.max_inputs");
    assert_eq!(body["changed"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_are_serialised_and_accumulate() {
    let server = Binary::start(&["chat.enabled=false"]).await;
    let (c, addr) = (client(), server.addr);
    let bodies: [&'static str; 3] = [
        "executor.strategy = \"rayon\"",
        "batching.max_batch_size = 16",
        "limits.max_inputs = 100",
    ];
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let c = c.clone();
            tokio::spawn(async move { reload(&c, addr, b).await })
        })
        .collect();
    let mut generations = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        // Each saw the config the previous one left: exactly its own key changed.
        assert_eq!(body["changed"].as_array().unwrap().len(), 1, "{body}");
        generations.push(body["generation"].as_u64().unwrap());
    }
    generations.sort_unstable();
    assert_eq!(generations, [2, 3, 4]);
    let live = info(&c, addr).await;
    assert_eq!(live["generation"], 4);
    assert_eq!(live["strategy"], "rayon");
    assert_eq!(live["batching"]["max_batch_size"], 16);
    assert_eq!(live["limits"]["max_inputs"], 100);
    let metrics = send_text(&c, addr, "/metrics").await;
    assert!(
        metrics.contains("strategy=\"rayon\""),
        "the strategy label follows the live strategy"
    );
    assert!(!metrics.contains("strategy=\"workers\""));
    // The same again changes nothing.
    let (status, body) = reload(&c, addr, "").await;
    assert_eq!(status, 200);
    assert_eq!(body["generation"], 4);
    assert!(body["changed"].as_array().unwrap().is_empty());
    // The CLI: a reset goes back to the file; a refused reload fails the command.
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_concur"))
                .arg("reload")
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = cli(vec!["--addr".into(), addr.to_string(), "--reset".into()])
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["generation"], 5, "{printed}");
    assert_eq!(info(&c, addr).await["strategy"], "workers");
    let bad = vec![
        "--addr".into(),
        addr.to_string(),
        "server.listen = \"127.0.0.1:1\"".into(),
    ];
    let out = cli(bad).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not_live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("concur.toml");
    let base = std::fs::read_to_string(common::root().join("config/default.toml")).unwrap();
    let with_dir = |strategy: &str| {
        format!(
            "{base}\n",
            base = base.replace(
                "strategy = \"workers\"",
                &format!("strategy = \"{strategy}\"")
            )
        )
    };
    std::fs::write(&file, with_dir("workers")).unwrap();
    let server =
        Binary::start_config(&file, &["chat.enabled=false", "executor.inference_nice=0"]).await;
    let (c, addr) = (client(), server.addr);
    assert_eq!(info(&c, addr).await["strategy"], "workers");
    std::fs::write(&file, with_dir("spawn_blocking")).unwrap();
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let mut live = Value::Null;
    for _ in 0..200 {
        live = info(&c, addr).await;
        if live["generation"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(live["generation"], 2, "{live}");
    assert_eq!(live["strategy"], "spawn_blocking");
    // The start-time --set survives the reload.
    assert_eq!(live["chat"]["enabled"], false);
    check_golden(&c, addr, 0.9999, "after SIGHUP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tester_switches_strategies_and_reports_each_segment() {
    use loadtest::run::{run, Load, RunOptions};
    use loadtest::switch::{Switch, SwitchPlan};
    let server = Binary::start(&["chat.enabled=false"]).await;
    let base = format!("http://{}", server.addr);
    let texts = Arc::new(
        golden()
            .items
            .into_iter()
            .map(|(t, _, _)| t)
            .collect::<Vec<_>>(),
    );
    let mut opts = RunOptions::new(
        base.clone(),
        texts,
        Load::Closed {
            users: 4,
            think_time: Duration::ZERO,
        },
    );
    opts.warmup = Duration::from_millis(500);
    // Each strategy is live for 2 s after its reload finished; reloads take about 1 s.
    opts.duration = Duration::from_secs(9);
    let names = ["inline", "rayon", "workers"].map(String::from);
    opts.switches = Some(SwitchPlan {
        admin_url: base,
        every: Duration::from_secs(2),
        steps: Switch::strategies(&names),
    });
    let summary = run(&opts).await.expect("the run failed");
    let labels: Vec<&str> = summary.segments.iter().map(|s| s.label.as_str()).collect();
    println!("{summary}");
    // The plan cycles: on a fast machine a fourth switch (back to inline) may fit, on a
    // loaded one the window may end before the third.
    let cycle = ["inline", "rayon", "workers"];
    assert_eq!(labels[0], "before switching");
    // At least two switches, however slow the machine makes each reload.
    assert!(labels.len() >= 3, "{labels:?}");
    for (i, l) in labels[1..].iter().enumerate() {
        assert_eq!(*l, cycle[i % 3], "{labels:?}");
    }
    assert_eq!(summary.totals.error_count(), 0, "{summary}");
    for s in &summary.segments[1..] {
        assert!(s.reload_ms > 0.0, "segment {} has no reload time", s.label);
        assert!(
            s.generation >= 2,
            "segment {}: generation {}",
            s.label,
            s.generation
        );
    }
    let total: u64 = summary.segments.iter().map(|s| s.totals.successes).sum();
    assert_eq!(
        total, summary.totals.successes,
        "every request belongs to one segment"
    );
    let live = info(&client(), server.addr).await;
    let generation = live["generation"].as_u64().unwrap() as usize;
    assert!(
        generation >= labels.len(),
        "{} reloads for {labels:?}",
        generation - 1
    );
}
