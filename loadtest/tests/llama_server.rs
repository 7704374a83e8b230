//! `loadtest stream` against a real OpenAI-compatible server: llama.cpp's
//! llama-server as `make peer-setup` installs it. Ignored by default (the
//! build takes about 15 CPU-minutes, so `make test` cannot count on it):
//! `cargo test -p loadtest --test llama_server -- --ignored`. Without the
//! binary or the model it says so and passes.

use std::sync::Arc;
use std::time::Duration;

use loadtest::llama_server::{default_binary, default_gguf, LlamaServer};
use loadtest::run::Load;
use loadtest::stream::{run, ChatParams, MaxTokens, StreamOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs `make peer-setup` (llama-server built from source)"]
async fn two_streams_against_llama_server() {
    let server = LlamaServer::new(default_binary(), default_gguf(), 2);
    if !server.binary.is_file() || !server.gguf.is_file() {
        eprintln!("skipped: run `make peer-setup` for llama-server and its model");
        return;
    }
    let log = std::env::temp_dir().join(format!("llama-server-test-{}.log", std::process::id()));
    let peer = server.start(&log, Duration::from_secs(120)).await.unwrap();
    let prompts = Arc::new(loadtest::corpus::load(&loadtest::corpus::chat_prompts_path()).unwrap());
    let chat = ChatParams {
        model: "SmolLM2-135M-Instruct".into(),
        system: None,
        temperature: 0.0,
    };
    let load = Load::Closed {
        users: 2,
        think_time: Duration::ZERO,
    };
    let mut o = StreamOptions::new(peer.base_url.clone(), prompts, load, chat);
    o.max_tokens = MaxTokens::Fixed(16);
    o.max_requests = Some(6);
    o.duration = Duration::from_secs(120);
    let measured = run(&o).await;
    let stopped = peer.stop(Duration::from_secs(10)).await;
    let s = measured.unwrap();
    stopped.unwrap();
    let t = &s.totals;
    assert_eq!((t.requests, t.successes, t.error_count()), (6, 6, 0), "{s}");
    // Greedy answers may stop early at the end of a sentence, never past 16.
    assert!(t.output_tokens > 0.0 && t.output_tokens <= 96.0, "{s}");
    assert!(t.prompt_tokens > 6 * 20, "usage sent: {s}");
    assert_eq!(t.ttft.count, 6);
    assert!(t.itl.count > 0);
    // llama-server sends one token per chunk and its usage at the end.
    assert_eq!(
        t.token_counts.keys().next().map(|k| k.name()),
        Some("final_usage")
    );
    assert!(
        s.server.counters.keys().any(|k| k.starts_with("llamacpp:")),
        "llama-server's --metrics scraped: {:?}",
        s.server
    );
    let _ = std::fs::remove_file(log);
}
