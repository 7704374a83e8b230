//! `[generation]`: the generative chat model and how its token streams are scheduled.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The file's `[generation]` section: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeneration {
    pub enabled: Option<bool>,
    pub name: Option<String>,
    pub dir: Option<PathBuf>,
    pub scheduler: Option<String>,
    pub slots: Option<usize>,
    pub max_context: Option<usize>,
    pub prefill_chunk_tokens: Option<usize>,
    pub max_step_tokens: Option<usize>,
    pub static_batch: Option<usize>,
    pub max_tokens_cap: Option<usize>,
    pub default_max_tokens: Option<usize>,
    pub queue_capacity: Option<usize>,
    pub threads: Option<usize>,
    pub default_deadline_ms: Option<u64>,
}

/// Which sequences run at each step. See `src/generate/policy.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// One conversation at a time, to its end (Python: a lock around `generate`).
    Sequential,
    /// Up to `static_batch` conversations start together; the batch runs until its last
    /// member ends (Python: a batch collected by an asyncio task).
    Static,
    /// Sequences join at the next step and leave when they stop; prompts are prefilled in
    /// chunks between decode steps (an iteration-level scheduler, as in llama.cpp or vLLM).
    Continuous,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 3] = [
        SchedulerKind::Sequential,
        SchedulerKind::Static,
        SchedulerKind::Continuous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Sequential => "sequential",
            SchedulerKind::Static => "static",
            SchedulerKind::Continuous => "continuous",
        }
    }

    fn parse(s: &str) -> Result<Self, ConfigError> {
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                invalid(
                    "generation.scheduler",
                    format!("`{s}` is not one of sequential, static, continuous"),
                )
            })
    }
}

/// The generative model and its scheduler, validated.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationConfig {
    pub enabled: bool,
    /// The model's name in the API.
    pub name: String,
    /// Holds `model.onnx`, `tokenizer.json` and `generation.json` (`make setup`).
    pub dir: PathBuf,
    pub scheduler: SchedulerKind,
    /// Sequences that can run at once: each owns a slot of the key/value cache.
    pub slots: usize,
    /// Tokens per slot (prompt plus completion).
    pub max_context: usize,
    /// Prompt tokens prefilled per step, between decode steps of running sequences.
    pub prefill_chunk_tokens: usize,
    /// Tokens one step may process at most (decode rows plus a prefill chunk).
    pub max_step_tokens: usize,
    /// `static`: how many conversations start together at most.
    pub static_batch: usize,
    /// The largest `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
    /// `max_tokens` when a request names none.
    pub default_max_tokens: usize,
    /// Requests waiting for a slot at most; more get 429.
    pub queue_capacity: usize,
    /// ONNX Runtime intra-op threads of a step; None = the executor's core budget.
    pub threads: Option<usize>,
    /// How long a request may wait for a slot when it names no deadline.
    pub default_deadline: Duration,
}

fn in_range(key: &'static str, v: usize, lo: usize, hi: usize) -> Result<usize, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v} is outside {lo}..={hi}")))
    }
}

/// Validates `[generation]` once.
pub(super) fn validate(r: RawGeneration) -> Result<GenerationConfig, ConfigError> {
    let name = r.name.unwrap_or_else(|| "SmolLM2-135M-Instruct".into());
    if name.trim().is_empty() {
        return Err(invalid("generation.name", "must not be empty"));
    }
    // 8192 is the model's trained context (its rotary tables in the exported graph).
    let max_context = in_range(
        "generation.max_context",
        r.max_context.unwrap_or(2048),
        64,
        8192,
    )?;
    let slots = in_range("generation.slots", r.slots.unwrap_or(16), 1, 256)?;
    let chunk = r.prefill_chunk_tokens.unwrap_or(128);
    let prefill_chunk_tokens = in_range("generation.prefill_chunk_tokens", chunk, 1, max_context)?;
    let max_step_tokens = in_range(
        "generation.max_step_tokens",
        r.max_step_tokens.unwrap_or(slots + prefill_chunk_tokens),
        1,
        65_536,
    )?;
    let max_tokens_cap = in_range(
        "generation.max_tokens_cap",
        r.max_tokens_cap.unwrap_or(1024.min(max_context - 1)),
        1,
        max_context - 1,
    )?;
    let default_max_tokens = in_range(
        "generation.default_max_tokens",
        r.default_max_tokens.unwrap_or(256.min(max_tokens_cap)),
        1,
        max_tokens_cap,
    )?;
    let threads = match r.threads {
        None | Some(0) => None,
        Some(n) => Some(in_range("generation.threads", n, 1, 1024)?),
    };
    let deadline_ms = r.default_deadline_ms.unwrap_or(60_000);
    if !(1..=3_600_000).contains(&deadline_ms) {
        return Err(invalid(
            "generation.default_deadline_ms",
            format!("{deadline_ms} is outside 1..=3600000"),
        ));
    }
    Ok(GenerationConfig {
        enabled: r.enabled.unwrap_or(false),
        name,
        dir: r
            .dir
            .unwrap_or_else(|| PathBuf::from("models/SmolLM2-135M-Instruct")),
        scheduler: SchedulerKind::parse(r.scheduler.as_deref().unwrap_or("continuous"))?,
        slots,
        max_context,
        prefill_chunk_tokens,
        max_step_tokens,
        static_batch: in_range(
            "generation.static_batch",
            r.static_batch.unwrap_or(slots),
            1,
            slots,
        )?,
        max_tokens_cap,
        default_max_tokens,
        queue_capacity: in_range(
            "generation.queue_capacity",
            r.queue_capacity.unwrap_or(256),
            1,
            100_000,
        )?,
        threads,
        default_deadline: Duration::from_millis(deadline_ms),
    })
}
