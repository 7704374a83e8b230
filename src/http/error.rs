//! The one place that maps errors to an HTTP status and an OpenAI-shaped JSON body:
//! `{"error": {"message", "type", "param", "code"}}`. The body types below are also what
//! the OpenAPI document publishes for every error response.

use super::{json_response, Body};
use crate::admission::AdmitError;
use crate::batcher::BatchError;
use crate::generate::GenError;
use crate::metrics::RejectReason;
use crate::pipeline::PipelineError;
use crate::tokenize::TokenizeError;
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

/// The error class, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    RateLimitError,
    ServerError,
}

/// What went wrong, one code per row of the README's error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: not JSON, wrong content type, or a bad header.
    BadRequest,
    /// 401: API keys are configured and the bearer token is missing or wrong.
    InvalidApiKey,
    /// 404: unknown route, or chat disabled.
    NotFound,
    /// 404: a `model` other than the served one.
    ModelNotFound,
    /// 405: wrong method for the route (the `Allow` header names the right one).
    MethodNotAllowed,
    /// 413: body, input or word pieces over a limit.
    TooLarge,
    /// 422: a missing, mistyped or impossible field.
    InvalidValue,
    /// 400: the prompt and `max_tokens` do not fit the generative model's context.
    ContextLengthExceeded,
    /// 429: the queue is full.
    Overloaded,
    /// 500: the batch (or generation step) this request was in failed.
    InternalError,
    /// 503: the model is still loading.
    Loading,
    /// 503: the server is shutting down.
    Draining,
    /// 503: the deadline passed while the request was queued (or waited for a
    /// generation slot).
    DeadlineExceeded,
    /// 400 (reload): the TOML is malformed, has an unknown key, or an invalid value.
    InvalidConfig,
    /// 400 (reload): a key that can change only with a restart.
    NotLive,
    /// 409 (reload): the server was started without a configuration source.
    ReloadUnavailable,
    /// 500 (reload): the new configuration is valid but its executor could not start.
    ReloadFailed,
    /// 403 (reload): sent by a web page of another origin.
    CrossOrigin,
    /// 503 from `/ready` only: worker processes (`processes` strategy) keep crashing.
    WorkersCrashing,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// OpenAI's error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// For people: what was wrong and, where it helps, what to send instead.
    pub message: String,
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// The request field at fault (`input[2]`, `messages[0].role`), when there is one.
    pub param: Option<String>,
    pub code: ErrorCode,
}

/// An error answer: status, OpenAI error fields, and what it counts as.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// The method the route takes, sent as `Allow` with a 405.
    allow: Option<Method>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: ErrorType,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            allow: None,
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
            ErrorType::InvalidRequestError,
            ErrorCode::BadRequest,
            message,
        )
    }

    /// 422: well-formed JSON with a missing, mistyped or impossible value.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::InvalidRequestError,
            ErrorCode::InvalidValue,
            message,
        )
        .param(param)
    }

    /// 413: the body or an input is larger than allowed.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequestError,
            ErrorCode::TooLarge,
            message,
        )
    }

    /// 404 for a route this server does not serve (unknown path, or chat when disabled).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            ErrorCode::NotFound,
            message,
        )
    }

    /// 404 for a `model` other than the served one: OpenAI's code for it, and counted as
    /// invalid input rather than as an unknown route.
    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            ErrorCode::ModelNotFound,
            message,
        )
        .param("model")
    }

    /// 405, naming the method the route takes.
    pub fn method_not_allowed(allowed: Method) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::InvalidRequestError,
            ErrorCode::MethodNotAllowed,
            format!("method not allowed on this route; use {allowed}"),
        );
        e.allow = Some(allowed);
        e
    }

    /// 403: a browser sent this from a page of another site.
    pub fn cross_origin(origin: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorType::InvalidRequestError,
            ErrorCode::CrossOrigin,
            format!("reloads are refused from pages of another origin ({origin})"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::InvalidRequestError,
            ErrorCode::InvalidApiKey,
            "missing or invalid API key; send `Authorization: Bearer <key>`",
        )
    }

    /// 503 while the model loads or the server drains.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServerError,
            code,
            message,
        )
    }

    /// 429: a queue is full.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimitError,
            ErrorCode::Overloaded,
            message,
        )
    }

    /// 500: the server's own fault, never the client's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ServerError,
            ErrorCode::InternalError,
            message,
        )
    }

    /// What this rejection counts as in `concur_rejected_requests_total`, if anything.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match (self.status, self.code) {
            (StatusCode::TOO_MANY_REQUESTS, _) => Some(RejectReason::Overloaded),
            (_, ErrorCode::DeadlineExceeded) => Some(RejectReason::Deadline),
            (_, ErrorCode::Draining) => Some(RejectReason::Draining),
            (StatusCode::UNAUTHORIZED, _) => Some(RejectReason::Unauthorized),
            // Routing failures, not bad inference input: scanners and typos stay out of
            // `invalid`.
            (_, ErrorCode::NotFound) => Some(RejectReason::NotFound),
            (StatusCode::METHOD_NOT_ALLOWED, _) => Some(RejectReason::MethodNotAllowed),
            (s, _) if s.is_client_error() => Some(RejectReason::Invalid),
            _ => None,
        }
    }

    /// The JSON body: also what a stream that fails after it started sends as its last
    /// event.
    pub fn body(self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                message: self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, allow) = (self.status, self.allow.clone());
        let mut response = json_response(status, &self.body());
        let headers = response.headers_mut();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(method) = allow {
            headers.insert(
                ALLOW,
                HeaderValue::from_str(method.as_str()).expect("a method"),
            );
        }
        response
    }
}

impl From<crate::reload::ReloadError> for ApiError {
    fn from(e: crate::reload::ReloadError) -> Self {
        use crate::reload::ReloadError as R;
        let message = e.to_string();
        let client = |code, param: Option<String>| {
            let mut e = Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                code,
                message.clone(),
            );
            e.param = param;
            e
        };
        match e {
            R::Invalid { key, .. } => client(ErrorCode::InvalidConfig, key),
            R::NotLive { key } => client(ErrorCode::NotLive, Some(key)),
            R::NoSource => Self::new(
                StatusCode::CONFLICT,
                ErrorType::InvalidRequestError,
                ErrorCode::ReloadUnavailable,
                message,
            ),
            R::Failed(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorType::ServerError,
                ErrorCode::ReloadFailed,
                message,
            ),
            R::ShuttingDown => ApiError::unavailable(ErrorCode::Draining, message),
        }
    }
}

impl From<GenError> for ApiError {
    fn from(e: GenError) -> Self {
        let message = e.to_string();
        match e {
            GenError::Overloaded(_) => ApiError::overloaded(message),
            GenError::Deadline => ApiError::unavailable(ErrorCode::DeadlineExceeded, message),
            GenError::ShuttingDown => ApiError::unavailable(ErrorCode::Draining, message),
            // The handler names the field (`messages` or `prompt`).
            GenError::ContextTooLong { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::ContextLengthExceeded,
                message,
            ),
            GenError::Engine(_) => ApiError::internal(message),
        }
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
            PipelineError::Admission(AdmitError::Overloaded) => {
                ApiError::overloaded("the server is at capacity; retry shortly")
            }
            PipelineError::Admission(AdmitError::Closed) | PipelineError::Lost => {
                ApiError::unavailable(ErrorCode::Draining, "the server is shutting down")
            }
            PipelineError::Batch(BatchError::Expired) => ApiError::unavailable(
                ErrorCode::DeadlineExceeded,
                "the request's deadline passed while it waited in the queue",
            ),
            PipelineError::Batch(BatchError::Engine(e)) => {
                ApiError::internal(format!("the server failed to run this batch: {e}"))
            }
        }
    }
}
