//! `inline`: the forward pass runs on a tokio worker thread, as a task that never yields.
//!
//! This is the anti-pattern (Python: calling the model inside `async def`), kept on purpose
//! so its cost can be measured. The batch is spawned as a task from the batcher, so it
//! lands on that worker thread's run queue (tokio's LIFO slot) and blocks it for the whole
//! forward pass; with `sessions` batches in flight, as many workers are blocked. Whatever
//! else was queued on them (requests, timers, the lag probe) waits.

use super::job::Job;
use super::pool::SessionPool;
use super::Dispatch;
use std::sync::Arc;

pub(super) struct Inline {
    pool: Arc<SessionPool>,
}

impl Inline {
    pub fn new(pool: Arc<SessionPool>) -> Inline {
        Inline { pool }
    }
}

impl Dispatch for Inline {
    fn dispatch(&self, job: Job) {
        let pool = self.pool.clone();
        // Deliberately blocking inside an async task: this is what the strategy measures.
        drop(tokio::spawn(async move { pool.run(job) }));
    }

    fn run(&self, task: super::Task) {
        drop(tokio::spawn(async move { task() }));
    }
}
