//! What every body target checks: a rejected body is a client error (never a 500) whose
//! response is OpenAI's JSON error shape, and an accepted body holds texts within limits.
// Shared by every target; the headers target uses only `check_error`.
#![allow(dead_code)]

use concur::http::error::ApiError;
use concur::http::{InputLimits, Served};
use hyper::body::Body as _;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Small limits, so the fuzzer reaches the "too many" and "too long" branches.
pub const SERVED: Served<'static> = Served {
    model: "all-MiniLM-L6-v2",
    limits: InputLimits {
        max_inputs: 4,
        max_chars: 64,
    },
};

/// A rejection: 400, 404, 413 or 422, with a JSON body that says what was wrong.
pub fn check_error(e: ApiError) {
    let status = e.status.as_u16();
    assert!(matches!(status, 400 | 404 | 413 | 422), "{e:?}");
    assert!(
        status != 422 || e.param.is_some(),
        "422 without param: {e:?}"
    );
    let mut body = e.into_response().into_body();
    let waker = Waker::noop();
    let frame = match Pin::new(&mut body).poll_frame(&mut Context::from_waker(waker)) {
        Poll::Ready(Some(Ok(frame))) => frame,
        other => panic!("an error body is one ready frame: {other:?}"),
    };
    let bytes = frame.into_data().expect("a data frame");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("error bodies are JSON");
    let message = v["error"]["message"].as_str().expect("a message");
    assert!(!message.is_empty());
    assert!(
        v["error"]["type"].is_string() && v["error"]["code"].is_string(),
        "{v}"
    );
}

/// Accepted texts: at least one, within the limits, none blank.
pub fn check_texts(texts: &[String]) {
    assert!(!texts.is_empty() && texts.len() <= SERVED.limits.max_inputs);
    for t in texts {
        assert!(!t.trim().is_empty(), "blank text accepted: {t:?}");
        assert!(t.chars().count() <= SERVED.limits.max_chars);
    }
}
