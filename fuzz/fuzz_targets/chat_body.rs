//! The body of `POST /v1/chat/completions`: bytes -> JSON -> typed request -> the turns.
#![no_main]

mod common;

use concur::chat::turns::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = match concur::http::parse_json(data) {
        Ok(body) => body,
        Err(e) => return common::check_error(e),
    };
    match concur::http::parse_chat(body, &common::SERVED) {
        Ok(req) => {
            // The last user message is the one embedded: it alone must be within limits.
            let last = req.turns.iter().rev().find(|t| t.role == Role::User);
            common::check_texts(std::slice::from_ref(&last.expect("a user message").text));
        }
        Err(e) => common::check_error(e),
    }
});
