//! Generation through the real server: the exported SmolLM2-135M-Instruct on ONNX Runtime,
//! over HTTP on loopback. Greedy completions must not depend on what runs beside them:
//! under every scheduler and every strategy, 16 prompts that join and leave at different
//! steps give exactly the text each gives alone.

mod common;

use common::{root, TestServer};
use futures_util::future::join_all;
use serde_json::json;
use std::time::Duration;

const MODEL: &str = "SmolLM2-135M-Instruct";

/// Sixteen prompts of different lengths: facts, code, lists, another language, numbers.
const PROMPTS: [&str; 16] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "Water boils at a temperature of",
    "1, 2, 3, 4, 5,",
    "The quick brown fox",
    "In machine learning, a neural network is",
    "La capitale de l'Espagne est",
    "To make a cup of tea, first",
    "The largest planet in our solar system is",
    "import numpy as np\nx = np.array([1, 2, 3])\nprint(",
    "Monday, Tuesday, Wednesday,",
    "A haiku about autumn:\n",
    "The chemical symbol for gold is",
    "Shakespeare wrote many plays, including",
];

/// A server generating with `extra` TOML (strategy, scheduler, slots) on top.
async fn server(extra: &str) -> TestServer {
    let dir = root().join("models/SmolLM2-135M-Instruct");
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run `make setup`",
        dir.display()
    );
    let base = format!(
        "[generation]\nenabled = true\ndir = {dir:?}\nslots = 8\nmax_context = 512\nprefill_chunk_tokens = 16\nmax_step_tokens = 24\n[chat]\nenabled = false\n[executor]\nworker_exe = {:?}\n",
        env!("CARGO_BIN_EXE_concur")
    );
    // Started with its own text as the configuration source, so that a reload can switch
    // the scheduler.
    let text = common::config_text(&merge(&base, extra));
    let config = concur::Config::parse(&text).unwrap();
    let source = concur::config::ConfigSource::text(text);
    TestServer::start_with(config, |s| s.config_source(source)).await
}

fn merge(a: &str, b: &str) -> String {
    let mut a: toml::Table = toml::from_str(a).unwrap();
    for (k, v) in toml::from_str::<toml::Table>(b).unwrap() {
        match (a.get_mut(&k), v) {
            (Some(toml::Value::Table(t)), toml::Value::Table(v)) => t.extend(v),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
    toml::to_string(&a).unwrap()
}

/// Max tokens of prompt `i`: 6 to 36, so sequences leave at different steps.
fn max_tokens(i: usize) -> usize {
    6 + (i * 7) % 31
}

/// A greedy completion: its text and `finish_reason`.
async fn complete(s: &TestServer, i: usize) -> (String, String) {
    let body = json!({"model": MODEL, "prompt": PROMPTS[i], "max_tokens": max_tokens(i), "temperature": 0});
    let (status, _, v) = s.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let choice = &v["choices"][0];
    (
        choice["text"].as_str().unwrap().to_string(),
        choice["finish_reason"].as_str().unwrap().to_string(),
    )
}

/// Every prompt at once, each starting a few milliseconds after the one before, so
/// sequences join while others decode.
async fn all_at_once(s: &TestServer) -> Vec<(String, String)> {
    join_all((0..PROMPTS.len()).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(15 * i as u64)).await;
        complete(s, i).await
    }))
    .await
}

async fn set_scheduler(s: &TestServer, kind: &str) {
    let (status, _, v) = s
        .post_raw(
            "/admin/reload",
            None,
            format!("[generation]\nscheduler = \"{kind}\"\n"),
        )
        .await;
    assert_eq!(
        status,
        200,
        "reload to {kind}: {}",
        String::from_utf8_lossy(&v)
    );
    let (_, info) = s.get_json("/info").await;
    assert_eq!(info["generative"]["scheduler"], kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_completions_are_the_same_alone_and_together_under_every_scheduler_and_strategy() {
    let reference = server("").await;
    let mut alone = Vec::new();
    for i in 0..PROMPTS.len() {
        alone.push(complete(&reference, i).await);
    }
    assert!(
        alone[0].0.contains("Paris"),
        "the capital of France: {:?}",
        alone[0].0
    );
    assert!(alone.iter().any(|a| a.1 == "length"));
    drop(reference);
    for strategy in ["workers", "spawn_blocking", "rayon", "inline", "processes"] {
        let s = server(&format!("[executor]\nstrategy = \"{strategy}\"\n")).await;
        for kind in ["continuous", "static", "sequential"] {
            set_scheduler(&s, kind).await;
            let together = all_at_once(&s).await;
            for (i, (got, want)) in together.iter().zip(&alone).enumerate() {
                assert_eq!(got, want, "{strategy}/{kind}: prompt {i} {:?}", PROMPTS[i]);
            }
        }
        let (_, metrics) = s.get("/metrics").await;
        let metrics = String::from_utf8_lossy(&metrics);
        for kind in ["continuous", "static", "sequential"] {
            let line = format!("concur_generation_prefill_chunks_total{{model=\"all-MiniLM-L6-v2\",scheduler=\"{kind}\",strategy=\"{strategy}\"}}");
            assert!(metrics.contains(&line), "{strategy}: no {line}");
        }
    }
}

/// Reads the first chunks of a stream, then drops the connection.
async fn start_and_abandon(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"model": MODEL, "prompt": "Count from one to one hundred:", "max_tokens": 400, "temperature": 0, "stream": true}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Three chunks of text: the sequence is decoding.
    while seen.windows(6).filter(|w| w == b"\"text\"").count() < 3 {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    // One slot: the second request can only run once the first one's slot is free.
    let s = server("[generation]\nslots = 1\n").await;
    start_and_abandon(s.addr).await;
    let (text, reason) = complete(&s, 0).await;
    assert!(
        text.contains("Paris") && reason == "length",
        "{text:?} {reason}"
    );
    let (_, m) = s.get("/metrics").await;
    let m = String::from_utf8_lossy(&m);
    assert_eq!(
        metric(
            &m,
            "concur_generation_finished_total{model=\"all-MiniLM-L6-v2\",reason=\"cancelled\""
        ),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "concur_generation_slots_in_use{"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_scheduler_under_load_loses_nothing() {
    let s = server("").await;
    let mut alone = Vec::new();
    for i in 0..PROMPTS.len() {
        alone.push(complete(&s, i).await);
    }
    let load = all_at_once(&s);
    let switch = async {
        for kind in ["static", "sequential", "continuous", "static", "continuous"] {
            tokio::time::sleep(Duration::from_millis(150)).await;
            set_scheduler(&s, kind).await;
        }
    };
    let (together, ()) = tokio::join!(load, switch);
    assert_eq!(together, alone);
}
