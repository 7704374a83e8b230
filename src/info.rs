//! The body of `GET /info`: what is being served, and how. Typed, so that the OpenAPI
//! document describes exactly what is sent.

use crate::chat::ChatBot;
use crate::config::{Config, Parallelism, Strategy};
use crate::connections::ConnectionLimits;
use crate::engine::resolve_ort_library;
use crate::executor::Footprint;
use crate::threads::ThreadBudget;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// What is being served, and how.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    /// The live configuration's generation: 1 at start, +1 per applied reload.
    pub generation: u64,
    pub model: ModelInfo,
    /// The executor strategy (`inline`, `spawn_blocking`, `rayon`, `workers`, ...).
    pub strategy: String,
    /// The `[executor]` section as configured, without the sizing keys of the
    /// parallelism mode not in use.
    #[schema(value_type = Object)]
    pub executor: Value,
    pub parallelism: ParallelismInfo,
    pub batching: BatchingInfo,
    pub limits: LimitsInfo,
    /// The thread budget: inference threads, tokio workers, CPUs the process may use.
    #[schema(value_type = Object)]
    pub threads: Value,
    pub connections: ConnectionsInfo,
    pub chat: ChatInfo,
    pub auth: AuthInfo,
    pub versions: Versions,
    /// The generative model, when `generation.enabled` (added by [`add_generation`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generative: Option<GenerativeInfo>,
}

/// The generative model and how its token streams are scheduled.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerativeInfo {
    pub model: String,
    /// `sequential`, `static` or `continuous`.
    pub scheduler: String,
    pub slots: usize,
    pub max_context: usize,
    pub prefill_chunk_tokens: usize,
    pub max_step_tokens: usize,
    pub static_batch: usize,
    pub max_tokens_cap: usize,
    pub default_max_tokens: usize,
    pub queue_capacity: usize,
    /// Intra-op threads of a step: the cores it holds from the executor's budget.
    pub threads: usize,
    /// How the weights were mapped from the GGUF file.
    pub weights: String,
    /// Bytes of the key/value cache if every slot filled its context.
    pub kv_cache_bytes: usize,
    /// The whole process's resident memory when this document was built.
    pub process_rss_bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    /// `fp32` or `int8`.
    pub variant: String,
    pub file: String,
    pub max_seq_length: usize,
    pub dimensions: usize,
    pub pooling: String,
}

/// On how many cores the forward passes run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParallelismInfo {
    /// `elastic` or `fixed`.
    pub mode: String,
    pub core_budget: usize,
    /// The session widths loaded: `[{"width", "sessions"}]`, narrowest first.
    #[schema(value_type = Vec<Object>)]
    pub widths: Value,
    pub model_copies: usize,
    pub model_file_bytes: Option<u64>,
    pub sessions_rss_bytes: u64,
    /// `processes` only: `{"parent_rss_bytes", "children_rss_bytes": [...]}` once the
    /// children had loaded their sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub processes: Option<crate::executor::ProcessFootprint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchingInfo {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_wait_ms: f64,
    pub length_aware: bool,
    pub solo_tokens: usize,
    pub window: usize,
    pub queue_capacity: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionsInfo {
    /// Open connections at most (both listeners).
    pub max: usize,
    pub derived_from_open_file_limit: bool,
    pub open_file_limit: Option<u64>,
    /// Open connections per client address at most; null when off.
    pub max_per_client: Option<usize>,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsInfo {
    pub max_body_bytes: usize,
    pub max_inputs: usize,
    pub max_input_chars: usize,
    pub default_deadline_ms: u64,
    pub max_deadline_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatInfo {
    pub enabled: bool,
    /// Knowledge-base entries; null when chat is disabled.
    pub entries: Option<usize>,
    pub threshold: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthInfo {
    /// Whether the inference routes require a bearer token.
    pub api_keys: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Versions {
    pub concur: String,
    pub ort_crate: String,
    /// The ONNX Runtime library loaded, when it was found.
    pub onnxruntime_library: Option<String>,
}

/// Builds the `/info` document, at start and at each reload.
pub fn build(
    config: &Config,
    budget: &ThreadBudget,
    footprint: &Footprint,
    chat: Option<&ChatBot>,
    connections: &ConnectionLimits,
    generation: u64,
) -> Value {
    let b = &config.batching;
    let server = &config.server;
    let library = resolve_ort_library(config.model.ort_library.as_deref())
        .ok()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let info = Info {
        generation,
        model: ModelInfo {
            name: config.model.name.clone(),
            variant: text(&config.model.variant),
            file: config.model.model_path().display().to_string(),
            max_seq_length: config.model.max_seq_length,
            dimensions: 384,
            pooling: "mean".into(),
        },
        strategy: text(&config.executor.strategy),
        executor: executor_settings(config),
        parallelism: ParallelismInfo {
            mode: text(&config.executor.parallelism),
            core_budget: budget.ladder.cores,
            widths: serde_json::to_value(&budget.ladder.rungs).unwrap_or_default(),
            model_copies: footprint.model_copies,
            model_file_bytes: std::fs::metadata(config.model.model_path())
                .map(|m| m.len())
                .ok(),
            sessions_rss_bytes: footprint.sessions_rss_bytes,
            processes: footprint.processes.clone(),
        },
        batching: BatchingInfo {
            max_batch_size: b.max_batch_size,
            max_batch_tokens: b.max_batch_tokens,
            max_wait_ms: b.max_wait.as_secs_f64() * 1e3,
            length_aware: b.length_aware,
            solo_tokens: b.solo_tokens,
            window: b.window,
            queue_capacity: b.queue_capacity,
        },
        limits: LimitsInfo {
            max_body_bytes: config.limits.max_body_bytes,
            max_inputs: config.limits.max_inputs,
            max_input_chars: config.limits.max_input_chars,
            default_deadline_ms: config.limits.default_deadline.as_millis() as u64,
            max_deadline_ms: config.limits.max_deadline.as_millis() as u64,
        },
        threads: serde_json::to_value(budget).unwrap_or_default(),
        connections: ConnectionsInfo {
            max: connections.max,
            derived_from_open_file_limit: connections.derived,
            open_file_limit: connections.open_file_limit,
            max_per_client: connections.max_per_client,
            header_read_timeout_ms: server.header_read_timeout.as_millis() as u64,
            idle_timeout_ms: server.idle_timeout.as_millis() as u64,
        },
        chat: ChatInfo {
            enabled: chat.is_some(),
            entries: chat.map(ChatBot::len),
            threshold: f64::from(config.chat.threshold * 1000.0).round() / 1000.0,
        },
        auth: AuthInfo {
            api_keys: !config.auth.api_keys.is_empty(),
        },
        versions: Versions {
            concur: env!("CARGO_PKG_VERSION").into(),
            ort_crate: "2.0.0-rc.15".into(),
            onnxruntime_library: library.map(|p| p.display().to_string()),
        },
        generative: None,
    };
    serde_json::to_value(info).unwrap_or_default()
}

/// A config enum as the string it serializes to.
fn text(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        other => other.map(|v| v.to_string()).unwrap_or_default(),
    }
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
        // Only `processes` uses its settings; shown with the timeout in milliseconds.
        let p = &config.executor.processes;
        match config.executor.strategy {
            Strategy::Processes => map.insert(
                "processes".into(),
                json!({
                    "worker_exe": p.worker_exe,
                    "batch_timeout_ms": p.batch_timeout.as_millis() as u64,
                }),
            ),
            _ => map.remove("processes"),
        };
    }
    settings
}

/// Adds the generative model (when served) to an `/info` body, as `generative`: the
/// model, its scheduler, slots and context, and what the process holds in memory now.
pub fn add_generation(
    info: &mut Value,
    config: &Config,
    generator: Option<&crate::generate::Generator>,
) {
    let Some(g) = generator else { return };
    let c = &config.generation;
    let i = g.info();
    let generative = GenerativeInfo {
        model: i.model.clone(),
        scheduler: c.scheduler.as_str().into(),
        slots: i.slots,
        max_context: i.max_context,
        prefill_chunk_tokens: c.prefill_chunk_tokens,
        max_step_tokens: c.max_step_tokens,
        static_batch: c.static_batch,
        max_tokens_cap: c.max_tokens_cap,
        default_max_tokens: c.default_max_tokens,
        queue_capacity: c.queue_capacity,
        threads: i.threads,
        weights: i.weights.clone(),
        kv_cache_bytes: i.kv_cache_bytes,
        process_rss_bytes: crate::executor::resident_bytes(),
    };
    info["generative"] = serde_json::to_value(generative).unwrap_or_default();
}
