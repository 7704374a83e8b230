//! The one place that maps errors to an HTTP status and an OpenAI-shaped JSON body:
//! `{"error": {"message", "type", "param", "code"}}`.

use super::Body;
use crate::admission::AdmitError;
use crate::batcher::BatchError;
use crate::metrics::RejectReason;
use crate::pipeline::PipelineError;
use crate::tokenize::TokenizeError;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::json;

/// An error answer: status, OpenAI error fields, and what it counts as.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400: the body is not JSON, or not the right content type.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "bad_request",
            message,
        )
    }

    /// 422: well-formed JSON with a missing, mistyped or impossible value.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            "invalid_value",
            message,
        )
        .param(param)
    }

    /// 413: the body or an input is larger than allowed.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "too_large",
            message,
        )
    }

    /// 404 for a route this server does not serve (unknown path, or chat when disabled).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            message,
        )
    }

    /// 404 for a `model` other than the served one: OpenAI's code for it, and counted as
    /// invalid input rather than as an unknown route.
    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            message,
        )
        .param("model")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "method not allowed on this route",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or invalid API key; send `Authorization: Bearer <key>`",
        )
    }

    /// 503 while the model loads or the server drains.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            code,
            message,
        )
    }

    /// 500: the server's own fault, never the client's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    /// What this rejection counts as in `concur_rejected_requests_total`, if anything.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match (self.status, self.code) {
            (StatusCode::TOO_MANY_REQUESTS, _) => Some(RejectReason::Overloaded),
            (_, "deadline_exceeded") => Some(RejectReason::Deadline),
            (_, "draining") => Some(RejectReason::Draining),
            (StatusCode::UNAUTHORIZED, _) => Some(RejectReason::Unauthorized),
            // Routing failures, not bad inference input: scanners and typos stay out of
            // `invalid`.
            (_, "not_found") => Some(RejectReason::NotFound),
            (StatusCode::METHOD_NOT_ALLOWED, _) => Some(RejectReason::MethodNotAllowed),
            (s, _) if s.is_client_error() => Some(RejectReason::Invalid),
            _ => None,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE
        {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Tokenize(t @ TokenizeError::TooLong { index, .. }) => {
                ApiError::too_large(t.to_string()).param(format!("input[{index}]"))
            }
            PipelineError::Tokenize(t @ TokenizeError::Failed { index, .. }) => {
                ApiError::invalid(&format!("input[{index}]"), t.to_string())
            }
            PipelineError::Admission(AdmitError::Overloaded) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "overloaded",
                "the server is at capacity; retry shortly",
            ),
            PipelineError::Admission(AdmitError::Closed) | PipelineError::Lost => {
                ApiError::unavailable("draining", "the server is shutting down")
            }
            PipelineError::Batch(BatchError::Expired) => ApiError::unavailable(
                "deadline_exceeded",
                "the request's deadline passed while it waited in the queue",
            ),
            PipelineError::Batch(BatchError::Engine(e)) => {
                ApiError::internal(format!("the server failed to run this batch: {e}"))
            }
        }
    }
}
