//! HTTP: routing, authentication, per-request context, timing headers, request metrics.
//! Handlers live in one file per API family; errors map to responses in [`error`].

mod body;
mod chat;
mod embeddings;
pub mod error;
mod input;
mod meta;

use crate::metrics::{Metrics, Outcome, RejectReason};
use crate::pipeline::{Embeddings, Timings};
use crate::state::AppState;
use bytes::Bytes;
use error::ApiError;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// Response bodies are built whole: even streamed chat answers are known at once.
pub type Body = Full<Bytes>;

/// Optional per-request deadline in milliseconds, capped by `limits.max_deadline_ms`.
pub const DEADLINE_HEADER: &str = "x-deadline-ms";

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every route.
    All,
    /// The public listener when an admin listener exists: everything but `/metrics`.
    Public,
    /// The admin listener: health, readiness, info and metrics only.
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Embeddings,
    Embed,
    Chat,
    Health,
    Ready,
    Info,
    Models,
    Metrics,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        match path {
            "/v1/embeddings" => Route::Embeddings,
            "/embed" => Route::Embed,
            "/v1/chat/completions" => Route::Chat,
            "/health" => Route::Health,
            "/ready" => Route::Ready,
            "/info" => Route::Info,
            "/v1/models" => Route::Models,
            "/metrics" => Route::Metrics,
            _ => Route::NotFound,
        }
    }

    /// The `route` label: a small fixed set, whatever paths clients send.
    fn label(self) -> &'static str {
        match self {
            Route::Embeddings => "embeddings",
            Route::Embed => "embed",
            Route::Chat => "chat",
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Info => "info",
            Route::Models => "models",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Embeddings | Route::Embed | Route::Chat => Method::POST,
            _ => Method::GET,
        }
    }

    fn is_inference(self) -> bool {
        self.method() == Method::POST
    }

    fn in_scope(self, scope: Scope) -> bool {
        match scope {
            Scope::All => true,
            Scope::Public => self != Route::Metrics,
            Scope::Admin => matches!(
                self,
                Route::Health | Route::Ready | Route::Info | Route::Metrics
            ),
        }
    }
}

/// What an inference handler gets: the shared state, its deadline, and a place for the
/// timings that become response headers.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    deadline: Instant,
    timings: Option<Timings>,
}

impl Ctx<'_> {
    /// Runs texts through the pipeline and keeps the timings for the response headers.
    pub async fn embed(
        &mut self,
        texts: Vec<String>,
        truncate: bool,
    ) -> Result<Embeddings, ApiError> {
        let services = self
            .state
            .services()
            .ok_or_else(|| ApiError::unavailable("loading", "the model is still loading"))?;
        let out = services
            .pipeline
            .embed(texts, truncate, self.deadline)
            .await?;
        self.timings = Some(out.timings);
        Ok(out)
    }
}

/// Serves one request. Never fails: every error becomes a JSON response.
pub async fn handle(
    state: Arc<AppState>,
    scope: Scope,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let route = Some(Route::of(req.uri().path()))
        .filter(|r| r.in_scope(scope))
        .unwrap_or(Route::NotFound);
    let guard = CancelGuard {
        metrics: &state.metrics,
        armed: route.is_inference(),
    };
    let mut timings = None;
    let result = route_request(&state, route, req, started, &mut timings).await;
    guard.disarm();
    let mut response = result.unwrap_or_else(|e| {
        if let Some(reason) = e.reject_reason() {
            state.metrics.reject(reason);
        }
        e.into_response()
    });
    let total = started.elapsed();
    if let Some(t) = timings {
        timing_headers(&mut response, &t, total);
    }
    let status = response.status();
    state
        .metrics
        .requests
        .with_label_values(&[route.label(), status.as_str()])
        .inc();
    state
        .metrics
        .request_duration
        .with_label_values(&[route.label(), Outcome::of_status(status.as_u16()).as_str()])
        .observe(total.as_secs_f64());
    Ok(response)
}

async fn route_request(
    state: &AppState,
    route: Route,
    req: Request<Incoming>,
    started: Instant,
    timings: &mut Option<Timings>,
) -> Result<Response<Body>, ApiError> {
    if route == Route::NotFound {
        return Err(ApiError::not_found(format!(
            "no route for {}",
            req.uri().path()
        )));
    }
    if req.method() != route.method() {
        return Err(ApiError::method_not_allowed());
    }
    match route {
        Route::Health => return Ok(meta::health()),
        Route::Ready => return Ok(meta::ready(state)),
        Route::Info => return meta::info(state),
        Route::Models => return Ok(meta::models(state)),
        Route::Metrics => return Ok(meta::metrics(state)),
        _ => {}
    }
    if !authorized(state, &req) {
        return Err(ApiError::unauthorized());
    }
    let deadline = started + deadline(state, &req)?;
    let body = body::read_json(req, state.config.limits.max_body_bytes).await?;
    let mut ctx = Ctx {
        state,
        deadline,
        timings: None,
    };
    let response = match route {
        Route::Embeddings => embeddings::openai(&mut ctx, body).await,
        Route::Embed => embeddings::tei(&mut ctx, body).await,
        Route::Chat => chat::completions(&mut ctx, body).await,
        _ => unreachable!("meta routes returned above"),
    };
    *timings = ctx.timings;
    response
}

/// The request's deadline: the header's, capped, or the configured default.
fn deadline(state: &AppState, req: &Request<Incoming>) -> Result<Duration, ApiError> {
    let limits = &state.config.limits;
    let Some(value) = req.headers().get(DEADLINE_HEADER) else {
        return Ok(limits.default_deadline);
    };
    let ms = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{DEADLINE_HEADER} must be a positive number of milliseconds"
            ))
        })?;
    Ok(Duration::from_millis(ms).min(limits.max_deadline))
}

/// True when no keys are configured or the bearer token matches one, compared in
/// constant time so response timing does not reveal how much of a key was right.
fn authorized(state: &AppState, req: &Request<Incoming>) -> bool {
    let keys = &state.config.auth.api_keys;
    if keys.is_empty() {
        return true;
    }
    let Some(token) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let token = token.trim().as_bytes();
    keys.iter().fold(0u8, |hit, key| {
        hit | key.as_bytes().ct_eq(token).unwrap_u8()
    }) == 1
}

/// Per-response timings, as text-embeddings-inference sends them (milliseconds).
fn timing_headers(response: &mut Response<Body>, t: &Timings, total: Duration) {
    let ms = |d: Duration| {
        HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1e3)).expect("ascii")
    };
    let h = response.headers_mut();
    h.insert("x-tokenization-time", ms(t.tokenization));
    h.insert("x-queue-time", ms(t.queue));
    h.insert("x-inference-time", ms(t.inference));
    h.insert("x-total-time", ms(total));
    h.insert("x-batch-size", HeaderValue::from(t.batch_size));
}

/// A JSON response with a status.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Counts an inference request as cancelled if its handler is dropped before it answers,
/// which is what hyper does when the client disconnects.
struct CancelGuard<'a> {
    metrics: &'a Metrics,
    armed: bool,
}

impl CancelGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.metrics.reject(RejectReason::Cancelled);
        }
    }
}
