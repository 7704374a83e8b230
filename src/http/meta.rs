//! Routes about the server itself: health, readiness, info, models, metrics.

use super::error::ApiError;
use super::{json_response, Body};
use crate::state::AppState;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

/// Liveness: the process answers HTTP.
pub fn health() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// Readiness: the model is loaded and the server is not draining.
pub fn ready(state: &AppState) -> Response<Body> {
    if state.is_draining() {
        return ApiError::unavailable("draining", "the server is shutting down").into_response();
    }
    if state.services().is_none() {
        return ApiError::unavailable("loading", "the model is still loading").into_response();
    }
    json_response(StatusCode::OK, &json!({"status": "ready"}))
}

pub fn info(state: &AppState) -> Result<Response<Body>, ApiError> {
    let services = state
        .services()
        .ok_or_else(|| ApiError::unavailable("loading", "the model is still loading"))?;
    Ok(json_response(StatusCode::OK, &services.info))
}

pub fn models(state: &AppState) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": [{
                "id": state.config.model.name,
                "object": "model",
                "created": 0,
                "owned_by": "sentence-transformers",
            }]
        }),
    )
}

pub fn metrics(state: &AppState) -> Response<Body> {
    let mut response = Response::new(Body::from(state.metrics.render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
