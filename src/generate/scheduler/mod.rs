//! The scheduler: an actor that owns the running sequences and the engine, and at every
//! step decides (through [`policy`]) who joins, who leaves and how much of
//! a prompt to prefill, then runs the step through the executor.
//!
//! Rows: decoding sequences sit in cache rows `0..rows.len()`, the prompt being prefilled
//! right after them. When a sequence leaves, the last row moves into its place (once), so
//! a decode step always runs a contiguous block of rows.

use super::engine::Decoder;
use super::policy::{self, Load, PolicyConfig};
use super::seq::{Ended, Seq};
use super::step::{Prefill, Step, StepOutput};
use super::text::ChatTokenizer;
use super::{FinishReason, GenError, GenEvent, GenRequest};
use crate::engine::EngineError;
use crate::executor::Executor;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod rows;

/// What the scheduler is told.
pub enum Command {
    Submit(Submitted),
    /// New rules from the next step on (a live reload).
    Policy(PolicyConfig),
    /// Steps run on this executor from now on (a reload replaced it).
    Executor(Arc<Executor>),
}

/// A request and where its events go.
pub struct Submitted {
    pub request: GenRequest,
    pub events: mpsc::Sender<GenEvent>,
    pub queued_at: Instant,
}

/// The scheduler's state. Runs as one tokio task; the engine travels to the executor's
/// thread for each step and comes back with its result.
pub struct Scheduler {
    commands: mpsc::Receiver<Command>,
    /// Requests queued and not yet admitted, shared with [`super::Generator`] so a full
    /// queue is refused before its command is sent.
    queued: Arc<AtomicUsize>,
    waiting: VecDeque<Seq>,
    /// Admitted, prompt not fully in the cache; the first is prefilled at row `rows.len()`.
    admitted: VecDeque<Seq>,
    rows: Vec<Seq>,
    /// Row moves the next step applies before its forward passes.
    moves: Vec<(usize, usize, usize)>,
    engine: Option<Box<dyn Decoder>>,
    executor: Arc<Executor>,
    policy: PolicyConfig,
    /// Intra-op threads of the engine: the cores each step holds.
    threads: usize,
    tokenizer: Arc<ChatTokenizer>,
    stop_ids: Vec<u32>,
    context: usize,
    metrics: Arc<Metrics>,
}

/// What the scheduler starts with.
pub struct Parts {
    pub commands: mpsc::Receiver<Command>,
    pub queued: Arc<AtomicUsize>,
    pub engine: Box<dyn Decoder>,
    /// Tokens that end a sequence, and a slot's context.
    pub stop_ids: Vec<u32>,
    pub context: usize,
    pub executor: Arc<Executor>,
    pub policy: PolicyConfig,
    pub threads: usize,
    pub tokenizer: Arc<ChatTokenizer>,
    pub metrics: Arc<Metrics>,
}

impl Scheduler {
    pub fn new(p: Parts) -> Scheduler {
        Scheduler {
            commands: p.commands,
            queued: p.queued,
            waiting: VecDeque::new(),
            admitted: VecDeque::new(),
            rows: Vec::new(),
            moves: Vec::new(),
            engine: Some(p.engine),
            executor: p.executor,
            policy: p.policy,
            threads: p.threads,
            tokenizer: p.tokenizer,
            stop_ids: p.stop_ids,
            context: p.context,
            metrics: p.metrics,
        }
    }

    /// Runs until every [`super::Generator`] handle is dropped, then fails what is left.
    pub async fn run(mut self) {
        loop {
            let idle = self.waiting.is_empty() && self.admitted.is_empty() && self.rows.is_empty();
            if idle {
                // Nothing to do: sleep until a command arrives.
                match self.commands.recv().await {
                    Some(c) => self.command(c),
                    None => break,
                }
            }
            while let Ok(c) = self.commands.try_recv() {
                self.command(c);
            }
            self.drop_gone();
            let plan = self.plan();
            if plan.is_idle() {
                if !self.waiting.is_empty() {
                    // Waiting for a deadline to pass or a slot: nothing runs, so only a
                    // command (or the deadline check next time round) changes anything.
                    match tokio::time::timeout(
                        std::time::Duration::from_millis(50),
                        self.commands.recv(),
                    )
                    .await
                    {
                        Ok(Some(c)) => self.command(c),
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                continue;
            }
            if let Err(e) = self.step(plan.prefill, plan.decode).await {
                self.fail_all(GenError::Engine(e.to_string()));
            }
            self.publish();
        }
        self.fail_all(GenError::ShuttingDown);
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Submit(s) => {
                self.waiting
                    .push_back(Seq::new(s.request, s.events, s.queued_at))
            }
            Command::Policy(p) => {
                if p.kind != self.policy.kind {
                    // The gauges move to the new label: left behind, the old one's would
                    // keep their last values, and a sum over schedulers would count them.
                    self.set_gauges([0; 3]);
                }
                self.policy = p;
                self.publish();
            }
            Command::Executor(e) => self.executor = e,
        }
    }

    fn label(&self) -> &'static str {
        self.policy.kind.as_str()
    }

    /// Admits what the policy allows, then plans the step.
    fn plan(&mut self) -> policy::Plan {
        let load = |s: &Scheduler| Load {
            rows: s.rows.len(),
            admitted: s.admitted.len(),
            front_left: s.admitted.front().map_or(0, Seq::prompt_left),
            waiting: s.waiting.len(),
        };
        let first = policy::plan(&self.policy, load(self));
        for _ in 0..first.admit {
            let Some(seq) = self.waiting.pop_front() else {
                break;
            };
            self.queued.fetch_sub(1, Ordering::Relaxed);
            let wait = seq.queued_at.elapsed().as_secs_f64();
            self.metrics
                .generation
                .queue_wait
                .with_label_values(&[self.label()])
                .observe(wait);
            self.admitted.push_back(seq);
        }
        if first.admit == 0 {
            return first;
        }
        policy::plan(&self.policy, load(self))
    }

    /// Builds the step, runs it on the executor, and applies its result.
    async fn step(&mut self, prefill: usize, decode: bool) -> Result<(), EngineError> {
        let prefill = self.chunk_of_two(prefill);
        let mut step = Step {
            moves: std::mem::take(&mut self.moves),
            decode: Vec::new(),
            decode_samplers: Vec::new(),
            pad: None,
            prefill: None,
        };
        if decode {
            for s in &mut self.rows {
                step.decode.push((s.last, s.cached()));
                step.decode_samplers.push(
                    s.sampler
                        .take()
                        .expect("a row's sampler is home between steps"),
                );
            }
        }
        if step.decode.len() == 1 {
            // A lone row runs with a second one, whose token is thrown away: ONNX Runtime's
            // kernels compute a one-row matrix product in another order than a batch, so
            // a sequence alone would decode other (rounded) logits than beside others, and
            // greedy choices near a tie would differ. The second row is the next cache
            // row (the cache has a spare one): free, or a prompt being prefilled, whose
            // next chunk overwrites what the pad wrote at its length.
            let past = self.admitted.front().map_or(0, |f| f.prefilled);
            step.pad = Some((self.rows[0].last, past));
        }
        if prefill > 0 {
            let row = self.rows.len();
            let front = self
                .admitted
                .front_mut()
                .expect("the plan prefills an admitted prompt");
            let tokens = front.prompt[front.prefilled..front.prefilled + prefill].to_vec();
            let last = front.prefilled + prefill == front.prompt.len();
            step.prefill = Some(Prefill {
                row,
                tokens,
                past: front.prefilled,
                sampler: if last { front.sampler.take() } else { None },
            });
        }
        let tokens = step.tokens();
        let out = self.run_on_executor(step).await?;
        let g = &self.metrics.generation;
        let label = self.label();
        g.step_tokens
            .with_label_values(&[label])
            .observe(tokens as f64);
        g.step_seconds
            .with_label_values(&[label])
            .observe(out.elapsed.as_secs_f64());
        if prefill > 0 {
            g.prefill_chunks.with_label_values(&[label]).inc();
            g.tokens
                .with_label_values(&[label, "prompt"])
                .inc_by(prefill as u64);
        }
        self.apply(out, prefill);
        Ok(())
    }

    /// The same rule for prompts: a chunk of one token (when the budget or the prompt's
    /// end leaves one) takes a neighbour, so only a one-token prompt runs as one row.
    fn chunk_of_two(&self, prefill: usize) -> usize {
        let left = self.admitted.front().map_or(0, Seq::prompt_left);
        if prefill == 0 || left < 2 {
            return prefill;
        }
        match left - prefill {
            _ if prefill == 1 => 2,
            1 => prefill + 1,
            _ => prefill,
        }
    }

    /// Sends the step to the executor's thread with the engine, and waits for both back.
    async fn run_on_executor(&mut self, step: Step) -> Result<StepOutput, EngineError> {
        let mut engine = self
            .engine
            .take()
            .expect("the engine is home between steps");
        let cores = self.executor.reserve_n(self.threads).await;
        let (tx, rx) = oneshot::channel();
        self.executor.run_task(cores, move |_width| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                step.run(engine.as_mut())
            }))
            .unwrap_or(Err(EngineError::Panicked));
            let _ = tx.send((engine, result));
        });
        let (engine, result) = rx
            .await
            .map_err(|_| EngineError::inference("the step's thread went away"))?;
        self.engine = Some(engine);
        result
    }

    /// Hands each row its token, promotes a fully prefilled prompt to a row, and removes
    /// the rows that ended.
    fn apply(&mut self, out: StepOutput, prefill: usize) {
        let now = Instant::now();
        let mut ended = Vec::new();
        for (i, (token, sampler)) in out.decoded.into_iter().zip(out.decode_samplers).enumerate() {
            self.rows[i].sampler = Some(sampler);
            if let Some(e) = self.emit(i, token, now) {
                ended.push((i, e));
            }
        }
        if prefill > 0 {
            let front = self
                .admitted
                .front_mut()
                .expect("a prefilled prompt is admitted");
            front.prefilled += prefill;
            if let Some((token, sampler)) = out.first {
                let mut seq = self.admitted.pop_front().expect("checked above");
                seq.sampler = Some(sampler);
                self.rows.push(seq);
                let i = self.rows.len() - 1;
                if let Some(e) = self.emit(i, token, now) {
                    ended.push((i, e));
                }
            }
        }
        let label = self.label();
        for &(_, e) in &ended {
            let reason = match e {
                Ended::Finished(FinishReason::Stop) => "stop",
                Ended::Finished(FinishReason::Length) => "length",
                Ended::Cancelled => "cancelled",
            };
            self.metrics
                .generation
                .finished
                .with_label_values(&[label, reason])
                .inc();
        }
        self.remove_rows(ended.into_iter().map(|(i, _)| i).collect());
    }

    /// Gives row `i` its new token and records its latency.
    fn emit(&mut self, i: usize, token: u32, now: Instant) -> Option<Ended> {
        let label = self.label();
        let g = &self.metrics.generation;
        let seq = &mut self.rows[i];
        match seq.last_token_at {
            None => g
                .ttft
                .with_label_values(&[label])
                .observe((now - seq.queued_at).as_secs_f64()),
            Some(t) => g
                .itl
                .with_label_values(&[label])
                .observe((now - t).as_secs_f64()),
        }
        seq.last_token_at = Some(now);
        g.tokens.with_label_values(&[label, "generated"]).inc();
        seq.accept(token, &self.tokenizer, &self.stop_ids, self.context)
    }
}
