//! Reading request bodies: content type, size limit enforced while reading, JSON.

use super::error::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;
use serde_json::Value;

/// Reads at most `limit` bytes and parses them as JSON.
///
/// Invalid JSON is 400; a body over the limit is 413, refused from `Content-Length` before
/// reading or as soon as the count passes the limit (never buffered whole).
pub async fn read_json(req: Request<Incoming>, limit: usize) -> Result<Value, ApiError> {
    check_content_type(req.headers())?;
    parse_json(&read_limited(req, limit).await?)
}

/// Reads at most `limit` bytes of any content type: 413 past the limit, as for JSON.
pub async fn read_limited(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large(limit)
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    Ok(bytes)
}

/// The body as JSON; anything else is 400.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!("the request body is larger than {limit} bytes"))
}

/// A body sent with a content type must say JSON; none at all is accepted (curl -d sends
/// form encoding unless told otherwise, which we refuse with a clear message).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "content type must be application/json, not `{mime}`"
        )))
    }
}
