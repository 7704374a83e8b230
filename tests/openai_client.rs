//! The official OpenAI Python client (installed by `make setup`) calls the real server.

mod common;

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client_gets_golden_vectors() {
    let server = TestServer::start("").await;
    let golden = common::golden_path();
    let base = server.url("/v1");
    let golden = golden.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        common::run_python("openai_embeddings.py", &[&base, &golden])
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client_generates() {
    let server = TestServer::start(&common::generation("")).await;
    let base = server.url("/v1");
    tokio::task::spawn_blocking(move || common::run_python("openai_generate.py", &[&base, "64"]))
        .await
        .unwrap();
    server.stop().await;
}
