//! Every strategy serves the golden vectors, and many concurrent clients of mixed lengths
//! each get exactly the vectors they get alone.

mod common;

use common::{cosine, floats, golden, TestServer};
use serde_json::json;
use std::sync::Arc;

async fn check_strategy(preset: &str) {
    let text =
        std::fs::read_to_string(common::root().join("config").join(format!("{preset}.toml")))
            .unwrap();
    // The preset, plus a batching window so concurrent clients share batches.
    let extra = format!("{text}\n[limits]\ndefault_deadline_ms = 60000\n");
    let extra = extra.replace("max_wait_ms = 0", "max_wait_ms = 5");
    let server = Arc::new(TestServer::start(&extra).await);
    let (_, info) = server.get_json("/info").await;
    assert_eq!(info["strategy"], preset);
    let golden = golden();
    // One request with every golden text: a batch (or several) on this strategy.
    let texts: Vec<&str> = golden.items.iter().map(|(t, _, _)| t.as_str()).collect();
    let (status, _, body) = server.post("/embed", &json!({"inputs": texts})).await;
    assert_eq!(status, 200, "{preset}: {body}");
    for (row, (text, _, expected)) in body.as_array().unwrap().iter().zip(&golden.items) {
        let c = cosine(&floats(row), expected);
        assert!(c >= 0.9999, "{preset}: cosine {c} for {text:?}");
    }
    // Alone, one at a time.
    let mut alone = Vec::new();
    for t in &texts {
        let (_, _, body) = server.post("/embed", &json!({"inputs": t})).await;
        alone.push(floats(&body[0]));
    }
    // All at once, each request with two texts of different lengths, in its order.
    let mut tasks = Vec::new();
    for i in 0..texts.len() {
        let j = (i * 7 + 3) % texts.len();
        let (server, a, b) = (server.clone(), texts[i].to_string(), texts[j].to_string());
        tasks.push(tokio::spawn(async move {
            let (status, _, body) = server
                .post(
                    "/v1/embeddings",
                    &json!({"input": [a, b], "model": "all-MiniLM-L6-v2"}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            (
                i,
                j,
                floats(&body["data"][0]["embedding"]),
                floats(&body["data"][1]["embedding"]),
            )
        }));
    }
    for t in tasks {
        let (i, j, vi, vj) = t.await.unwrap();
        for (k, v) in [(i, vi), (j, vj)] {
            let worst = common::max_abs_diff(&v, &alone[k]);
            assert!(
                worst < 1e-4,
                "{preset}: input {k} differs from alone by {worst}"
            );
        }
    }
    common::stop_shared(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_serves_golden_vectors() {
    check_strategy("inline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_serves_golden_vectors() {
    check_strategy("spawn_blocking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rayon_serves_golden_vectors() {
    check_strategy("rayon").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_serves_golden_vectors() {
    check_strategy("workers").await;
}
