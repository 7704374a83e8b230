//! Generation: a small language model's token streams sharing one engine.
//!
//! A decode step is a batch too, but one that comes back every few milliseconds for the
//! same sequences, so its state (the key/value cache) outlives the step. The pieces, from
//! the HTTP side down:
//!
//! - [`Generator`] (here): the handle handlers use. `submit` queues a prompt and returns a
//!   [`TokenStream`]; dropping the stream frees the sequence's slot at the next step.
//! - [`scheduler`]: the actor that owns the running sequences. At every step it decides who
//!   joins, who leaves and how many prompt tokens to prefill; `sequential`, `static` and
//!   `continuous` are admission rules of that one loop ([`policy`]), not three engines.
//!   Each step runs through the executor: the strategy says which thread runs it, and it
//!   holds cores from the same budget as embedding batches.
//! - [`engine`]: the ONNX decoder and its key/value cache in fixed slots that stay in
//!   place between steps ([`kv`]); sampling ([`sampler`]) runs on the step's thread.
//! - [`text`]: the chat template, incremental detokenization and stop sequences.

pub mod engine;
pub mod kv;
pub mod policy;
pub mod sampler;
pub mod scheduler;
#[cfg(test)]
mod scheduler_tests;
mod seq;
mod step;
pub mod text;

use crate::config::GenerationConfig;
use crate::engine::{EngineError, SessionThreads};
use crate::executor::Executor;
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use engine::{GenEngine, ModelSpec};
pub use sampler::Sampling;
pub use text::ChatTokenizer;

/// One generation request, validated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// The prompt as token ids (the chat template already applied for chat).
    pub prompt: Vec<u32>,
    pub sampling: Sampling,
    /// Tokens to generate at most (`finish_reason = "length"` when reached).
    pub max_tokens: usize,
    /// Text that ends the completion; the stop text itself is not sent.
    pub stop: Vec<String>,
    /// Answered with [`GenError::Deadline`] if it has not started by then.
    pub deadline: Option<Instant>,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop sequence.
    Stop,
    /// `max_tokens`, or the slot's context is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a stream carries, in order: text deltas, then exactly one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New text. One token may yield no text yet (half of a UTF-8 character, or text
    /// held back because it may begin a stop sequence), so `tokens` counts what it covers.
    Text {
        text: String,
        tokens: usize,
    },
    Done {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(GenError),
}

/// Why a generation request was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// The queue is full (429).
    #[error("the generation queue is full ({0} waiting); retry later")]
    Overloaded(usize),
    /// The deadline passed before a slot was free (503).
    #[error("the request waited past its deadline for a generation slot")]
    Deadline,
    /// The server is shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Prompt plus `max_tokens` cannot fit a slot's context (400).
    #[error("the prompt has {prompt} tokens; with max_tokens {max_tokens} it exceeds the context of {context} tokens")]
    ContextTooLong {
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },
    /// The engine failed (500); the message says how.
    #[error("generation failed: {0}")]
    Engine(String),
}

/// The receiving end of one completion. Dropping it cancels the sequence: the scheduler
/// sees the closed channel at its next step and frees the slot.
#[derive(Debug)]
pub struct TokenStream {
    pub prompt_tokens: usize,
    rx: mpsc::Receiver<GenEvent>,
}

impl TokenStream {
    /// The next event; None only if the scheduler went away without a final event.
    pub async fn next(&mut self) -> Option<GenEvent> {
        self.rx.recv().await
    }

    /// [`next`](Self::next) for a hand-written future or body: the HTTP layer polls the
    /// stream from its response body, so that hyper dropping the body drops the stream.
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<GenEvent>> {
        self.rx.poll_recv(cx)
    }

    #[cfg(test)]
    pub(crate) fn for_tests(prompt_tokens: usize, rx: mpsc::Receiver<GenEvent>) -> TokenStream {
        TokenStream { prompt_tokens, rx }
    }
}

/// What `/info` and the API say about the generative model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenInfo {
    pub model: String,
    pub slots: usize,
    pub max_context: usize,
    pub max_tokens_cap: usize,
    pub prefill_chunk_tokens: usize,
    pub weights: String,
    /// Intra-op threads of a step: the cores it holds from the executor's budget.
    pub threads: usize,
    /// Bytes of the key/value cache if every slot filled its context.
    pub kv_cache_bytes: usize,
}

/// The handle request handlers hold. Cheap to clone.
#[derive(Clone)]
pub struct Generator {
    commands: mpsc::Sender<scheduler::Command>,
    /// Requests queued and not yet admitted (the scheduler decrements it).
    queued: Arc<AtomicUsize>,
    capacity: usize,
    tokenizer: Arc<ChatTokenizer>,
    info: Arc<GenInfo>,
}

/// Loads the model and starts its scheduler on the current runtime; steps run on
/// `executor`. Blocking (it loads the model): call it off the event loop.
pub fn start(
    config: &GenerationConfig,
    ort_library: Option<&Path>,
    executor: Arc<Executor>,
    inference_nice: i32,
    metrics: Arc<Metrics>,
    runtime: &tokio::runtime::Handle,
) -> Result<Generator, EngineError> {
    let threads = config.threads.unwrap_or_else(|| executor.cores());
    let session = SessionThreads {
        intra: threads,
        inter: 1,
        spinning: true,
        nice: inference_nice,
    };
    let engine = GenEngine::load(
        &config.dir,
        ort_library,
        session,
        // One spare row: a lone decode row runs beside it (see the scheduler's `pad`).
        config.slots + 1,
        config.max_context,
    )?;
    let tokenizer = Arc::new(ChatTokenizer::load(
        &config.dir,
        engine.spec().default_system.clone(),
    )?);
    let info = GenInfo {
        model: config.name.clone(),
        slots: config.slots,
        max_context: config.max_context,
        max_tokens_cap: config.max_tokens_cap,
        prefill_chunk_tokens: config.prefill_chunk_tokens,
        weights: engine.spec().weights.clone(),
        threads,
        kv_cache_bytes: engine.kv_shape().bytes(),
    };
    // Room for every queued request plus a few control commands.
    let (tx, rx) = mpsc::channel(config.queue_capacity + 16);
    let queued = Arc::new(AtomicUsize::new(0));
    let scheduler = scheduler::Scheduler::new(scheduler::Parts {
        commands: rx,
        queued: queued.clone(),
        stop_ids: engine.spec().stop_token_ids.clone(),
        context: config.max_context,
        engine: Box::new(engine),
        executor,
        policy: policy::PolicyConfig::from_config(config),
        threads,
        tokenizer: tokenizer.clone(),
        metrics,
    });
    runtime.spawn(scheduler.run());
    Ok(Generator {
        commands: tx,
        queued,
        capacity: config.queue_capacity,
        tokenizer,
        info: Arc::new(info),
    })
}

impl Generator {
    /// The model's name in the API (`SmolLM2-135M-Instruct`).
    pub fn model_name(&self) -> &str {
        &self.info.model
    }

    pub fn info(&self) -> &GenInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &ChatTokenizer {
        &self.tokenizer
    }

    /// Queues `request`. Fails at once when it cannot fit a slot's context or the queue
    /// is full; otherwise the stream carries its tokens.
    pub fn submit(&self, request: GenRequest) -> Result<TokenStream, GenError> {
        let (prompt, max_tokens, context) = (
            request.prompt.len(),
            request.max_tokens,
            self.info.max_context,
        );
        if prompt == 0 || prompt + max_tokens > context {
            return Err(GenError::ContextTooLong {
                prompt,
                max_tokens,
                context,
            });
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(GenError::Overloaded(self.capacity));
        }
        // One event per token plus the final one: the channel never fills, so a slow
        // reader never stalls the step loop.
        let (tx, rx) = mpsc::channel(max_tokens + 2);
        let command = scheduler::Command::Submit(scheduler::Submitted {
            request,
            events: tx,
            queued_at: Instant::now(),
        });
        self.commands.try_send(command).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => GenError::Overloaded(self.capacity),
                mpsc::error::TrySendError::Closed(_) => GenError::ShuttingDown,
            }
        })?;
        Ok(TokenStream {
            prompt_tokens: prompt,
            rx,
        })
    }

    /// Switches the scheduling rules from the next step on (a live reload).
    pub async fn set_policy(&self, config: &GenerationConfig) {
        let policy = policy::PolicyConfig::from_config(config);
        let _ = self.commands.send(scheduler::Command::Policy(policy)).await;
    }

    /// Runs the next steps on `executor` (a reload replaced the executor).
    pub async fn set_executor(&self, executor: Arc<Executor>) {
        let _ = self
            .commands
            .send(scheduler::Command::Executor(executor))
            .await;
    }
}
