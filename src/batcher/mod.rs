//! The batcher: a queue of admitted inputs and the task that turns them into batches.
//!
//! [`queue`] is the pure batching policy; `task` is the actor that owns the queue,
//! reserves an idle engine session, forms a batch and hands it to the executor.

pub mod queue;
mod task;

pub use task::{spawn, BatcherHandle, SubmitError};

use crate::engine::{EngineError, TokenIds};
use std::time::Duration;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

/// One input's result, with the timings a client sees in its response headers.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Mean-pooled, not normalised.
    pub vector: Vec<f32>,
    pub queue_wait: Duration,
    pub inference: Duration,
    pub batch_size: usize,
}

/// Why an input got no vector.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the request's deadline passed while it was queued")]
    Expired,
}

pub type Reply = Result<Embedded, BatchError>;

/// An admitted input waiting for a batch.
pub struct Entry {
    pub tokens: TokenIds,
    pub enqueued_at: Instant,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Reply>,
    /// This input's share of the admission capacity, given back when it leaves the queue.
    pub permit: OwnedSemaphorePermit,
}

impl queue::Queued for Entry {
    fn tokens(&self) -> usize {
        self.tokens.len()
    }
    fn enqueued_at(&self) -> Instant {
        self.enqueued_at
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn is_cancelled(&self) -> bool {
        // The request's handler dropped its receiver: the client disconnected.
        self.reply.is_closed()
    }
}
