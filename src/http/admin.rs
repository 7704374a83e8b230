//! `POST /admin/reload`: switch the configuration while serving (see `crate::reload`).

use super::error::{ApiError, ErrorResponse};
use super::{body, json_response, Body};
use crate::reload::Applied;
use crate::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

/// Re-reads the configuration file (with the start-time `--set`s), applies the overrides of
/// earlier reloads (unless `reset`) and the body's TOML on top, validates the whole and
/// switches to it with nothing dropped. Serialised: a second reload waits for the first.
#[utoipa::path(post, path = "/admin/reload", tag = "operations", operation_id = "reload",
    params(("reset" = Option<bool>, Query,
        description = "Drop the overrides of earlier reloads: back to the file and `--set`s")),
    request_body(content = String, content_type = "application/toml",
        description = "Optional TOML overrides, e.g. `executor.strategy = \"rayon\"`"),
    responses(
        (status = 200, description = "Applied, or nothing differed (`changed` empty)", body = Applied),
        (status = 400, description = "Malformed TOML, an unknown key or an invalid value \
            (`invalid_config`), or a key that cannot change live (`not_live`); `param` \
            names the key and the old configuration stays", body = ErrorResponse),
        (status = 401, description = "API keys are configured and the bearer token is \
            missing or wrong (`invalid_api_key`)", body = ErrorResponse),
        (status = 403, description = "Sent by a web page of another origin: its `Origin` \
            header does not name this server's `Host` (`cross_origin`)", body = ErrorResponse),
        (status = 409, description = "Started without a configuration source \
            (`reload_unavailable`)", body = ErrorResponse),
        (status = 413, description = "The body is over `limits.max_body_bytes` (`too_large`)",
            body = ErrorResponse),
        (status = 500, description = "Valid, but the new executor could not start \
            (`reload_failed`); the old configuration stays", body = ErrorResponse),
        (status = 503, description = "Loading or shutting down (`loading`, `draining`)",
            body = ErrorResponse),
    ),
    security((), ("bearer" = [])))]
pub async fn reload(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let reset = wants_reset(req.uri().query());
    same_origin(req.headers())?;
    let config = state.config();
    if !super::authorized(req.headers(), &config.auth.api_keys) {
        return Err(ApiError::unauthorized());
    }
    let bytes = body::read_limited(req, config.limits.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the reload body must be UTF-8 TOML"))?;
    let reloader = state.reloader().ok_or_else(|| {
        ApiError::unavailable(
            super::error::ErrorCode::Loading,
            "the model is still loading",
        )
    })?;
    let applied = reloader.reload(state, text, reset).await?;
    Ok(json_response(StatusCode::OK, &applied))
}

/// Refuses a request a browser sent from a page of another site. Without API keys anyone
/// who can reach the port may reload (as with SIGHUP, anyone who may signal the process),
/// but a page the user happens to visit must not: browsers send `Origin` with every
/// cross-site POST, and a plain form or `text/plain` fetch needs no CORS preflight. The
/// live page is served by this server, so its `Origin` names the `Host` it called.
fn same_origin(headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(hyper::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if host.is_empty() || origin_host != host {
        return Err(ApiError::cross_origin(origin));
    }
    Ok(())
}

/// `?reset` or `?reset=true`: drop the overrides of earlier reloads first.
fn wants_reset(query: Option<&str>) -> bool {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .any(|kv| matches!(kv, "reset" | "reset=true" | "reset=1"))
}
