//! The request headers the server interprets itself: `x-deadline-ms`, `authorization` and
//! `content-type`. The input is their three values separated by newlines; a value hyper
//! would refuse (control characters) is left out, as hyper never hands such a request on.
#![no_main]

mod common;

use concur::config::LimitsConfig;
use concur::http::{authorized, check_content_type, deadline, DEADLINE_HEADER};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const KEYS: [&str; 2] = ["first-key-0123456789", "second-key-abcdefghij"];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let mut headers = HeaderMap::new();
    for name in [
        DEADLINE_HEADER,
        AUTHORIZATION.as_str(),
        CONTENT_TYPE.as_str(),
    ] {
        if let Some(Ok(v)) = parts.next().map(HeaderValue::from_bytes) {
            headers.insert(name, v);
        }
    }
    check_deadline(&headers);
    check_auth(&headers);
    match check_content_type(&headers) {
        Ok(()) => {
            if let Some(v) = headers.get(CONTENT_TYPE) {
                let mime = v.to_str().unwrap().split(';').next().unwrap().trim();
                assert!(mime.eq_ignore_ascii_case("application/json"), "{v:?}");
            }
        }
        Err(e) => common::check_error(e),
    }
});

fn check_deadline(headers: &HeaderMap) {
    let limits = LimitsConfig {
        max_body_bytes: 1 << 20,
        max_inputs: 4,
        max_input_chars: 64,
        default_deadline: Duration::from_secs(10),
        max_deadline: Duration::from_secs(60),
    };
    let value = headers.get(DEADLINE_HEADER);
    match deadline(headers, &limits) {
        Ok(d) if value.is_none() => assert_eq!(d, limits.default_deadline),
        Ok(d) => assert!(d > Duration::ZERO && d <= limits.max_deadline, "{d:?}"),
        Err(e) => {
            // Plain positive decimals are always accepted, however many digits (capped).
            let v = value.expect("no header, no error").as_bytes();
            let plain = !v.is_empty() && v.iter().all(u8::is_ascii_digit);
            assert!(!plain || v.iter().all(|&b| b == b'0'), "{v:?} refused");
            common::check_error(e);
        }
    }
}

fn check_auth(headers: &HeaderMap) {
    let keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    assert!(authorized(headers, &[]), "no keys configured means open");
    let given = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let exact = given.is_some_and(|g| KEYS.iter().any(|k| g == format!("Bearer {k}").as_bytes()));
    let ok = authorized(headers, &keys);
    if exact {
        assert!(ok, "the exact header of a key was refused");
    }
    if ok {
        let token = std::str::from_utf8(given.expect("a header"))
            .expect("ASCII")
            .strip_prefix("Bearer ")
            .expect("the Bearer scheme")
            .trim();
        assert!(KEYS.contains(&token), "{token:?} accepted");
    }
}
