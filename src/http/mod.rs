//! HTTP: routing, authentication, per-request context, timing headers, request metrics.
//! Handlers live in one file per API family (the live page and its feed in `live`); errors
//! map to responses in [`error`]; the OpenAPI document is generated from the handlers' own
//! types in [`openapi`].
//!
//! Generation: `chat` hands requests that name the generative model to `chat_generate`,
//! `completions` serves `/v1/completions`; both check their sampling fields in
//! `gen_params`, run the prompt through `generate`, and stream through `sse`, whose body
//! owns the token stream. `response` is the one body type, whole or streamed.
//!
//! The request parsers are public (`parse_*`, [`deadline`], [`authorized`]) so that the
//! fuzz targets in `fuzz/` drive exactly the code the server runs.

mod admin;
mod body;
mod chat;
mod chat_generate;
mod chat_types;
mod completions;
mod completions_types;
mod embeddings;
pub mod error;
mod gen_params;
mod generate;
mod input;
mod live;
mod meta;
pub mod openapi;
mod response;
mod sse;

pub use body::{check_content_type, parse_json};
pub use chat::{parse_chat, ValidChat};
pub use chat_types::ChatCompletionRequest;
pub use completions_types::CompletionRequest;
pub use embeddings::{parse_openai, parse_tei, EmbedRequest, EmbeddingsRequest, ValidEmbed};
pub use input::{Input, InputLimits, Served};
pub use response::{full, hold, is_streamed, Body};

use crate::config::{Config, LimitsConfig};
use crate::metrics::{Metrics, Outcome, RejectReason};
use crate::pipeline::{Embeddings, Timings};
use crate::state::AppState;
use error::{ApiError, ErrorCode};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// Optional per-request deadline in milliseconds, capped by `limits.max_deadline_ms`.
pub const DEADLINE_HEADER: &str = "x-deadline-ms";

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every route.
    All,
    /// The public listener when an admin listener exists: everything but `/metrics`,
    /// `/admin/reload`, and the live page with its feed.
    Public,
    /// The admin listener: health, readiness, info, metrics, reload and the live page only.
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Embeddings,
    Embed,
    Chat,
    Completions,
    Health,
    Ready,
    Info,
    Models,
    Metrics,
    OpenApi,
    Reload,
    LivePage,
    LiveJson,
    NotFound,
}

/// Every route the server answers: the router and the OpenAPI test both read this table.
const ROUTES: [(&str, Route); 14] = [
    ("/v1/embeddings", Route::Embeddings),
    ("/embed", Route::Embed),
    ("/v1/chat/completions", Route::Chat),
    ("/v1/completions", Route::Completions),
    ("/health", Route::Health),
    ("/ready", Route::Ready),
    ("/info", Route::Info),
    ("/v1/models", Route::Models),
    ("/metrics", Route::Metrics),
    ("/openapi.json", Route::OpenApi),
    ("/admin/reload", Route::Reload),
    ("/", Route::LivePage),
    ("/live", Route::LivePage),
    ("/live.json", Route::LiveJson),
];

/// The (method, path) pairs a listener of this scope serves.
pub fn routes(scope: Scope) -> Vec<(Method, &'static str)> {
    ROUTES
        .iter()
        .filter(|(_, r)| r.in_scope(scope))
        .map(|&(path, r)| (r.method(), path))
        .collect()
}

impl Route {
    fn of(path: &str) -> Route {
        ROUTES
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(Route::NotFound, |&(_, r)| r)
    }

    /// The `route` label: a small fixed set, whatever paths clients send.
    fn label(self) -> &'static str {
        match self {
            Route::Embeddings => "embeddings",
            Route::Embed => "embed",
            Route::Chat => "chat",
            Route::Completions => "completions",
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Info => "info",
            Route::Models => "models",
            Route::Metrics => "metrics",
            Route::OpenApi => "openapi",
            Route::Reload => "reload",
            Route::LivePage => "live_page",
            Route::LiveJson => "live",
            Route::NotFound => "not_found",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Embeddings | Route::Embed | Route::Chat | Route::Completions | Route::Reload => {
                Method::POST
            }
            _ => Method::GET,
        }
    }

    fn is_inference(self) -> bool {
        matches!(
            self,
            Route::Embeddings | Route::Embed | Route::Chat | Route::Completions
        )
    }

    fn in_scope(self, scope: Scope) -> bool {
        match scope {
            Scope::All => true,
            // Reload and what watches the server go where its metrics are.
            Scope::Public => !matches!(
                self,
                Route::Metrics | Route::Reload | Route::LivePage | Route::LiveJson
            ),
            Scope::Admin => matches!(
                self,
                Route::Health
                    | Route::Ready
                    | Route::Info
                    | Route::Metrics
                    | Route::OpenApi
                    | Route::Reload
                    | Route::LivePage
                    | Route::LiveJson
            ),
        }
    }
}

/// What an inference handler gets: the shared state, its deadline, and a place for the
/// timings that become response headers.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    /// The live configuration when the request arrived, kept to its end.
    pub config: Arc<Config>,
    deadline: Instant,
    /// When the request arrived and the deadline its header asked for, if any: a
    /// generation request's default is `generation.default_deadline_ms`, not the limits'.
    started: Instant,
    requested: Option<Duration>,
    timings: Option<Timings>,
}

impl Ctx<'_> {
    /// What the request parsers need to know about this server.
    pub fn served(&self) -> Served<'_> {
        let limits = &self.config.limits;
        Served {
            model: &self.config.model.name,
            limits: InputLimits {
                max_inputs: limits.max_inputs,
                max_chars: limits.max_input_chars,
            },
        }
    }

    /// How long a generation request may wait for a slot.
    pub fn generation_deadline(&self) -> Instant {
        let wait = self
            .requested
            .unwrap_or(self.config.generation.default_deadline);
        self.started + wait
    }

    /// Runs texts through the pipeline and keeps the timings for the response headers.
    pub async fn embed(
        &mut self,
        texts: Vec<String>,
        truncate: bool,
    ) -> Result<Embeddings, ApiError> {
        let services = self.state.services().ok_or_else(|| {
            ApiError::unavailable(ErrorCode::Loading, "the model is still loading")
        })?;
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
    let result = route_request(&state, scope, route, req, started, &mut timings).await;
    guard.disarm();
    let mut response = result.unwrap_or_else(|e| {
        if let Some(reason) = e.reject_reason() {
            state.metrics.reject(reason);
        }
        e.into_response()
    });
    if let Some(t) = timings {
        timing_headers(&mut response, &t, started.elapsed());
    }
    let status = response.status();
    state
        .metrics
        .requests
        .with_label_values(&[route.label(), status.as_str()])
        .inc();
    let duration = DurationRecord {
        metrics: state.metrics.clone(),
        route,
        status,
        started,
    };
    Ok(hold(response, duration))
}

/// Observes a request's duration when dropped: at once for a body built whole, at the end
/// of a streamed one (or when its client leaves mid-stream), so a stream's duration is
/// the time to its last token, not to its headers.
struct DurationRecord {
    metrics: Arc<Metrics>,
    route: Route,
    status: StatusCode,
    started: Instant,
}

impl Drop for DurationRecord {
    fn drop(&mut self) {
        let outcome = Outcome::of_status(self.status.as_u16());
        self.metrics
            .request_duration
            .with_label_values(&[self.route.label(), outcome.as_str()])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

async fn route_request(
    state: &AppState,
    scope: Scope,
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
        return Err(ApiError::method_not_allowed(route.method()));
    }
    match route {
        Route::Health => return Ok(meta::health()),
        Route::Ready => return Ok(meta::ready(state)),
        Route::Info => return meta::info(state),
        Route::Models => return Ok(meta::models(state)),
        Route::Metrics => return Ok(meta::metrics(state)),
        Route::OpenApi => return Ok(meta::openapi(state, scope)),
        Route::Reload => return admin::reload(state, req).await,
        Route::LivePage => return Ok(live::page()),
        Route::LiveJson => return Ok(live::snapshot(state)),
        _ => {}
    }
    let config = state.config();
    if !authorized(req.headers(), &config.auth.api_keys) {
        return Err(ApiError::unauthorized());
    }
    let requested = requested_deadline(req.headers(), &config.limits)?;
    let deadline = started + requested.unwrap_or(config.limits.default_deadline);
    let body = body::read_json(req, config.limits.max_body_bytes).await?;
    let mut ctx = Ctx {
        state,
        config,
        deadline,
        started,
        requested,
        timings: None,
    };
    let response = match route {
        Route::Embeddings => embeddings::openai(&mut ctx, body).await,
        Route::Embed => embeddings::tei(&mut ctx, body).await,
        Route::Chat => chat::completions(&mut ctx, body).await,
        Route::Completions => completions::create(&mut ctx, body).await,
        _ => unreachable!("meta routes returned above"),
    };
    *timings = ctx.timings;
    response
}

/// The request's deadline: the header's, capped, or the configured default.
pub fn deadline(headers: &HeaderMap, limits: &LimitsConfig) -> Result<Duration, ApiError> {
    Ok(requested_deadline(headers, limits)?.unwrap_or(limits.default_deadline))
}

/// The header's deadline, capped, if the request sent one.
fn requested_deadline(
    headers: &HeaderMap,
    limits: &LimitsConfig,
) -> Result<Option<Duration>, ApiError> {
    let Some(value) = headers.get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    let ms = value
        .to_str()
        .ok()
        .and_then(positive_integer)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{DEADLINE_HEADER} must be a positive number of milliseconds"
            ))
        })?;
    Ok(Some(Duration::from_millis(ms).min(limits.max_deadline)))
}

/// A positive decimal integer, saturating: any number of digits is a valid deadline,
/// since it is capped anyway.
fn positive_integer(text: &str) -> Option<u64> {
    let digits = text.trim();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only digits: the one way to fail is overflow.
    Some(digits.parse::<u64>().unwrap_or(u64::MAX)).filter(|&ms| ms > 0)
}

/// True when no keys are configured or the bearer token matches one, compared in
/// constant time so response timing does not reveal how much of a key was right.
pub fn authorized(headers: &HeaderMap, keys: &[String]) -> bool {
    if keys.is_empty() {
        return true;
    }
    let Some(token) = headers
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
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    // The response types hold strings, numbers and lists only: serializing cannot fail.
    let bytes = serde_json::to_vec(value).expect("response types always serialize");
    let mut response = Response::new(full(bytes));
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

#[cfg(test)]
mod tests;
