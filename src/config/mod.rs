//! Configuration: TOML ([`raw`]) is parsed once, validated once into [`Config`], and only the
//! validated sub-structs build components. Every default lives here and is documented in
//! `config/default.toml`.

mod raw;

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
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
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
        }
    }

    fn parse(s: &str) -> Result<Self, ConfigError> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                invalid(
                    "executor.strategy",
                    format!("`{s}` is not one of inline, spawn_blocking, rayon, workers"),
                )
            })
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

/// The HTTP front end.
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Optional second listener for /health, /ready and /metrics only.
    pub admin_listen: Option<SocketAddr>,
    pub max_connections: usize,
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
    pub sessions: usize,
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub intra_op_spinning: bool,
    /// Nice value for the strategy's own inference threads (0 = unchanged).
    pub inference_nice: i32,
    /// tokio worker threads; None means tokio's default (one per available CPU).
    pub tokio_worker_threads: Option<usize>,
}

/// How queued items are grouped into batches.
#[derive(Debug, Clone, Serialize)]
pub struct BatchingConfig {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_wait: Duration,
    pub length_aware: bool,
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
    pub threshold: f32,
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_err = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
        for o in overrides {
            let (key, value) = o
                .split_once('=')
                .ok_or_else(|| parse_err(format!("override `{o}` is not KEY=VALUE")))?;
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .map(|mut t| t.remove("v").expect("just parsed"))
                .unwrap_or_else(|_| toml::Value::String(value.to_string()));
            set_key(&mut doc, key.trim(), value).map_err(parse_err)?;
        }
        let raw: RawConfig = doc
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        Config::from_raw(raw)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        Config::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let server = server(raw.server)?;
        let model = model(raw.model)?;
        let executor = executor(raw.executor)?;
        let batching = batching(raw.batching, model.max_seq_length)?;
        let limits = limits(raw.limits, &batching)?;
        let chat = chat(raw.chat)?;
        let auth = auth(raw.auth)?;
        Ok(Config {
            server,
            model,
            executor,
            batching,
            limits,
            chat,
            auth,
        })
    }
}

/// Sets `a.b.c` in a TOML table, creating tables on the way.
fn set_key(doc: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("empty key in override `{key}`"))?;
    let mut table = doc;
    for p in parts {
        table = table
            .entry(p)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` in override `{key}` is not a table"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

fn addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|e| {
        invalid(
            key,
            format!("`{s}` is not an address like 127.0.0.1:8080 ({e})"),
        )
    })
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

fn millis(key: &'static str, v: u64, lo: u64, hi: u64) -> Result<Duration, ConfigError> {
    in_range(key, v, lo, hi).map(Duration::from_millis)
}

fn server(r: raw::RawServer) -> Result<ServerConfig, ConfigError> {
    let listen = addr(
        "server.listen",
        r.listen.as_deref().unwrap_or("127.0.0.1:8080"),
    )?;
    let admin_listen = match r.admin_listen.as_deref() {
        None | Some("") => None,
        Some(s) => Some(addr("server.admin_listen", s)?),
    };
    Ok(ServerConfig {
        listen,
        admin_listen,
        max_connections: in_range(
            "server.max_connections",
            r.max_connections.unwrap_or(1024),
            1,
            1_000_000,
        )?,
        header_read_timeout: millis(
            "server.header_read_timeout_ms",
            r.header_read_timeout_ms.unwrap_or(5_000),
            1,
            600_000,
        )?,
        idle_timeout: millis(
            "server.idle_timeout_ms",
            r.idle_timeout_ms.unwrap_or(60_000),
            1,
            3_600_000,
        )?,
        drain_timeout: millis(
            "server.drain_timeout_ms",
            r.drain_timeout_ms.unwrap_or(15_000),
            0,
            600_000,
        )?,
        shutdown_grace: millis(
            "server.shutdown_grace_ms",
            r.shutdown_grace_ms.unwrap_or(0),
            0,
            60_000,
        )?,
        http2_max_streams: in_range(
            "server.http2_max_streams",
            r.http2_max_streams.unwrap_or(64),
            1,
            10_000,
        )?,
        event_loop_probe_interval: millis(
            "server.event_loop_probe_interval_ms",
            r.event_loop_probe_interval_ms.unwrap_or(5),
            1,
            1_000,
        )?,
    })
}

fn model(r: raw::RawModel) -> Result<ModelConfig, ConfigError> {
    let variant = match r.variant.as_deref().unwrap_or("fp32") {
        "fp32" => Variant::Fp32,
        "int8" => Variant::Int8,
        other => {
            return Err(invalid(
                "model.variant",
                format!("`{other}` is not one of fp32, int8"),
            ))
        }
    };
    let name = r.name.unwrap_or_else(|| "all-MiniLM-L6-v2".into());
    if name.trim().is_empty() {
        return Err(invalid("model.name", "must not be empty"));
    }
    Ok(ModelConfig {
        name,
        dir: r
            .dir
            .unwrap_or_else(|| PathBuf::from("models/all-MiniLM-L6-v2")),
        variant,
        // 512 is the model's position-embedding table; sentence-transformers uses 256.
        max_seq_length: in_range(
            "model.max_seq_length",
            r.max_seq_length.unwrap_or(256),
            8,
            512,
        )?,
        ort_library: r.ort_library,
    })
}

fn executor(r: raw::RawExecutor) -> Result<ExecutorConfig, ConfigError> {
    let strategy = Strategy::parse(r.strategy.as_deref().unwrap_or("workers"))?;
    let tokio_worker_threads = match r.tokio_worker_threads {
        None | Some(0) => None,
        Some(n) => Some(in_range("executor.tokio_worker_threads", n, 1, 1024)?),
    };
    Ok(ExecutorConfig {
        strategy,
        sessions: in_range("executor.sessions", r.sessions.unwrap_or(1), 1, 256)?,
        intra_op_threads: in_range(
            "executor.intra_op_threads",
            r.intra_op_threads.unwrap_or(2),
            1,
            256,
        )?,
        inter_op_threads: in_range(
            "executor.inter_op_threads",
            r.inter_op_threads.unwrap_or(1),
            1,
            256,
        )?,
        intra_op_spinning: r.intra_op_spinning.unwrap_or(false),
        inference_nice: in_range(
            "executor.inference_nice",
            r.inference_nice.unwrap_or(10),
            0,
            19,
        )?,
        tokio_worker_threads,
    })
}

fn batching(r: raw::RawBatching, max_seq_length: usize) -> Result<BatchingConfig, ConfigError> {
    let max_batch_size = in_range(
        "batching.max_batch_size",
        r.max_batch_size.unwrap_or(32),
        1,
        4096,
    )?;
    let max_batch_tokens = r.max_batch_tokens.unwrap_or(512);
    if max_batch_tokens < max_seq_length {
        return Err(invalid(
            "batching.max_batch_tokens",
            format!(
                "{max_batch_tokens} is below model.max_seq_length ({max_seq_length}): a long input could never be batched"
            ),
        ));
    }
    let max_wait_ms = r.max_wait_ms.unwrap_or(0.0);
    if !(0.0..=10_000.0).contains(&max_wait_ms) {
        return Err(invalid(
            "batching.max_wait_ms",
            format!("{max_wait_ms} is outside 0..=10000"),
        ));
    }
    Ok(BatchingConfig {
        max_batch_size,
        max_batch_tokens,
        max_wait: Duration::from_secs_f64(max_wait_ms / 1000.0),
        length_aware: r.length_aware.unwrap_or(true),
        queue_capacity: in_range(
            "batching.queue_capacity",
            r.queue_capacity.unwrap_or(1024),
            1,
            1_000_000,
        )?,
    })
}

fn limits(r: raw::RawLimits, batching: &BatchingConfig) -> Result<LimitsConfig, ConfigError> {
    let max_inputs = in_range("limits.max_inputs", r.max_inputs.unwrap_or(256), 1, 100_000)?;
    if max_inputs > batching.queue_capacity {
        return Err(invalid(
            "limits.max_inputs",
            format!(
                "{max_inputs} exceeds batching.queue_capacity ({}): such a request could never be admitted",
                batching.queue_capacity
            ),
        ));
    }
    let default_deadline = millis(
        "limits.default_deadline_ms",
        r.default_deadline_ms.unwrap_or(10_000),
        1,
        3_600_000,
    )?;
    let max_deadline = millis(
        "limits.max_deadline_ms",
        r.max_deadline_ms.unwrap_or(60_000),
        1,
        3_600_000,
    )?;
    if default_deadline > max_deadline {
        return Err(invalid(
            "limits.default_deadline_ms",
            "must not exceed limits.max_deadline_ms",
        ));
    }
    Ok(LimitsConfig {
        max_body_bytes: in_range(
            "limits.max_body_bytes",
            r.max_body_bytes.unwrap_or(1 << 20),
            64,
            1 << 30,
        )?,
        max_inputs,
        max_input_chars: in_range(
            "limits.max_input_chars",
            r.max_input_chars.unwrap_or(100_000),
            1,
            100_000_000,
        )?,
        default_deadline,
        max_deadline,
    })
}

fn chat(r: raw::RawChat) -> Result<ChatConfig, ConfigError> {
    let threshold = r.threshold.unwrap_or(0.47);
    if !(-1.0..=1.0).contains(&threshold) {
        return Err(invalid(
            "chat.threshold",
            format!("{threshold} is outside -1..=1 (a cosine similarity)"),
        ));
    }
    Ok(ChatConfig {
        enabled: r.enabled.unwrap_or(true),
        knowledge_base: r
            .knowledge_base
            .unwrap_or_else(|| PathBuf::from("config/knowledge_base.toml")),
        threshold,
        fallback: r.fallback.unwrap_or_else(|| {
            "I'm sorry, I don't have an answer to that. Could you rephrase, or contact our support team at support@example.com?".into()
        }),
    })
}

fn auth(r: raw::RawAuth) -> Result<AuthConfig, ConfigError> {
    let mut keys = r.api_keys.unwrap_or_default();
    if let Some(path) = r.api_keys_file {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            invalid(
                "auth.api_keys_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    if keys.iter().any(|k| k.len() < 16) {
        return Err(invalid(
            "auth.api_keys",
            "every key must be at least 16 characters",
        ));
    }
    Ok(AuthConfig { api_keys: keys })
}

#[cfg(test)]
mod tests;
