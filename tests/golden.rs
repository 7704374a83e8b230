//! The golden vectors (computed by sentence-transformers itself) through both embedding
//! routes of the real server, and batching that never changes a request's vectors.

mod common;

use base64::Engine as _;
use common::{cosine, floats, golden, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_vectors_through_both_routes() {
    let server = TestServer::start("").await;
    let golden = golden();
    assert!(golden.items.len() >= 40);
    for (text, tokens, expected) in &golden.items {
        let (status, headers, body) = server
            .post(
                "/v1/embeddings",
                &json!({"model": "all-MiniLM-L6-v2", "input": text}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][0]["index"], 0);
        let v = floats(&body["data"][0]["embedding"]);
        assert_eq!(v.len(), 384);
        let c = cosine(&v, expected);
        assert!(c >= 0.9999, "cosine {c} for {text:?}");
        assert_eq!(
            body["usage"]["prompt_tokens"], *tokens,
            "token count of {text:?}"
        );
        assert!(headers.contains_key("x-inference-time"));
        assert_eq!(headers["x-batch-size"], "1");
    }
    // All at once through the TEI route: one request, batched together, same vectors.
    let texts: Vec<&str> = golden.items.iter().map(|(t, _, _)| t.as_str()).collect();
    let (status, _, body) = server.post("/embed", &json!({"inputs": texts})).await;
    assert_eq!(status, 200, "{body}");
    let rows = body.as_array().unwrap();
    assert_eq!(rows.len(), golden.items.len());
    for (row, (text, _, expected)) in rows.iter().zip(&golden.items) {
        let c = cosine(&floats(row), expected);
        assert!(c >= 0.9999, "cosine {c} for {text:?} in a batch");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_and_unnormalised_forms_agree_with_float() {
    let server = TestServer::start("").await;
    let text = "How do I reset my password?";
    let (_, _, float) = server
        .post(
            "/v1/embeddings",
            &json!({"input": [text], "model": "sentence-transformers/all-MiniLM-L6-v2"}),
        )
        .await;
    let float = floats(&float["data"][0]["embedding"]);
    let (status, _, b64) = server
        .post(
            "/v1/embeddings",
            &json!({"input": text, "model": "all-MiniLM-L6-v2", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, 200);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, float);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm(&float) - 1.0).abs() < 1e-4);
    let (_, _, raw) = server
        .post("/embed", &json!({"inputs": text, "normalize": false}))
        .await;
    let raw = floats(&raw[0]);
    assert!(
        (norm(&raw) - 1.0).abs() > 1e-3,
        "mean pooling alone is not unit length"
    );
    assert!(cosine(&raw, &float) > 0.99999);
    server.stop().await;
}

/// Many clients at once, texts of very different lengths, with a batching window so they
/// share batches: each must get exactly the vector it gets alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_lengths_get_their_own_vectors() {
    let server = std::sync::Arc::new(
        TestServer::start(
            "[batching]\nmax_wait_ms = 20\nlength_aware = false\nmax_batch_size = 8\n[limits]\ndefault_deadline_ms = 60000\n",
        ).await,
    );
    let golden = golden();
    let mut alone = Vec::new();
    for (text, _, _) in &golden.items {
        let (_, _, body) = server.post("/embed", &json!({"inputs": text})).await;
        alone.push(floats(&body[0]));
    }
    let mut tasks = Vec::new();
    for round in 0..2 {
        for (i, (text, _, _)) in golden.items.iter().enumerate() {
            let (server, text) = (server.clone(), text.clone());
            tasks.push(tokio::spawn(async move {
                let (status, headers, body) =
                    server.post("/embed", &json!({"inputs": [text]})).await;
                assert_eq!(status, 200, "{body}");
                let batch: usize = headers["x-batch-size"].to_str().unwrap().parse().unwrap();
                (round, i, floats(&body[0]), batch)
            }));
        }
    }
    let mut max_batch = 0;
    for t in tasks {
        let (round, i, v, batch) = t.await.unwrap();
        max_batch = max_batch.max(batch);
        let worst = common::max_abs_diff(&v, &alone[i]);
        assert!(
            worst < 1e-4,
            "round {round}, item {i}: differs from alone by {worst}"
        );
    }
    assert!(max_batch > 1, "requests were never batched together");
}
