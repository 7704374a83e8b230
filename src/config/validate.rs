//! Raw sections -> validated sections, one function per section. Every error names its key;
//! every default is here (and documented in `config/default.toml`).

use super::raw;
use super::*;

/// Sets `a.b.c` in a TOML table, creating tables on the way.
pub(super) fn set_key(doc: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
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

pub(super) fn server(r: raw::RawServer) -> Result<ServerConfig, ConfigError> {
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
        max_connections: connection_cap(r.max_connections)?,
        max_connections_per_client: match r.max_connections_per_client {
            None | Some(0) => None,
            Some(n) => Some(in_range(
                "server.max_connections_per_client",
                n,
                1,
                1_000_000,
            )?),
        },
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

/// `0`, `"auto"` or absent: derived from the open-file limit at start.
fn connection_cap(r: Option<raw::RawCount>) -> Result<ConnectionCap, ConfigError> {
    const KEY: &str = "server.max_connections";
    match r {
        None | Some(raw::RawCount::Number(0)) => Ok(ConnectionCap::Auto),
        Some(raw::RawCount::Word(w)) if w == "auto" => Ok(ConnectionCap::Auto),
        Some(raw::RawCount::Word(w)) => Err(invalid(
            KEY,
            format!("`{w}` is neither a number nor \"auto\""),
        )),
        Some(raw::RawCount::Number(n)) => in_range(KEY, n, 1, 1_000_000).map(ConnectionCap::Fixed),
    }
}

pub(super) fn model(r: raw::RawModel) -> Result<ModelConfig, ConfigError> {
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

pub(super) fn executor(r: raw::RawExecutor) -> Result<ExecutorConfig, ConfigError> {
    let strategy = Strategy::parse(r.strategy.as_deref().unwrap_or("workers"))?;
    let parallelism = match r.parallelism.as_deref().unwrap_or("elastic") {
        "elastic" => Parallelism::Elastic,
        "fixed" => Parallelism::Fixed,
        other => {
            return Err(invalid(
                "executor.parallelism",
                format!("`{other}` is not one of elastic, fixed"),
            ))
        }
    };
    // Each mode has its own sizing keys; a key of the other mode would be silently ignored,
    // so it is refused instead.
    let misplaced = match parallelism {
        Parallelism::Elastic => [
            ("executor.sessions", r.sessions.is_some()),
            ("executor.intra_op_threads", r.intra_op_threads.is_some()),
        ],
        // cores = 0 is "auto", the documented default, so a fixed override of a file that
        // spells it out still works.
        Parallelism::Fixed => [("executor.cores", r.cores.unwrap_or(0) > 0), ("", false)],
    };
    if let Some((key, _)) = misplaced.into_iter().find(|(_, set)| *set) {
        return Err(invalid(
            key,
            format!(
                "does not apply when executor.parallelism = \"{}\" (elastic sizes sessions from \
                 executor.cores; fixed uses executor.sessions x executor.intra_op_threads)",
                parallelism.as_str()
            ),
        ));
    }
    let tokio_worker_threads = match r.tokio_worker_threads {
        None | Some(0) => None,
        Some(n) => Some(in_range("executor.tokio_worker_threads", n, 1, 1024)?),
    };
    let cores = match r.cores {
        None | Some(0) => None,
        Some(n) => Some(in_range("executor.cores", n, 1, 256)?),
    };
    Ok(ExecutorConfig {
        strategy,
        parallelism,
        cores,
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
        intra_op_spinning: r.intra_op_spinning.unwrap_or(true),
        inference_nice: in_range(
            "executor.inference_nice",
            r.inference_nice.unwrap_or(10),
            0,
            19,
        )?,
        tokio_worker_threads,
        processes: ProcessesConfig {
            worker_exe: r.worker_exe.filter(|p| !p.as_os_str().is_empty()),
            batch_timeout: millis(
                "executor.batch_timeout_ms",
                r.batch_timeout_ms.unwrap_or(10_000),
                100,
                600_000,
            )?,
            model: None,
        },
    })
}

pub(super) fn batching(
    r: raw::RawBatching,
    max_seq_length: usize,
) -> Result<BatchingConfig, ConfigError> {
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
        solo_tokens: in_range(
            "batching.solo_tokens",
            r.solo_tokens.unwrap_or(128),
            0,
            max_seq_length,
        )?,
        window: in_range("batching.window", r.window.unwrap_or(0), 0, 1_000_000)?,
        queue_capacity: in_range(
            "batching.queue_capacity",
            r.queue_capacity.unwrap_or(1024),
            1,
            1_000_000,
        )?,
    })
}

pub(super) fn limits(
    r: raw::RawLimits,
    batching: &BatchingConfig,
) -> Result<LimitsConfig, ConfigError> {
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

pub(super) fn chat(r: raw::RawChat) -> Result<ChatConfig, ConfigError> {
    let threshold = chat_number("chat.threshold", r.threshold, 0.75, -1.0..=10.0)?;
    let keyword_weight = chat_number("chat.keyword_weight", r.keyword_weight, 0.02, 0.0..=1.0)?;
    let out_of_scope_margin = chat_number(
        "chat.out_of_scope_margin",
        r.out_of_scope_margin,
        0.0,
        -1.0..=1.0,
    )?;
    let fallback = r.fallback.unwrap_or_else(|| DEFAULT_FALLBACK.into());
    if fallback.trim().is_empty() {
        return Err(invalid("chat.fallback", "must not be empty"));
    }
    Ok(ChatConfig {
        enabled: r.enabled.unwrap_or(true),
        knowledge_base: r
            .knowledge_base
            .unwrap_or_else(|| PathBuf::from("config/knowledge_base.toml")),
        threshold,
        keyword_weight,
        out_of_scope_margin,
        fallback,
    })
}

/// The reply to questions the bot cannot answer; the address is the knowledge base's.
const DEFAULT_FALLBACK: &str = "I'm sorry, I can't help with that here: I answer questions about Acme orders, delivery, returns, payments, your Acme account, Acme Plus and the Acme API. If your question is about one of those, please rephrase it; otherwise our support team is at support@acme.example or +49 30 1234 5678 (Monday to Friday 8:00-20:00, Saturday 9:00-16:00 CET).";

fn chat_number(
    key: &'static str,
    value: Option<f32>,
    default: f32,
    range: std::ops::RangeInclusive<f32>,
) -> Result<f32, ConfigError> {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        return Err(invalid(
            key,
            format!("{v} is outside {}..={}", range.start(), range.end()),
        ));
    }
    Ok(v)
}

pub(super) fn auth(r: raw::RawAuth) -> Result<AuthConfig, ConfigError> {
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
