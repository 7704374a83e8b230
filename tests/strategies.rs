//! Every strategy (`processes` included: children of the real binary), under both
//! parallelism modes, serves the golden vectors, and many concurrent clients of mixed
//! lengths each get exactly the vectors they get alone.

mod common;

use common::{cosine, floats, golden, TestServer};
use serde_json::json;
use std::sync::Arc;

/// The fixed mode the presets' elastic one is compared against: 2 sessions x 1 thread.
const FIXED: &str = "parallelism = \"fixed\"\nsessions = 2\nintra_op_threads = 1";

async fn check_strategy(preset: &str, parallelism: &str) {
    let text =
        std::fs::read_to_string(common::root().join("config").join(format!("{preset}.toml")))
            .unwrap();
    let elastic = "parallelism = \"elastic\"";
    assert!(text.contains(elastic), "{preset}.toml is elastic");
    let text = if parallelism == "fixed" {
        text.replace(elastic, FIXED)
    } else {
        text
    };
    // A `processes` server inside the test process would start the test binary as its
    // children: point it at the real one (the other strategies ignore the key).
    let text = text.replace(
        "[executor]\n",
        &format!(
            "[executor]\nworker_exe = {:?}\n",
            env!("CARGO_BIN_EXE_concur")
        ),
    );
    // The preset, plus a batching window so concurrent clients share batches.
    let extra = format!("{text}\n[limits]\ndefault_deadline_ms = 60000\n");
    let extra = extra.replace("max_wait_ms = 0", "max_wait_ms = 5");
    let server = Arc::new(TestServer::start(&extra).await);
    let (_, info) = server.get_json("/info").await;
    assert_eq!(info["strategy"], preset);
    assert_eq!(info["parallelism"]["mode"], parallelism);
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
async fn inline_elastic_serves_golden_vectors() {
    check_strategy("inline", "elastic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_fixed_serves_golden_vectors() {
    check_strategy("inline", "fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_elastic_serves_golden_vectors() {
    check_strategy("spawn_blocking", "elastic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_fixed_serves_golden_vectors() {
    check_strategy("spawn_blocking", "fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rayon_elastic_serves_golden_vectors() {
    check_strategy("rayon", "elastic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rayon_fixed_serves_golden_vectors() {
    check_strategy("rayon", "fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_elastic_serves_golden_vectors() {
    check_strategy("workers", "elastic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_fixed_serves_golden_vectors() {
    check_strategy("workers", "fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_elastic_serves_golden_vectors() {
    check_strategy("processes", "elastic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_fixed_serves_golden_vectors() {
    check_strategy("processes", "fixed").await;
}
