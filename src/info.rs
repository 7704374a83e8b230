//! The body of `GET /info`: what is being served, and how.

use crate::chat::ChatBot;
use crate::config::{Config, Parallelism};
use crate::connections::ConnectionLimits;
use crate::engine::resolve_ort_library;
use crate::executor::Footprint;
use crate::threads::ThreadBudget;
use serde_json::{json, Value};

/// Builds the `/info` document once, at start.
pub fn build(
    config: &Config,
    budget: &ThreadBudget,
    footprint: &Footprint,
    chat: Option<&ChatBot>,
    connections: &ConnectionLimits,
) -> Value {
    let b = &config.batching;
    let server = &config.server;
    let library = resolve_ort_library(config.model.ort_library.as_deref())
        .ok()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    json!({
        "model": {
            "name": config.model.name,
            "variant": config.model.variant,
            "file": config.model.model_path(),
            "max_seq_length": config.model.max_seq_length,
            "dimensions": 384,
            "pooling": "mean",
        },
        "strategy": config.executor.strategy,
        "executor": executor_settings(config),
        "parallelism": {
            "mode": config.executor.parallelism,
            "core_budget": budget.ladder.cores,
            "widths": budget.ladder.rungs,
            "model_copies": footprint.model_copies,
            "model_file_bytes": std::fs::metadata(config.model.model_path()).map(|m| m.len()).ok(),
            "sessions_rss_bytes": footprint.sessions_rss_bytes,
        },
        "batching": {
            "max_batch_size": b.max_batch_size,
            "max_batch_tokens": b.max_batch_tokens,
            "max_wait_ms": b.max_wait.as_secs_f64() * 1e3,
            "length_aware": b.length_aware,
            "solo_tokens": b.solo_tokens,
            "window": b.window,
            "queue_capacity": b.queue_capacity,
        },
        "limits": {
            "max_body_bytes": config.limits.max_body_bytes,
            "max_inputs": config.limits.max_inputs,
            "max_input_chars": config.limits.max_input_chars,
            "default_deadline_ms": config.limits.default_deadline.as_millis() as u64,
            "max_deadline_ms": config.limits.max_deadline.as_millis() as u64,
        },
        "threads": budget,
        "connections": {
            "max": connections.max,
            "derived_from_open_file_limit": connections.derived,
            "open_file_limit": connections.open_file_limit,
            "max_per_client": connections.max_per_client,
            "header_read_timeout_ms": server.header_read_timeout.as_millis() as u64,
            "idle_timeout_ms": server.idle_timeout.as_millis() as u64,
        },
        "chat": {
            "enabled": chat.is_some(),
            "entries": chat.map(ChatBot::len),
            "threshold": f64::from(config.chat.threshold * 1000.0).round() / 1000.0,
        },
        "auth": {"api_keys": !config.auth.api_keys.is_empty()},
        "versions": {
            "concur": env!("CARGO_PKG_VERSION"),
            "ort_crate": "2.0.0-rc.15",
            "onnxruntime_library": library,
        },
    })
}

/// The executor's settings as configured: the sizing keys of the mode not in use are left
/// out, so /info never shows a value that does nothing.
fn executor_settings(config: &Config) -> Value {
    let mut settings = json!(config.executor);
    if let Some(map) = settings.as_object_mut() {
        let unused: &[&str] = match config.executor.parallelism {
            Parallelism::Elastic => &["sessions", "intra_op_threads"],
            Parallelism::Fixed => &["cores"],
        };
        for key in unused {
            map.remove(*key);
        }
    }
    settings
}
