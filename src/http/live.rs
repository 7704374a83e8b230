//! The live page (`GET /` and `GET /live`) and its feed (`GET /live.json`).
//!
//! The page is one HTML document with everything inlined: uPlot (vendored from npm under
//! `web/vendor/`, see `scripts/vendor-web.sh`) and the page's own script (`live-figures.js`,
//! the arithmetic; `live-charts.js`, the charts; `live-load.js`, the built-in load;
//! `live.js`, the rest) and styles from `web/`, all embedded at build time. One response,
//! nothing else to fetch: it works offline, and its Content-Security-Policy lets it talk to
//! this server only (`connect-src 'self'`), running no script but its own (named by hash).

use super::{json_response, Body, Route};
use crate::config::{SchedulerKind, Strategy};
use crate::metrics::Snapshot;
use crate::state::AppState;
use base64::Engine as _;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const TEMPLATE: &str = include_str!("../../web/live.html");
const PAGE_CSS: &str = include_str!("../../web/live.css");
const FIGURES_JS: &str = include_str!("../../web/live-figures.js");
const CHARTS_JS: &str = include_str!("../../web/live-charts.js");
const LOAD_JS: &str = include_str!("../../web/live-load.js");
const PAGE_JS: &str = include_str!("../../web/live.js");
const UPLOT_CSS: &str = include_str!("../../web/vendor/uPlot.min.css");
const UPLOT_JS: &str = include_str!("../../web/vendor/uPlot.iife.min.js");

/// The assembled page and the policy that goes with it, built on first use.
struct Page {
    html: bytes::Bytes,
    csp: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let script = format!("{UPLOT_JS}\n{FIGURES_JS}\n{CHARTS_JS}\n{LOAD_JS}\n{PAGE_JS}");
    let style = format!("{UPLOT_CSS}\n{PAGE_CSS}");
    // The strategy and scheduler buttons: every one this build knows.
    let strategies: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
    let schedulers: Vec<&str> = SchedulerKind::ALL.iter().map(|s| s.as_str()).collect();
    let html = TEMPLATE
        .replace("{{strategies}}", &strategies.join(" "))
        .replace("{{schedulers}}", &schedulers.join(" "))
        .replace("/*{{style}}*/", &style)
        .replace("/*{{script}}*/", &script);
    // Styles: uPlot sizes its elements through their style attributes, which a hash cannot
    // name, so inline styles are allowed; scripts are the one inline element named by hash.
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        sha256_base64(&script)
    );
    Page {
        html: html.into(),
        csp: HeaderValue::try_from(csp).expect("ASCII policy"),
    }
});

fn sha256_base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// The inference routes' `route` labels: what the feed counts as requests.
fn inference_labels() -> Vec<&'static str> {
    labels(|r| r.is_inference())
}

/// The routes whose answered requests make the feed's `latency`: the inference routes, but
/// not generation's while the generative model is served. A generated answer streams for
/// seconds and would bury the milliseconds of embeddings (the route cannot tell it from a
/// retrieval chat's); the feed's `generation` part times it by token instead.
fn timed_labels(generating: bool) -> Vec<&'static str> {
    let generation = |r: Route| matches!(r, Route::Chat | Route::Completions);
    labels(|r| r.is_inference() && !(generating && generation(r)))
}

fn labels(keep: impl Fn(Route) -> bool) -> Vec<&'static str> {
    super::ROUTES
        .iter()
        .filter(|(_, r)| keep(*r))
        .map(|(_, r)| r.label())
        .collect()
}

/// The live page: charts of throughput, latency, queue, batches, padding, busy workers and
/// event-loop lag, and of the generative model when it is served (output tokens/s, time to
/// first token, inter-token latency, sequences and slots); the live configuration, controls
/// to switch it (strategy, scheduler, batching), and a bounded built-in load.
#[utoipa::path(get, path = "/", tag = "operations", operation_id = "livePage",
    responses((status = 200, description = "The live page: one self-contained HTML document",
        content_type = "text/html", body = String)))]
pub fn page() -> Response<Body> {
    let mut response = Response::new(super::full(PAGE.html.clone()));
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert("content-security-policy", PAGE.csp.clone());
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The live page's feed: cumulative counters, gauges and histogram buckets; rates and
/// quantiles come from the difference between two snapshots.
#[utoipa::path(get, path = "/live.json", tag = "operations", operation_id = "liveSnapshot",
    responses((status = 200, description = "Cumulative metrics since start", body = Snapshot)))]
pub fn snapshot(state: &AppState) -> Response<Body> {
    let generator = state.services().and_then(|s| s.generator.clone());
    let timed = timed_labels(generator.is_some());
    let mut snapshot = state.metrics.snapshot(&inference_labels(), &timed);
    // The generation part only while the model is served: the page shows its row then.
    if let Some(generator) = generator {
        let scheduler = state.config().generation.scheduler.as_str();
        let slots = generator.info().slots;
        snapshot.generation = Some(state.metrics.generation_snapshot(scheduler, slots));
    }
    let mut response = json_response(StatusCode::OK, &snapshot);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_everything_and_its_policy_names_the_script() {
        let html = std::str::from_utf8(&PAGE.html).unwrap();
        assert!(!html.contains("{{"), "a placeholder was left");
        assert!(html.contains("uPlot"), "uPlot is inlined");
        // Nothing is loaded from elsewhere: no src or href attributes at all.
        for attr in [" src=", " href="] {
            assert!(!html.contains(attr), "{attr} in the page");
        }
        let script = html
            .split("<script>")
            .nth(1)
            .and_then(|s| s.split("</script>").next())
            .unwrap();
        let csp = PAGE.csp.to_str().unwrap();
        assert!(csp.contains(&format!("'sha256-{}'", sha256_base64(script))));
        assert!(csp.contains("connect-src 'self'"));
        assert_eq!(html.matches("<script>").count(), 1, "one script, one hash");
    }

    #[test]
    fn the_feed_counts_the_inference_routes() {
        let all = ["embeddings", "embed", "chat", "completions"];
        assert_eq!(inference_labels(), all);
        assert_eq!(timed_labels(false), all);
        assert_eq!(timed_labels(true), ["embeddings", "embed"]);
    }
}
