//! The scheduler over a fake decoder whose "cache" is each row's token history and whose
//! next token is a function of that history alone. A sequence's completion is then the
//! same alone or beside others only if every step saw exactly its own rows: row moves,
//! prefill chunks and joins and leaves are all checked through it.

use super::engine::{Decoder, Forward};
use super::policy::PolicyConfig;
use super::scheduler::{Command, Parts, Scheduler, Submitted};
use super::text::ChatTokenizer;
use super::{FinishReason, GenEvent, GenRequest, Sampling, TokenStream};
use crate::config::{ExecutorConfig, SchedulerKind, Strategy};
use crate::engine::{Batch, Engine, EngineError, EngineFactory};
use crate::executor::width::Ladder;
use crate::executor::Executor;
use crate::metrics::Metrics;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

const VOCAB: usize = 40;
/// Ends a sequence, like `<|im_end|>`.
const STOP: u32 = 1;

/// A decoder whose cache is each row's token history.
struct FakeDecoder {
    rows: Vec<Vec<u32>>,
}

/// The next token after `history`: a hash of it, never the stop token before 6 tokens
/// of history, and the stop token for some histories after that.
fn next(history: &[u32]) -> u32 {
    let h = history
        .iter()
        .fold(7u64, |h, &t| h.wrapping_mul(31).wrapping_add(u64::from(t)));
    if history.len() > 6 && h % 11 == 0 {
        STOP
    } else {
        2 + (h % (VOCAB as u64 - 2)) as u32
    }
}

impl Decoder for FakeDecoder {
    fn forward(&mut self, step: &Forward<'_>) -> Result<Vec<f32>, EngineError> {
        let mut logits = vec![0.0; step.tokens.len() * VOCAB];
        for (i, tokens) in step.tokens.iter().enumerate() {
            let row = &mut self.rows[step.first_row + i];
            if row.len() < step.past[i] {
                return Err(EngineError::inference(format!(
                    "row {} holds {} tokens, the step expects {}",
                    step.first_row + i,
                    row.len(),
                    step.past[i]
                )));
            }
            row.truncate(step.past[i]);
            row.extend_from_slice(tokens);
            logits[i * VOCAB + next(row) as usize] = 1.0;
        }
        Ok(logits)
    }

    fn move_row(&mut self, from: usize, to: usize, len: usize) {
        self.rows[to] = self.rows[from][..len].to_vec();
    }
}

struct NoEmbeddings;
impl Engine for NoEmbeddings {
    fn embed(&mut self, _: &Batch) -> Result<Vec<Vec<f32>>, EngineError> {
        Ok(Vec::new())
    }
}

fn tokenizer() -> ChatTokenizer {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab = (0..VOCAB as u32).map(|i| (format!("t{i}"), i)).collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("t0".into())
        .build()
        .unwrap();
    ChatTokenizer::from_tokenizer(tokenizers::Tokenizer::new(model))
}

/// A scheduler over the fake decoder with `slots` rows, on a `workers` executor.
fn start(kind: SchedulerKind, slots: usize, chunk: usize) -> (mpsc::Sender<Command>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new("workers", "fake"));
    let factory: EngineFactory = Arc::new(|_| Ok(Box::new(NoEmbeddings) as Box<dyn Engine>));
    let exec = ExecutorConfig {
        strategy: Strategy::Workers,
        ..crate::Config::default().executor
    };
    let executor =
        Arc::new(Executor::start(&exec, Ladder::elastic(2), factory, metrics.clone()).unwrap());
    let (tx, rx) = mpsc::channel(64);
    let scheduler = Scheduler::new(Parts {
        commands: rx,
        queued: Arc::new(AtomicUsize::new(0)),
        engine: Box::new(FakeDecoder {
            rows: vec![Vec::new(); slots + 1],
        }),
        stop_ids: vec![STOP],
        context: 64,
        executor,
        policy: PolicyConfig {
            kind,
            slots,
            prefill_chunk_tokens: chunk,
            max_step_tokens: slots + chunk,
            static_batch: slots,
        },
        threads: 1,
        tokenizer: Arc::new(tokenizer()),
        metrics: metrics.clone(),
    });
    tokio::spawn(scheduler.run());
    (tx, metrics)
}

fn submit(tx: &mpsc::Sender<Command>, prompt: Vec<u32>, max_tokens: usize) -> TokenStream {
    let (events, rx) = mpsc::channel(max_tokens + 2);
    let request = GenRequest {
        prompt: prompt.clone(),
        sampling: Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
        max_tokens,
        stop: Vec::new(),
        deadline: None,
    };
    let queued_at = Instant::now();
    tx.try_send(Command::Submit(Submitted {
        request,
        events,
        queued_at,
    }))
    .unwrap();
    TokenStream::for_tests(prompt.len(), rx)
}

/// The completion's text and how it ended.
async fn collect(mut s: TokenStream) -> (String, FinishReason, usize) {
    let mut text = String::new();
    while let Some(e) = s.next().await {
        match e {
            GenEvent::Text { text: t, .. } => text.push_str(&t),
            GenEvent::Done {
                reason,
                completion_tokens,
                ..
            } => return (text, reason, completion_tokens),
            GenEvent::Failed(e) => panic!("failed: {e}"),
        }
    }
    panic!("the stream ended without a final event");
}

/// Prompts of different lengths (1 to 23 tokens), so chunks and rows interleave.
fn prompts() -> Vec<(Vec<u32>, usize)> {
    (0..10u32)
        .map(|i| {
            (
                (0..1 + (i * 7) % 23)
                    .map(|t| 2 + (t * 3 + i) % 30)
                    .collect(),
                3 + (i as usize * 5) % 20,
            )
        })
        .collect()
}

#[tokio::test]
async fn completions_are_the_same_alone_and_together_under_every_policy() {
    let (tx, _) = start(SchedulerKind::Sequential, 1, 64);
    let mut alone = Vec::new();
    for (p, max) in prompts() {
        alone.push(collect(submit(&tx, p, max)).await);
    }
    assert!(
        alone.iter().any(|a| a.1 == FinishReason::Stop)
            && alone.iter().any(|a| a.1 == FinishReason::Length)
    );
    for kind in SchedulerKind::ALL {
        for (slots, chunk) in [(4, 5), (3, 64), (16, 1)] {
            let (tx, metrics) = start(kind, slots, chunk);
            let streams: Vec<_> = prompts()
                .into_iter()
                .map(|(p, m)| submit(&tx, p, m))
                .collect();
            let mut together = Vec::new();
            for s in streams {
                together.push(collect(s).await);
            }
            assert_eq!(
                together, alone,
                "{kind:?} with {slots} slots, chunks of {chunk}"
            );
            let chunks = metrics
                .generation
                .prefill_chunks
                .with_label_values(&[kind.as_str()])
                .get();
            assert!(chunks >= 10, "{kind:?}: every prompt is prefilled");
        }
    }
}

#[tokio::test]
async fn a_dropped_stream_frees_its_slot_and_the_others_go_on() {
    let (tx, metrics) = start(SchedulerKind::Continuous, 2, 8);
    let (p, _) = prompts().remove(3);
    let alone = collect(submit(&tx, p.clone(), 30)).await;
    // Two long ones fill both slots; dropping the first lets a third in.
    let first = submit(&tx, vec![5; 9], 60);
    let second = submit(&tx, p.clone(), 30);
    let third = submit(&tx, p, 30);
    drop(first);
    assert_eq!(collect(second).await, alone);
    assert_eq!(collect(third).await, alone);
    let g = &metrics.generation;
    assert!(
        g.finished
            .with_label_values(&["continuous", "cancelled"])
            .get()
            >= 1
    );
    assert_eq!(g.slots_in_use.with_label_values(&["continuous"]).get(), 0);
}

#[tokio::test]
async fn switching_the_policy_between_steps_loses_nothing() {
    let (tx, _) = start(SchedulerKind::Continuous, 4, 5);
    let alone: Vec<_> = {
        let (tx1, _) = start(SchedulerKind::Sequential, 1, 64);
        let mut v = Vec::new();
        for (p, m) in prompts() {
            v.push(collect(submit(&tx1, p, m)).await);
        }
        v
    };
    let streams: Vec<_> = prompts()
        .into_iter()
        .map(|(p, m)| submit(&tx, p, m))
        .collect();
    for kind in [
        SchedulerKind::Static,
        SchedulerKind::Sequential,
        SchedulerKind::Continuous,
    ] {
        let policy = PolicyConfig {
            kind,
            slots: 4,
            prefill_chunk_tokens: 3,
            max_step_tokens: 7,
            static_batch: 2,
        };
        tx.send(Command::Policy(policy)).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut got = Vec::new();
    for s in streams {
        got.push(collect(s).await);
    }
    assert_eq!(got, alone);
}

#[tokio::test]
async fn a_switch_leaves_no_gauge_behind_under_the_old_label() {
    let (tx, metrics) = start(SchedulerKind::Continuous, 2, 8);
    let g = &metrics.generation;
    // What a step under load last published, before the switch.
    g.active.with_label_values(&["continuous"]).set(2);
    g.waiting.with_label_values(&["continuous"]).set(5);
    let policy = PolicyConfig {
        kind: SchedulerKind::Static,
        slots: 2,
        prefill_chunk_tokens: 8,
        max_step_tokens: 10,
        static_batch: 2,
    };
    tx.send(Command::Policy(policy)).await.unwrap();
    // Commands are taken in order: once this one is answered, the switch was applied.
    collect(submit(&tx, vec![5; 3], 4)).await;
    for gauge in [&g.active, &g.slots_in_use, &g.waiting] {
        assert_eq!(gauge.with_label_values(&["continuous"]).get(), 0);
        assert_eq!(gauge.with_label_values(&["static"]).get(), 0);
    }
}
