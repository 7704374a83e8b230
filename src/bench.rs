//! `concur bench`: the raw engine ceiling, in process, without HTTP.
//!
//! The corpus is tokenized and grouped into batches once, with the configured batching
//! policy applied to the whole corpus at once (the best grouping a full queue allows);
//! then one thread per batch the core budget admits at once (elastic: one per core, each
//! with a one-core session; fixed: `sessions` threads of `intra_op_threads`), each owning
//! an engine, run those batches round-robin for a fixed time: the throughput ceiling a
//! full queue allows. The server is measured against this number.

use crate::batcher::queue::{Policy, Queue, Queued};
use crate::config::Config;
use crate::engine::{Batch, Engine, OnnxEngine, SharedWeights, TokenIds};
use crate::executor::width::Ladder;
use crate::tokenize::TextTokenizer;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub sequences_per_second: f64,
    pub sequences: u64,
    pub batches: u64,
    pub seconds: f64,
    pub batch_latency_seconds: Percentiles,
    /// Mean fraction of token slots that were padding.
    pub padding_ratio: f64,
    pub mean_batch_size: f64,
    pub settings: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [f64]) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Texts of a corpus file: JSON lines with a `text` field, or plain lines of text.
pub fn load_corpus(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let texts: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) => v
                .get("text")
                .and_then(|t| t.as_str())
                .map(String::from)
                .unwrap_or_default(),
            Err(_) => l.to_string(),
        })
        .filter(|t| !t.trim().is_empty())
        .collect();
    if texts.is_empty() {
        return Err(format!("{} holds no texts", path.display()));
    }
    Ok(texts)
}

struct Item(TokenIds);

impl Queued for Item {
    fn tokens(&self) -> usize {
        self.0.len()
    }
    fn enqueued_at(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(3600)
    }
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Groups the corpus into batches with the configured policy.
pub fn form_batches(config: &Config, rows: Vec<TokenIds>) -> Vec<Batch> {
    let policy = Policy::from_config(&config.batching);
    let mut queue = Queue::default();
    rows.into_iter().for_each(|r| queue.push(Item(r)));
    let mut batches = Vec::new();
    while !queue.is_empty() {
        let rows = queue.take_batch(&policy).into_iter().map(|i| i.0).collect();
        batches.push(Batch { rows });
    }
    batches
}

/// Runs the bench for `duration` after a short warm-up.
pub fn run(config: &Config, corpus: &[String], duration: Duration) -> Result<BenchReport, String> {
    let tokenizer =
        TextTokenizer::load(&config.model.tokenizer_path(), config.model.max_seq_length)?;
    let rows = corpus
        .iter()
        .enumerate()
        .map(|(i, t)| tokenizer.encode(i, t, true))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let batches = form_batches(config, rows);
    let padding = batches
        .iter()
        .map(|b| 1.0 - b.real_tokens() as f64 / b.padded_tokens().max(1) as f64)
        .sum::<f64>()
        / batches.len() as f64;
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ladder = Ladder::from_config(&config.executor, available);
    let (threads, width) = (ladder.max_concurrent(), ladder.narrowest());
    let shared = SharedWeights::new();
    let engines = (0..threads)
        .map(|_| OnnxEngine::load(&config.model, &config.executor, width, &shared))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let end = started + duration;
    let per_thread: Vec<Result<(u64, Vec<f64>), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = engines
            .into_iter()
            .map(|mut engine| {
                let (batches, next) = (&batches, &next);
                s.spawn(move || {
                    // Warm-up: ONNX Runtime allocates and tunes on the first runs.
                    for b in batches.iter().take(3) {
                        engine.embed(b).map_err(|e| e.to_string())?;
                    }
                    let (mut sequences, mut latencies) = (0u64, Vec::new());
                    while Instant::now() < end {
                        let batch = &batches[next.fetch_add(1, Ordering::Relaxed) % batches.len()];
                        let t = Instant::now();
                        engine.embed(batch).map_err(|e| e.to_string())?;
                        latencies.push(t.elapsed().as_secs_f64());
                        sequences += batch.rows.len() as u64;
                    }
                    Ok((sequences, latencies))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("bench thread panicked".into()))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let (mut sequences, mut latencies) = (0, Vec::new());
    for r in per_thread {
        let (s, l) = r?;
        sequences += s;
        latencies.extend(l);
    }
    let batches_run = latencies.len() as u64;
    Ok(BenchReport {
        sequences_per_second: sequences as f64 / seconds,
        sequences,
        batches: batches_run,
        seconds,
        batch_latency_seconds: Percentiles::of(&mut latencies),
        padding_ratio: padding,
        mean_batch_size: sequences as f64 / batches_run.max(1) as f64,
        settings: serde_json::json!({
            "parallelism": config.executor.parallelism,
            "sessions": threads,
            "intra_op_threads": width,
            "variant": config.model.variant,
            "max_batch_size": config.batching.max_batch_size,
            "max_batch_tokens": config.batching.max_batch_tokens,
            "length_aware": config.batching.length_aware,
            "corpus_texts": corpus.len(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&mut []).max, 0.0);
    }

    #[test]
    fn corpus_batches_cover_every_row_once() {
        let config = Config::parse("[batching]\nmax_batch_size = 4\n").unwrap();
        let rows: Vec<TokenIds> = (1..=10).map(|n| vec![0; n * 10]).collect();
        let batches = form_batches(&config, rows);
        let total: usize = batches.iter().map(|b| b.rows.len()).sum();
        assert_eq!(total, 10);
        assert!(batches.iter().all(|b| b.rows.len() <= 4));
    }
}
