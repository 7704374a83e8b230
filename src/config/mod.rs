//! Configuration: TOML (`raw`) is parsed once, validated once into [`Config`], and only the
//! validated sub-structs build components. Every default lives here and is documented in
//! `config/default.toml`.

mod generation;
mod live;
mod raw;
mod source;
mod validate;

pub use generation::{GenerationConfig, SchedulerKind};
pub use live::{changes, Change, LIVE_KEYS};
pub use source::{merge_toml, parse_overrides, ConfigSource};

use raw::RawConfig;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, always naming the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Where the forward pass runs. See `src/executor/` for one file per strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// On the tokio worker thread itself: the anti-pattern, kept to measure its damage.
    Inline,
    /// tokio's blocking pool, capped at `sessions` concurrent batches.
    SpawnBlocking,
    /// A dedicated rayon pool with one thread per session.
    Rayon,
    /// N named OS threads, each owning one session, fed by a bounded channel.
    Workers,
    /// Child processes of the same binary, each loading its own sessions, fed batches over
    /// a Unix socket: a crash in native code takes down one child, not the server.
    Processes,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Inline,
        Strategy::SpawnBlocking,
        Strategy::Rayon,
        Strategy::Workers,
        Strategy::Processes,
    ];

    /// The strategies that run engines from the [`EngineFactory`](crate::engine::EngineFactory)
    /// in this process (`processes` loads the model in its children instead).
    pub const IN_PROCESS: [Strategy; 4] = [
        Strategy::Inline,
        Strategy::SpawnBlocking,
        Strategy::Rayon,
        Strategy::Workers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Inline => "inline",
            Strategy::SpawnBlocking => "spawn_blocking",
            Strategy::Rayon => "rayon",
            Strategy::Workers => "workers",
            Strategy::Processes => "processes",
        }
    }

    fn parse(s: &str) -> Result<Self, ConfigError> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                invalid(
                    "executor.strategy",
                    format!(
                        "`{s}` is not one of inline, spawn_blocking, rayon, workers, processes"
                    ),
                )
            })
    }
}

/// How many cores one forward pass gets. See `src/executor/width.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parallelism {
    /// Decided per batch from the moment: alone on an idle machine a batch gets every core
    /// of the budget; when batches queue, each gets one and they run side by side.
    Elastic,
    /// Every batch runs on `intra_op_threads` cores, at most `sessions` batches at once.
    Fixed,
}

impl Parallelism {
    pub fn as_str(self) -> &'static str {
        match self {
            Parallelism::Elastic => "elastic",
            Parallelism::Fixed => "fixed",
        }
    }
}

/// Which exported model file to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Fp32,
    Int8,
}

impl Variant {
    pub fn file_name(self) -> &'static str {
        match self {
            Variant::Fp32 => "model.onnx",
            Variant::Int8 => "model_int8.onnx",
        }
    }
}

/// How many connections may be open at once (both listeners together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionCap {
    /// Derived at start from the open-file limit (`crate::connections::limit`).
    Auto,
    Fixed(usize),
}

/// The HTTP front end.
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Optional second listener for /health, /ready and /metrics only.
    pub admin_listen: Option<SocketAddr>,
    pub max_connections: ConnectionCap,
    /// Open connections per client address at most; None = no per-address cap.
    pub max_connections_per_client: Option<usize>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub shutdown_grace: Duration,
    pub http2_max_streams: u32,
    pub event_loop_probe_interval: Duration,
}

/// The model files and the ONNX Runtime library.
#[derive(Debug, Clone, Serialize)]
pub struct ModelConfig {
    pub name: String,
    pub dir: PathBuf,
    pub variant: Variant,
    pub max_seq_length: usize,
    pub ort_library: Option<PathBuf>,
}

impl ModelConfig {
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(self.variant.file_name())
    }
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
}

/// Where and with how many threads the forward pass runs.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorConfig {
    pub strategy: Strategy,
    pub parallelism: Parallelism,
    /// Elastic: the core budget; None = every CPU the process may use.
    pub cores: Option<usize>,
    /// Fixed: engine sessions, each running one batch at a time on `intra_op_threads`.
    pub sessions: usize,
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub intra_op_spinning: bool,
    /// Nice value for the strategy's own inference threads (0 = unchanged).
    pub inference_nice: i32,
    /// tokio worker threads; None means tokio's default (one per available CPU).
    pub tokio_worker_threads: Option<usize>,
    /// Settings of the `processes` strategy (ignored by the others).
    pub processes: ProcessesConfig,
}

/// The `processes` strategy: how its children start and how long a batch may take.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessesConfig {
    /// The executable started as `EXE __worker ...`; None = this process's own executable.
    pub worker_exe: Option<PathBuf>,
    /// A child that has not answered a batch within this time is killed (and the batch
    /// retried once on another child).
    pub batch_timeout: Duration,
    /// The model the children load: a copy of `[model]`, set when the config is validated,
    /// so the executor needs no other section.
    #[serde(skip)]
    pub model: Option<ModelConfig>,
}

/// How queued items are grouped into batches.
#[derive(Debug, Clone, Serialize)]
pub struct BatchingConfig {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_wait: Duration,
    pub length_aware: bool,
    /// Inputs at least this many tokens long run in a batch of their own (0 = off).
    pub solo_tokens: usize,
    /// Length-aware grouping looks at the oldest this-many queued inputs (0 = all).
    pub window: usize,
    pub queue_capacity: usize,
}

/// Per-request limits.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_inputs: usize,
    pub max_input_chars: usize,
    pub default_deadline: Duration,
    pub max_deadline: Duration,
}

/// The retrieval chat bot.
#[derive(Debug, Clone, Serialize)]
pub struct ChatConfig {
    pub enabled: bool,
    pub knowledge_base: PathBuf,
    /// Score (cosine + keyword_weight x BM25) the best entry must reach to be answered.
    pub threshold: f32,
    /// Weight of an entry's BM25 keyword score next to its cosine similarity.
    pub keyword_weight: f32,
    /// An out-of-scope group scoring at least the best entry's score minus this wins.
    pub out_of_scope_margin: f32,
    pub fallback: String,
}

/// Optional bearer-token access control on inference routes.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthConfig {{ {} keys }}", self.api_keys.len())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub model: ModelConfig,
    pub executor: ExecutorConfig,
    pub batching: BatchingConfig,
    pub limits: LimitsConfig,
    pub chat: ChatConfig,
    pub auth: AuthConfig,
    pub generation: GenerationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Reads `path`, applies `KEY=VALUE` overrides (the value in TOML syntax; a bare word is
    /// taken as a string), then validates: overrides get the same checks as the file.
    pub fn load_with_overrides(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        ConfigSource::file(path, overrides.to_vec()).load()
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        Config::from_raw(raw)
    }

    pub(crate) fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let server = validate::server(raw.server)?;
        let model = validate::model(raw.model)?;
        let mut executor = validate::executor(raw.executor)?;
        executor.processes.model = Some(model.clone());
        let batching = validate::batching(raw.batching, model.max_seq_length)?;
        let limits = validate::limits(raw.limits, &batching)?;
        let chat = validate::chat(raw.chat)?;
        let auth = validate::auth(raw.auth)?;
        let generation = generation::validate(raw.generation)?;
        Ok(Config {
            server,
            model,
            executor,
            batching,
            limits,
            chat,
            auth,
            generation,
        })
    }
}

#[cfg(test)]
mod tests;
