//! Every kind of bad input gets a JSON error in the OpenAI shape with the right status:
//! never a panic, never a 500.

mod common;

use common::TestServer;
use serde_json::{json, Value};

fn assert_error(status: u16, expected: u16, body: &Value, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(body["error"]["type"].is_string(), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let server = TestServer::start(
        "[limits]\nmax_inputs = 4\nmax_body_bytes = 4096\nmax_input_chars = 2000\n",
    )
    .await;
    // 400: not JSON, wrong content type.
    for (ct, body, what) in [
        (Some("application/json"), "{not json", "invalid JSON"),
        (Some("application/json"), "", "empty body"),
        (
            Some("text/plain"),
            "{\"input\": \"hi\"}",
            "wrong content type",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "input=hi",
            "form body",
        ),
    ] {
        for route in [
            "/v1/embeddings",
            "/embed",
            "/v1/chat/completions",
            "/v1/completions",
        ] {
            let (s, _, b) = server.post_raw(route, ct, body).await;
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_error(s.as_u16(), 400, &v, &format!("{what} on {route}"));
        }
    }
    // 422: missing or mistyped fields, empty input, empty strings, too many inputs.
    let long_list: Vec<String> = (0..5).map(|i| format!("text {i}")).collect();
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2"}),
            "missing input",
        ),
        ("/v1/embeddings", json!({"input": 42}), "input is a number"),
        ("/v1/embeddings", json!({"input": []}), "empty list"),
        ("/v1/embeddings", json!({"input": ""}), "empty string"),
        (
            "/v1/embeddings",
            json!({"input": ["ok", "   "]}),
            "blank string in list",
        ),
        (
            "/v1/embeddings",
            json!({"input": ["ok", 3]}),
            "number in list",
        ),
        (
            "/v1/embeddings",
            json!({"input": [[101, 2023]]}),
            "token arrays",
        ),
        (
            "/v1/embeddings",
            json!({"input": long_list}),
            "too many inputs",
        ),
        (
            "/v1/embeddings",
            json!({"input": "hi", "encoding_format": "int8"}),
            "bad encoding_format",
        ),
        (
            "/v1/embeddings",
            json!({"input": "hi", "dimensions": 128}),
            "bad dimensions",
        ),
        (
            "/v1/embeddings",
            json!({"input": "hi", "model": 7}),
            "model not a string",
        ),
        ("/v1/embeddings", json!(["hi"]), "body not an object"),
        ("/embed", json!({"input": "hi"}), "TEI route without inputs"),
        (
            "/embed",
            json!({"inputs": "hi", "normalize": "yes"}),
            "normalize not a bool",
        ),
        (
            "/embed",
            json!({"inputs": "hi", "truncate": 1}),
            "truncate not a bool",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}),
            "no messages",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "system", "content": "be nice"}]}),
            "no user message",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": ""}]}),
            "empty content",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "wizard", "content": "hi"}]}),
            "unknown role",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": 5}]}),
            "content not text",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": "hi"}),
            "messages not an array",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}),
            "n = 2",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
            "stream not a bool",
        ),
    ];
    for (route, body, what) in cases {
        let (s, _, v) = server.post(route, &body).await;
        assert_error(s.as_u16(), 422, &v, what);
    }
    // 404: unknown model and route; 405: wrong method.
    let (s, _, v) = server
        .post(
            "/v1/embeddings",
            &json!({"input": "hi", "model": "text-embedding-3-small"}),
        )
        .await;
    assert_error(s.as_u16(), 404, &v, "unknown model");
    assert_eq!(v["error"]["param"], "model");
    // Generation is off on this server: the generative model and completions are 404.
    let (s, _, v) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": common::GEN_MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_error(
        s.as_u16(),
        404,
        &v,
        "generative model while generation is off",
    );
    assert_eq!(v["error"]["code"], "model_not_found");
    let (s, _, v) = server
        .post("/v1/completions", &json!({"prompt": "hi"}))
        .await;
    assert_error(s.as_u16(), 404, &v, "completions while generation is off");
    assert_eq!(v["error"]["code"], "not_found");
    let (s, b) = server.get("/v2/nothing").await;
    assert_error(
        s.as_u16(),
        404,
        &serde_json::from_slice(&b).unwrap(),
        "unknown route",
    );
    let (s, b) = server.get("/v1/embeddings").await;
    assert_error(
        s.as_u16(),
        405,
        &serde_json::from_slice(&b).unwrap(),
        "GET on a POST route",
    );
    // 413: body over the limit (declared or not), input over max_input_chars.
    let big = json!({"input": "word ".repeat(2000)}).to_string();
    let (s, _, b) = server
        .post_raw("/v1/embeddings", Some("application/json"), big)
        .await;
    assert_error(
        s.as_u16(),
        413,
        &serde_json::from_slice(&b).unwrap(),
        "body over limit",
    );
    let (s, _, v) = server
        .post("/v1/embeddings", &json!({"input": "é".repeat(2001)}))
        .await;
    assert_error(s.as_u16(), 413, &v, "input over max_input_chars");
    // Text over the model's length: truncated by default, refused when truncate is false.
    let long = "tokens and more tokens ".repeat(80);
    let (s, _, v) = server.post("/v1/embeddings", &json!({"input": long})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 256);
    let (s, _, v) = server
        .post("/embed", &json!({"inputs": long, "truncate": false}))
        .await;
    assert_error(s.as_u16(), 413, &v, "too long with truncate false");
    let (s, _, v) = server
        .post("/v1/embeddings", &json!({"input": long, "truncate": false}))
        .await;
    assert_error(
        s.as_u16(),
        413,
        &v,
        "too long with truncate false (OpenAI route)",
    );
    // Bad deadline header.
    let req = hyper::Request::post(server.url("/embed"))
        .header("content-type", "application/json")
        .header("x-deadline-ms", "soon")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({"inputs": "hi"}).to_string(),
        )))
        .unwrap();
    let (s, _, b) = server.send(req).await;
    assert_error(
        s.as_u16(),
        400,
        &serde_json::from_slice(&b).unwrap(),
        "bad deadline header",
    );
    // The server is still fine, and nothing above was counted as a server error.
    let (s, _, _) = server
        .post("/embed", &json!({"inputs": "still alive?"}))
        .await;
    assert_eq!(s, 200);
    let (_, metrics) = server.get("/metrics").await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        !metrics.contains("status=\"500\""),
        "a client mistake produced a 500"
    );
    server.stop().await;
}

/// The generative model's refusals: OpenAI's shape, the status of the error table, and
/// `param` naming the field at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_generation_requests_name_the_field() {
    let server = TestServer::start(&common::generation("")).await;
    let chat = |extra: Value| {
        let mut body =
            json!({"model": common::GEN_MODEL, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ("/v1/chat/completions", body)
    };
    let complete = |extra: Value| {
        let mut body = json!({"model": common::GEN_MODEL, "prompt": "hi"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ("/v1/completions", body)
    };
    let long = "word ".repeat(600);
    let cases = [
        (chat(json!({"model": "gpt-4"})), 404, "model"),
        (complete(json!({"model": "all-MiniLM-L6-v2"})), 404, "model"),
        (chat(json!({"max_tokens": 65})), 422, "max_tokens"),
        (
            chat(json!({"max_completion_tokens": 65})),
            422,
            "max_completion_tokens",
        ),
        (complete(json!({"max_tokens": 0})), 422, "max_tokens"),
        (complete(json!({"max_tokens": -1})), 422, "max_tokens"),
        (chat(json!({"temperature": 3})), 422, "temperature"),
        (complete(json!({"temperature": "hot"})), 422, "temperature"),
        (chat(json!({"top_p": 0})), 422, "top_p"),
        (complete(json!({"top_p": 1.5})), 422, "top_p"),
        (
            chat(json!({"stop": ["a", "b", "c", "d", "e"]})),
            422,
            "stop",
        ),
        (complete(json!({"stop": [""]})), 422, "stop"),
        (complete(json!({"stop": 3})), 422, "stop"),
        (chat(json!({"n": 2})), 422, "n"),
        (complete(json!({"seed": "x"})), 422, "seed"),
        (chat(json!({"messages": []})), 422, "messages"),
        (
            chat(json!({"messages": [{"role": "tool", "content": "4"}]})),
            422,
            "messages[0].role",
        ),
        (complete(json!({"prompt": ["one", "two"]})), 422, "prompt"),
        (complete(json!({"prompt": [1, 2, 3]})), 422, "prompt"),
        (complete(json!({"prompt": ""})), 422, "prompt"),
        (complete(json!({"prompt": null})), 422, "prompt"),
        // The retrieval bot answers from the knowledge base anyway.
        (
            (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": "hi"}], "grounded": true}),
            ),
            422,
            "grounded",
        ),
        (
            chat(json!({"messages": [{"role": "user", "content": long}]})),
            400,
            "messages",
        ),
        (
            complete(json!({"prompt": long, "stream": true})),
            400,
            "prompt",
        ),
        (
            complete(json!({"prompt": "word ".repeat(480), "max_tokens": 64})),
            400,
            "prompt",
        ),
    ];
    for ((route, body), status, param) in cases {
        let (s, _, v) = server.post(route, &body).await;
        let what = format!("{route} {body}");
        assert_error(s.as_u16(), status, &v, &what);
        assert_eq!(v["error"]["param"], param, "{what}: {v}");
        if status == 400 {
            assert_eq!(v["error"]["code"], "context_length_exceeded", "{what}: {v}");
        }
    }
    // Still generating, and no client mistake was a 500.
    let (s, _, v) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "Hello", "max_tokens": 2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, metrics) = server.get("/metrics").await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        !metrics.contains("status=\"500\""),
        "a client mistake produced a 500"
    );
    server.stop().await;
}
