//! Fuzzing request parsing and validation through the real server: arbitrary bytes and
//! arbitrary JSON (biased towards the fields the routes read) must never produce a 500 or a
//! non-JSON answer. Bounded in count and time; the interesting inputs found so far live in
//! tests/data/fuzz/ and are replayed first, as regression tests.

mod common;

use common::TestServer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Map, Value};
use std::time::Duration;

const ROUTES: [&str; 3] = ["/v1/embeddings", "/embed", "/v1/chat/completions"];
const KEYS: [&str; 14] = [
    "input",
    "inputs",
    "messages",
    "role",
    "content",
    "model",
    "encoding_format",
    "normalize",
    "truncate",
    "stream",
    "n",
    "dimensions",
    "user",
    "type",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("user"),
            Just("system"),
            Just("float"),
            Just("base64"),
            Just("all-MiniLM-L6-v2"),
            Just("text")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                |kv| Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>()
                )
            ),
        ]
    })
}

async fn check(server: &TestServer, route: &str, body: Vec<u8>, what: &str) {
    let (status, _, bytes) = server.post_raw(route, Some("application/json"), body).await;
    assert_ne!(
        status.as_u16(),
        500,
        "{what} on {route}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        // Successful chat streams are server-sent events, not JSON.
        assert!(
            bytes.starts_with(b"data: "),
            "{what} on {route}: not JSON: {}",
            String::from_utf8_lossy(&bytes)
        );
        Value::Null
    });
    if !status.is_success() {
        assert!(v["error"]["message"].is_string(), "{what} on {route}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bodies_never_cause_a_server_error() {
    let server =
        TestServer::start("[limits]\nmax_inputs = 8\n[batching]\nmax_batch_size = 8\n").await;
    // Regression corpus first.
    let dir = common::root().join("tests/data/fuzz");
    let mut corpus: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 10);
    for path in &corpus {
        let body = std::fs::read(path).unwrap();
        for route in ROUTES {
            check(&server, route, body.clone(), &path.display().to_string()).await;
        }
    }
    // Then fresh samples, bounded by count and time.
    let mut runner = TestRunner::new(PropConfig::default());
    let bytes = prop::collection::vec(any::<u8>(), 0..300);
    let json = json_value();
    let end = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut sent = 0;
    for i in 0..400 {
        if tokio::time::Instant::now() > end {
            break;
        }
        let (body, what) = if i % 3 == 0 {
            (
                bytes.new_tree(&mut runner).unwrap().current(),
                "random bytes",
            )
        } else {
            (
                json.new_tree(&mut runner)
                    .unwrap()
                    .current()
                    .to_string()
                    .into_bytes(),
                "random JSON",
            )
        };
        check(&server, ROUTES[i % 3], body, what).await;
        sent += 1;
    }
    println!(
        "{} corpus inputs x 3 routes, then {sent} generated bodies: no server error",
        corpus.len()
    );
    server.stop().await;
}
