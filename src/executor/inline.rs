//! `inline`: the forward pass runs on the tokio worker thread that formed the batch.
//!
//! This is the anti-pattern (Python: calling the model inside `async def`), kept on purpose
//! so its cost can be measured: while a batch runs, that worker thread serves nothing
//! else, the batcher cannot form the next batch, and the event-loop lag probe sees it.

use super::job::Job;
use super::pool::SessionPool;
use super::Dispatch;

pub(super) struct Inline {
    pool: SessionPool,
}

impl Inline {
    pub fn new(pool: SessionPool) -> Inline {
        Inline { pool }
    }
}

impl Dispatch for Inline {
    fn dispatch(&self, job: Job) {
        self.pool.run(job);
    }
}
