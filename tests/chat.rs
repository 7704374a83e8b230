//! The retrieval chat endpoint: response shapes, streaming, and the paraphrase test with
//! the official OpenAI Python client.

mod common;

use common::TestServer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_from_the_knowledge_base() {
    let server = TestServer::start("").await;
    let ask = |q: &str, stream: bool| json!({"model": "all-MiniLM-L6-v2", "messages": [{"role": "user", "content": q}], "stream": stream});
    let (status, _, body) = server
        .post(
            "/v1/chat/completions",
            &ask("I forgot my password, how can I get a new one?", false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["concur_retrieval"]["entry"], "reset-password");
    assert_eq!(body["concur_retrieval"]["matched"], true);
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let answer = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    // Streaming: the same answer as OpenAI chunks, ending with [DONE].
    let (status, headers, raw) = server
        .post_raw(
            "/v1/chat/completions",
            Some("application/json"),
            ask("I forgot my password, how can I get a new one?", true).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let text = String::from_utf8(raw.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, answer);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Off topic: the honest fallback.
    let (_, _, body) = server
        .post(
            "/v1/chat/completions",
            &ask("What is the capital of Peru?", false),
        )
        .await;
    assert_eq!(body["concur_retrieval"]["matched"], false);
    assert_eq!(body["choices"][0]["message"]["content"], server_fallback());
    server.stop().await;
}

fn server_fallback() -> String {
    common::config("").chat.fallback
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_paraphrases_find_their_entries() {
    let server = TestServer::start("").await;
    let root = common::root();
    let args = [
        server.url("/v1"),
        root.join("tests/data/chat_paraphrases.json")
            .display()
            .to_string(),
        root.join("config/knowledge_base.toml")
            .display()
            .to_string(),
    ];
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_python("openai_chat.py", &args)
    })
    .await
    .unwrap();
    server.stop().await;
}
