//! The request path below HTTP, shared by every route that needs vectors:
//! tokenize -> admission -> batcher -> (strategy -> engine) -> one vector per input.

use crate::batcher::{BatchError, BatcherHandle, SubmitError};
use crate::engine::TokenIds;
use crate::metrics::Metrics;
use crate::tokenize::{TextTokenizer, TokenizeError};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Requests with more text than this are tokenized on the blocking pool rather than on the
/// event loop: a few KiB take tens of microseconds, 100 KiB take milliseconds.
const INLINE_TOKENIZE_BYTES: usize = 16 * 1024;

/// Why a request got no vectors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error(transparent)]
    Admission(#[from] SubmitError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the server stopped before answering")]
    Lost,
}

/// Where the time of one request went; the maxima over its inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub tokenization: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub batch_size: usize,
}

/// Vectors for every input of a request, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// Mean-pooled, not normalised.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens over all inputs, special tokens included, after truncation.
    pub tokens: usize,
    pub timings: Timings,
}

/// Tokenizer plus batcher: turns texts into vectors.
#[derive(Clone)]
pub struct Pipeline {
    tokenizer: Arc<TextTokenizer>,
    batcher: BatcherHandle,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    pub fn new(
        tokenizer: Arc<TextTokenizer>,
        batcher: BatcherHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Pipeline {
            tokenizer,
            batcher,
            metrics,
        }
    }

    /// The batcher behind this pipeline (a reload swaps its executor).
    pub fn batcher(&self) -> &BatcherHandle {
        &self.batcher
    }

    /// Embeds `texts`; the inputs leave the queue unanswered if `deadline` passes first.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        truncate: bool,
        deadline: Instant,
    ) -> Result<Embeddings, PipelineError> {
        let started = Instant::now();
        let rows = self.tokenize(texts, truncate).await?;
        let tokenization = started.elapsed();
        self.metrics
            .tokenization
            .observe(tokenization.as_secs_f64());
        let tokens = rows.iter().map(Vec::len).sum();
        let receivers = self.batcher.submit(rows, deadline)?;
        let mut timings = Timings {
            tokenization,
            ..Timings::default()
        };
        let mut vectors = Vec::with_capacity(receivers.len());
        // The batcher works on all inputs at once; awaiting them in order costs nothing.
        for rx in receivers {
            let item = rx.await.map_err(|_| PipelineError::Lost)??;
            timings.queue = timings.queue.max(item.queue_wait);
            timings.inference = timings.inference.max(item.inference);
            timings.batch_size = timings.batch_size.max(item.batch_size);
            vectors.push(item.vector);
        }
        Ok(Embeddings {
            vectors,
            tokens,
            timings,
        })
    }

    async fn tokenize(
        &self,
        texts: Vec<String>,
        truncate: bool,
    ) -> Result<Vec<TokenIds>, TokenizeError> {
        let bytes: usize = texts.iter().map(String::len).sum();
        let tokenizer = self.tokenizer.clone();
        let work = move || {
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| tokenizer.encode(i, t, truncate))
                .collect::<Result<Vec<_>, _>>()
        };
        if bytes <= INLINE_TOKENIZE_BYTES {
            return work();
        }
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            Err(TokenizeError::Failed {
                index: 0,
                message: format!("tokenizer task failed: {e}"),
            })
        })
    }
}
