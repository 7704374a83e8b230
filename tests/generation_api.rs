//! The generation API over real HTTP with the real model: the order of the streamed
//! events, a stream's duration measured to its last event, grounded replies from the
//! knowledge base, and deadlines while every slot is busy.

mod common;

use bytes::Bytes;
use common::{TestServer, GEN_MODEL};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A streamed reply: each event's data (JSON, or `[DONE]` as a string) and the time from
/// its first bytes to its last.
async fn stream(server: &TestServer, path: &str, body: &Value) -> (Vec<Value>, Duration) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(server.url(path))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        first.get_or_insert_with(Instant::now);
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").expect("a data line");
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into()))
        })
        .collect();
    (events, first.unwrap().elapsed())
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": GEN_MODEL, "messages": [{"role": "user", "content": content}], "temperature": 0});
    let fields = extra.as_object().unwrap().clone();
    body.as_object_mut().unwrap().extend(fields);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_in_openai_order_and_are_timed_to_their_end() {
    let server = TestServer::start(&common::generation("")).await;
    let options =
        json!({"max_tokens": 24, "stream": true, "stream_options": {"include_usage": true}});
    let (events, _) = stream(
        &server,
        "/v1/chat/completions",
        &chat("Tell me a story.", options),
    )
    .await;
    let n = events.len();
    assert!(n >= 5, "{events:?}");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    for e in &events[1..n - 3] {
        let text = e["choices"][0]["delta"]["content"].as_str().unwrap();
        assert!(
            !text.is_empty() && e["choices"][0]["finish_reason"].is_null(),
            "{e}"
        );
    }
    let finish = &events[n - 3]["choices"][0];
    assert!(finish["delta"].as_object().unwrap().is_empty(), "{finish}");
    assert_eq!(finish["finish_reason"], "length");
    assert_eq!(events[n - 2]["choices"], json!([]));
    assert_eq!(events[n - 2]["usage"]["completion_tokens"], 24);
    assert_eq!(events[n - 1], "[DONE]");
    assert!(events
        .iter()
        .all(|e| e == "[DONE]" || e["object"] == "chat.completion.chunk"));

    // Completions: no role chunk, no usage unless asked; the duration metric covers the
    // whole stream, not only the time to its headers.
    let body = json!({"model": GEN_MODEL, "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0, "stream": true});
    let (events, streaming) = stream(&server, "/v1/completions", &body).await;
    let n = events.len();
    assert!(
        events[..n - 2]
            .iter()
            .all(|e| e["choices"][0]["text"] != ""),
        "{events:?}"
    );
    assert_eq!(events[n - 2]["choices"][0]["finish_reason"], "length");
    assert!(events[n - 2]["usage"].is_null());
    assert_eq!(events[n - 1], "[DONE]");
    let metrics = common::scrape(&server).await;
    let labels = [("route", "completions"), ("outcome", "success")];
    let sum = common::sample(&metrics, "concur_request_duration_seconds_sum", &labels);
    assert!(
        sum >= 0.9 * streaming.as_secs_f64(),
        "duration {sum} s, first to last byte {streaming:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grounded_replies_answer_from_the_knowledge_base() {
    let server = TestServer::start(&common::generation("")).await;
    let question = "How long is the password reset link valid?";
    let grounded = json!({"grounded": true, "max_tokens": 24});
    let (status, headers, v) = server
        .post("/v1/chat/completions", &chat(question, grounded))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], GEN_MODEL);
    assert_eq!(v["concur_retrieval"]["entry"], "reset-password", "{v}");
    assert_eq!(v["concur_retrieval"]["decision"], "answer");
    // The entry says 60 minutes; the model alone does not know.
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("60"), "{content}");
    // The embedding's timings would describe another request's work.
    assert!(headers.get("x-inference-time").is_none());
    let (status, _, plain) = server
        .post(
            "/v1/chat/completions",
            &chat(question, json!({"max_tokens": 4})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(plain.get("concur_retrieval").is_none(), "{plain}");
    let entry_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(entry_tokens > plain["usage"]["prompt_tokens"].as_u64().unwrap() + 20);

    // Streamed: the entry rides on the chunk with the finish reason.
    let options = json!({"grounded": true, "max_tokens": 4, "stream": true});
    let (events, _) = stream(&server, "/v1/chat/completions", &chat(question, options)).await;
    let finish = events
        .iter()
        .find(|e| !e["choices"][0]["finish_reason"].is_null());
    assert_eq!(
        finish.unwrap()["concur_retrieval"]["entry"],
        "reset-password"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_slot_until_its_deadline() {
    let keys = "default_deadline_ms = 1000\nmax_tokens_cap = 400\n";
    let server = TestServer::start(&common::generation(keys)).await;
    let post = |body: &Value, deadline_ms: Option<&str>| {
        let mut req =
            Request::post(server.url("/v1/completions")).header("content-type", "application/json");
        if let Some(ms) = deadline_ms {
            req = req.header("x-deadline-ms", ms);
        }
        req.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    };
    // Both slots busy for hundreds of steps with streams read by nobody (their own
    // deadlines long enough for a slow step).
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let long = json!({"model": GEN_MODEL, "prompt": "Count to one hundred:", "max_tokens": 400, "stream": true});
    let mut busy = Vec::new();
    for _ in 0..2 {
        let response = client.request(post(&long, Some("60000"))).await.unwrap();
        assert_eq!(response.status(), 200);
        busy.push(response);
    }
    // Without a header, `generation.default_deadline_ms` applies.
    let short = json!({"model": GEN_MODEL, "prompt": "Hi", "max_tokens": 2});
    let (status, headers, body) = server.send(post(&short, None)).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    if status != 503 {
        // How a slot came free: which sequences finished, and why.
        let metrics = common::scrape(&server).await;
        let finished: Vec<_> = metrics
            .lines()
            .filter(|l| l.starts_with("concur_generation_finished_total"))
            .collect();
        panic!("expected 503, got {status}: {v}; {finished:#?}");
    }
    assert_eq!(v["error"]["code"], "deadline_exceeded");
    assert_eq!(headers["retry-after"], "1");
    // Gone clients free their slots; a header's deadline outlasts the default.
    drop(busy);
    let (status, _, body) = server.send(post(&short, Some("30000"))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    server.stop().await;
}

/// `loadtest stream` against the real server: the load tester's counts agree with what
/// the server says it did (tokens, first tokens), and every figure it needs is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_load_tester_agrees_with_the_server() {
    use loadtest::run::Load;
    use loadtest::stream::{run, ChatParams, MaxTokens, StreamOptions};
    let server = TestServer::start(&common::generation("")).await;
    let prompts = loadtest::corpus::load(&loadtest::corpus::chat_prompts_path()).unwrap();
    let chat = ChatParams {
        model: GEN_MODEL.into(),
        system: None,
        temperature: 0.0,
    };
    let load = Load::Closed {
        users: 2,
        think_time: Duration::ZERO,
    };
    let mut o = StreamOptions::new(server.url(""), std::sync::Arc::new(prompts), load, chat);
    o.max_tokens = MaxTokens::Fixed(8);
    o.max_requests = Some(4);
    o.warmup = Duration::ZERO;
    o.duration = Duration::from_secs(120);
    let s = run(&o).await.unwrap();
    let t = &s.totals;
    assert_eq!((t.requests, t.successes, t.error_count()), (4, 4, 0), "{s}");
    assert_eq!(t.ttft.count, 4, "{s}");
    assert!(t.output_tokens > 0.0 && t.output_tokens <= 32.0, "{s}");
    // One gap per token after each stream's first: never more.
    assert!(
        t.itl.count > 0 && t.itl.count as f64 <= t.output_tokens - 4.0,
        "{s}"
    );
    // The server's own counters over the same window: the same tokens, the same streams.
    let generated = s
        .server
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with("concur_generation_tokens_total") && k.contains("generated"))
        .map(|(_, v)| v)
        .sum::<f64>();
    assert_eq!(generated, t.output_tokens, "{:?}", s.server.counters);
    let ttft = &s.server.histograms["concur_generation_ttft_seconds"];
    assert_eq!(ttft.count, 4.0, "{:?}", s.server.histograms);
}
