//! The TOML file as written by a person: every key optional, unknown keys rejected.
//!
//! Nothing here is used to build components; [`super::Config::from_raw`] validates it
//! once into the resolved types.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub model: RawModel,
    #[serde(default)]
    pub executor: RawExecutor,
    #[serde(default)]
    pub batching: RawBatching,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub chat: RawChat,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub generation: super::generation::RawGeneration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub max_connections: Option<RawCount>,
    pub max_connections_per_client: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub http2_max_streams: Option<u32>,
    pub event_loop_probe_interval_ms: Option<u64>,
}

/// A count that may also be a word, e.g. `max_connections = "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCount {
    Number(usize),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: Option<String>,
    pub dir: Option<PathBuf>,
    pub variant: Option<String>,
    pub max_seq_length: Option<usize>,
    pub ort_library: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    pub strategy: Option<String>,
    pub parallelism: Option<String>,
    pub cores: Option<usize>,
    pub sessions: Option<usize>,
    pub intra_op_threads: Option<usize>,
    pub inter_op_threads: Option<usize>,
    pub intra_op_spinning: Option<bool>,
    pub inference_nice: Option<i32>,
    pub tokio_worker_threads: Option<usize>,
    pub worker_exe: Option<PathBuf>,
    pub batch_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatching {
    pub max_batch_size: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub max_wait_ms: Option<f64>,
    pub length_aware: Option<bool>,
    pub solo_tokens: Option<usize>,
    pub window: Option<usize>,
    pub queue_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<usize>,
    pub max_inputs: Option<usize>,
    pub max_input_chars: Option<usize>,
    pub default_deadline_ms: Option<u64>,
    pub max_deadline_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChat {
    pub enabled: Option<bool>,
    pub knowledge_base: Option<PathBuf>,
    pub threshold: Option<f32>,
    pub keyword_weight: Option<f32>,
    pub out_of_scope_margin: Option<f32>,
    pub fallback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub api_keys: Option<Vec<String>>,
    pub api_keys_file: Option<PathBuf>,
}
