//! The body of `POST /embed`: bytes -> JSON -> typed request -> checked texts.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = match concur::http::parse_json(data) {
        Ok(body) => body,
        Err(e) => return common::check_error(e),
    };
    match concur::http::parse_tei(body, &common::SERVED) {
        Ok(req) => {
            common::check_texts(&req.texts);
            // Only the OpenAI API can ask for base64.
            assert!(!req.base64);
        }
        Err(e) => common::check_error(e),
    }
});
