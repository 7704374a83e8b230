//! The retrieval chat endpoint through the real server and model: response shapes,
//! streaming, the decisions that matter to a customer (other companies, the README
//! example, follow-ups), and the evaluation sets through the official OpenAI client.

mod common;

use common::TestServer;
use serde_json::{json, Value};

/// A conversation of user/assistant messages, alternating, starting with the user.
fn conversation(texts: &[&str]) -> Value {
    let messages: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": t})
        })
        .collect();
    json!({"model": "all-MiniLM-L6-v2", "messages": messages})
}

async fn chat(server: &TestServer, texts: &[&str]) -> (String, Value) {
    let (status, _, body) = server
        .post("/v1/chat/completions", &conversation(texts))
        .await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    (content.to_string(), body["concur_retrieval"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_from_the_knowledge_base() {
    let server = TestServer::start("").await;
    let ask = |q: &str, stream: bool| json!({"model": "all-MiniLM-L6-v2", "messages": [{"role": "user", "content": q}], "stream": stream});
    let question = "I forgot my password, how can I get a new one?";
    let (status, _, body) = server
        .post("/v1/chat/completions", &ask(question, false))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["concur_retrieval"]["entry"], "reset-password");
    assert_eq!(body["concur_retrieval"]["matched"], true);
    assert_eq!(body["concur_retrieval"]["decision"], "answer");
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
            ask(question, true).to_string(),
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
    let (content, retrieval) = chat(&server, &["What is the capital of Peru?"]).await;
    assert_eq!(retrieval["matched"], false);
    assert_eq!(retrieval["decision"], "fallback");
    assert_eq!(retrieval["reason"], "below_threshold");
    assert_eq!(content, common::config("").chat.fallback);
    server.stop().await;
}

/// The README's example and the messages about other companies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_companies_get_the_fallback_and_gifts_the_returns_entry() {
    let server = TestServer::start("").await;
    let (_, r) = chat(&server, &["can I return a gift?"]).await;
    assert_eq!(r["entry"], "return-policy", "{r}");
    assert_eq!(r["decision"], "answer", "{r}");
    for (question, reason) in [
        ("cancel my Netflix subscription", "other_company:netflix"),
        ("Gmail password reset", "other_company:gmail"),
        ("IKEA opening hours", "other_company:ikea"),
        ("Amazon order tracking", "other_company:amazon"),
        (
            "Can I sell my own products on your marketplace?",
            "out_of_scope:",
        ),
    ] {
        let (content, r) = chat(&server, &[question]).await;
        assert_eq!(r["decision"], "fallback", "{question}: {r}");
        assert!(
            r["reason"].as_str().unwrap().starts_with(reason),
            "{question}: {r}"
        );
        assert!(content.contains("support@acme.example"), "{content}");
    }
    // Our own subscription is still answered, and a retailer's name is fine where
    // the entry is about other retailers.
    let (_, r) = chat(&server, &["how do I cancel my Acme Plus subscription"]).await;
    assert_eq!(r["entry"], "cancel-subscription", "{r}");
    let (_, r) = chat(
        &server,
        &["I saw it cheaper at MediaMarkt, will you match it?"],
    )
    .await;
    assert_eq!(r["entry"], "price-match", "{r}");
    assert_eq!(r["decision"], "answer", "{r}");
    server.stop().await;
}

/// "agent", "thanks", "yes", "no" are answered from the conversation, not matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_use_the_conversation() {
    let server = TestServer::start("").await;
    let question = "I was charged twice for the same order";
    let (answer, r) = chat(&server, &[question]).await;
    assert_eq!(r["entry"], "double-charge", "{r}");

    // "agent" after an answer: a handover message that says what happens next and
    // names the topic; no promise of a transfer, no repeat of the contact entry.
    let (content, r) = chat(&server, &[question, &answer, "agent"]).await;
    assert_eq!(r["decision"], "handover", "{r}");
    assert_eq!(r["entry"], "double-charge");
    assert_eq!(r["matched"], false);
    assert!(content.contains("can't transfer you"), "{content}");
    assert!(content.contains("support@acme.example") && content.contains("+49"));
    assert!(
        content.contains("Charged twice or unexpected charge"),
        "{content}"
    );
    let (again, _) = chat(&server, &[question, &answer, "agent", &content, "agent"]).await;
    assert!(!again.to_lowercase().contains("type 'agent'"), "{again}");

    let (content, r) = chat(&server, &[question, &answer, "thanks!"]).await;
    assert_eq!(r["decision"], "thanks");
    assert_ne!(content, answer);
    let (_, r) = chat(&server, &[question, &answer, "yes"]).await;
    assert_eq!(r["decision"], "helped");
    let (content, r) = chat(&server, &[question, &answer, "no"]).await;
    assert_eq!(r["decision"], "not_helped");
    assert!(content.contains("support@acme.example") && content.contains("Charged twice"));

    // Without an answer before it, "yes" asks for the question and "no" hands over.
    let (_, r) = chat(&server, &["yes"]).await;
    assert_eq!(r["decision"], "prompt");
    let fallback = common::config("").chat.fallback;
    let (_, r) = chat(&server, &["what is the capital of Peru", &fallback, "no"]).await;
    assert_eq!(r["decision"], "handover");
    assert_eq!(r["entry"], Value::Null);
    let (_, r) = chat(&server, &["Hello!"]).await;
    assert_eq!(r["decision"], "greeting");

    // A real question after earlier turns is matched on its own.
    let (_, r) = chat(
        &server,
        &[question, &answer, "and how long do refunds take?"],
    )
    .await;
    assert_eq!(r["entry"], "refund-status", "{r}");
    server.stop().await;
}

/// The evaluation sets through the official OpenAI Python client
/// (tests/python/openai_chat.py), each with its gates: (file, on-topic, fallback).
///
/// `chat_eval_holdout4.json` is the held-out part: written by a fourth author who saw only
/// the entries' titles and answers, never used for a decision, measured in aggregate only
/// (before and after the last knowledge-base change) and never read message by message
/// (they are printed only when its gate fails); its gates sit just below the figures
/// measured there, 96.7% on-topic and 97.5% fallback (docs/chat-bot.md). The earlier
/// held-out parts (`chat_eval_holdout3.json`, `chat_eval_holdout2.json`,
/// `chat_eval_holdout.json`) steered the current threshold in aggregate; they, the tuning
/// sets and `chat_paraphrases.json`, which the first knowledge base was written against,
/// are regression checks. Each gate is a file's figure less one message, rounded down to a
/// whole percent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_meets_the_gates_on_the_evaluation_sets() {
    let server = TestServer::start("").await;
    let root = common::root();
    let kb = root.join("config/knowledge_base.toml");
    for (file, min_on_topic, min_off_topic) in [
        ("chat_eval_holdout4.json", 0.96, 0.96),
        ("chat_eval_holdout3.json", 0.94, 0.96),
        ("chat_eval_holdout2.json", 0.96, 0.95),
        ("chat_eval_holdout.json", 0.94, 0.93),
        ("chat_eval_tune3.json", 0.95, 0.95),
        ("chat_eval_tune2.json", 0.98, 0.92),
        ("chat_paraphrases.json", 0.93, 0.98),
    ] {
        let args = [
            server.url("/v1"),
            root.join("tests/data").join(file).display().to_string(),
            kb.display().to_string(),
            min_on_topic.to_string(),
            min_off_topic.to_string(),
        ];
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::run_python("openai_chat.py", &args)
        })
        .await
        .unwrap();
    }
    server.stop().await;
}
