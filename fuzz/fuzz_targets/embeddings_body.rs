//! The body of `POST /v1/embeddings`: bytes -> JSON -> typed request -> checked texts.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = match concur::http::parse_json(data) {
        Ok(body) => body,
        Err(e) => return common::check_error(e),
    };
    match concur::http::parse_openai(body, &common::SERVED) {
        Ok(req) => {
            common::check_texts(&req.texts);
            // The OpenAI API always answers unit vectors.
            assert!(req.normalize);
        }
        Err(e) => common::check_error(e),
    }
});
