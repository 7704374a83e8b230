//! Routes about the server itself: health, readiness, info, models, metrics, and the
//! OpenAPI document.

use super::embeddings::ListObject;
use super::error::{ApiError, ErrorCode};
use super::{json_response, openapi, Body, Scope};
use crate::info::Info;
use crate::state::AppState;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: StatusValue,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusValue {
    Ok,
    Ready,
}

/// The models this server serves: the embedding model (which also answers chat by
/// retrieval) and, when generation is enabled, the generative model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: ListObject,
    pub data: Vec<Model>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    pub id: String,
    pub object: ModelObject,
    pub created: u64,
    pub owned_by: String,
}

/// `"model"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelObject {
    Model,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses((status = 200, description = "The process answers", body = Status)))]
pub fn health() -> Response<Body> {
    let ok = Status {
        status: StatusValue::Ok,
    };
    json_response(StatusCode::OK, &ok)
}

/// Readiness: the model is loaded, the server is not draining, and no worker process
/// (`processes` strategy) is crash-looping.
#[utoipa::path(get, path = "/ready", tag = "operations", operation_id = "ready",
    responses(
        (status = 200, description = "Ready for inference", body = Status),
        (status = 503, description = "Loading, draining, or worker processes crash-looping", body = super::error::ErrorResponse,
            headers(("retry-after" = String, description = "Seconds: always 1"))),
    ))]
pub fn ready(state: &AppState) -> Response<Body> {
    if state.is_draining() {
        return ApiError::unavailable(ErrorCode::Draining, "the server is shutting down")
            .into_response();
    }
    if state.services().is_none() {
        return ApiError::unavailable(ErrorCode::Loading, "the model is still loading")
            .into_response();
    }
    let crashing = state.metrics.processes.crash_looping.get();
    if crashing > 0 {
        let message = format!("{crashing} worker process(es) keep crashing and are backing off");
        return ApiError::unavailable(ErrorCode::WorkersCrashing, message).into_response();
    }
    let ready = Status {
        status: StatusValue::Ready,
    };
    json_response(StatusCode::OK, &ready)
}

/// What is being served, and how: model, strategy, batching, limits, threads, versions.
#[utoipa::path(get, path = "/info", tag = "operations", operation_id = "info",
    responses(
        (status = 200, description = "The server's resolved settings", body = Info),
        (status = 503, description = "The model is still loading",
            body = super::error::ErrorResponse,
            headers(("retry-after" = String, description = "Seconds: always 1"))),
    ))]
pub fn info(state: &AppState) -> Result<Response<Body>, ApiError> {
    let services = state
        .services()
        .ok_or_else(|| ApiError::unavailable(ErrorCode::Loading, "the model is still loading"))?;
    let mut info = services.info.clone();
    if let Some(g) = info.get_mut("generative") {
        // Resident memory grows as the cache's pages are first written: read it now.
        g["process_rss_bytes"] = crate::executor::resident_bytes().into();
    }
    Ok(json_response(StatusCode::OK, &info))
}

/// The served models, in OpenAI's list shape.
#[utoipa::path(get, path = "/v1/models", tag = "embeddings", operation_id = "listModels",
    responses((status = 200, description = "The served models", body = ModelList)))]
pub fn models(state: &AppState) -> Response<Body> {
    let model = |id: &str, owned_by: &str| Model {
        id: id.into(),
        object: ModelObject::Model,
        created: 0,
        owned_by: owned_by.into(),
    };
    let mut data = vec![model(&state.config().model.name, "sentence-transformers")];
    if let Some(g) = state.services().and_then(|s| s.generator.clone()) {
        data.push(model(g.model_name(), "HuggingFaceTB"));
    }
    let list = ModelList {
        object: ListObject::List,
        data,
    };
    json_response(StatusCode::OK, &list)
}

/// Every metric in the Prometheus text format (on the admin listener when one is set).
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain", body = String)))]
pub fn metrics(state: &AppState) -> Response<Body> {
    let mut response = Response::new(super::full(state.metrics.render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// This document: the routes of this listener, with this server's limits and auth.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub fn openapi(state: &AppState, scope: Scope) -> Response<Body> {
    json_response(StatusCode::OK, &openapi::document(&state.config(), scope))
}
