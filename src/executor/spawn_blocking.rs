//! `spawn_blocking`: the forward pass runs on tokio's blocking thread pool
//! (Python: `loop.run_in_executor(ThreadPoolExecutor, ...)`).
//!
//! tokio's blocking pool may grow to hundreds of threads and cannot abort started work;
//! the executor's core budget caps it at one batch per core, which is what CPU-bound work needs.

use super::job::Job;
use super::pool::SessionPool;
use super::Dispatch;
use std::sync::Arc;

pub(super) struct SpawnBlocking {
    pool: Arc<SessionPool>,
}

impl SpawnBlocking {
    pub fn new(pool: Arc<SessionPool>) -> SpawnBlocking {
        SpawnBlocking { pool }
    }
}

impl Dispatch for SpawnBlocking {
    fn dispatch(&self, job: Job) {
        let pool = self.pool.clone();
        // The handle is not awaited: the job answers through its callback.
        drop(tokio::task::spawn_blocking(move || {
            // Blocking-pool threads are shared with other blocking work; each job sets the
            // priority again, since the thread may be new.
            crate::threads::lower_current_thread(pool.nice());
            pool.run(job)
        }));
    }

    fn run(&self, task: super::Task) {
        let nice = self.pool.nice();
        drop(tokio::task::spawn_blocking(move || {
            crate::threads::lower_current_thread(nice);
            task()
        }));
    }
}
