//! The body of `POST /v1/chat/completions`: bytes -> JSON -> typed request -> the question.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = match concur::http::parse_json(data) {
        Ok(body) => body,
        Err(e) => return common::check_error(e),
    };
    match concur::http::parse_chat(body, &common::SERVED) {
        Ok(req) => {
            common::check_texts(std::slice::from_ref(&req.question));
        }
        Err(e) => common::check_error(e),
    }
});
