//! The header parsers, without a server.

use super::{authorized, deadline, DEADLINE_HEADER};
use crate::config::LimitsConfig;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use std::time::Duration;

const LIMITS: LimitsConfig = LimitsConfig {
    max_body_bytes: 1 << 20,
    max_inputs: 8,
    max_input_chars: 100,
    default_deadline: Duration::from_secs(10),
    max_deadline: Duration::from_secs(60),
};

fn with(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_str(value).unwrap());
    h
}

#[test]
fn deadlines_are_positive_integers_capped_at_the_limit() {
    assert_eq!(
        deadline(&HeaderMap::new(), &LIMITS).unwrap(),
        LIMITS.default_deadline
    );
    let ms = |v: &str| deadline(&with(DEADLINE_HEADER, v), &LIMITS).map(|d| d.as_millis());
    assert_eq!(ms("250").unwrap(), 250);
    assert_eq!(ms(" 7 ").unwrap(), 7);
    assert_eq!(ms("+5").unwrap(), 5);
    assert_eq!(ms("120000").unwrap(), 60_000);
    // Found by schemathesis: more digits than u64 holds is still a (capped) deadline.
    assert_eq!(ms("41985727548744220672").unwrap(), 60_000);
    for bad in ["0", "000", "-1", "1.5", "soon", "", "+", "1e3"] {
        let e = ms(bad).unwrap_err();
        assert_eq!(e.status, 400, "{bad:?}");
    }
}

#[test]
fn only_an_exact_bearer_token_is_authorized() {
    let keys = ["first-key-0123456789".to_string()];
    assert!(authorized(&HeaderMap::new(), &[]));
    assert!(!authorized(&HeaderMap::new(), &keys));
    let auth = |v: &str| authorized(&with(AUTHORIZATION.as_str(), v), &keys);
    assert!(auth("Bearer first-key-0123456789"));
    assert!(auth("Bearer first-key-0123456789 "));
    assert!(!auth("bearer first-key-0123456789"));
    assert!(!auth("Bearer first-key-012345678"));
    assert!(!auth("Bearer first-key-01234567890"));
    assert!(!auth("first-key-0123456789"));
}
