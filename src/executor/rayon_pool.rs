//! `rayon`: the forward pass runs on a rayon pool of its own, one thread per batch the
//! core budget admits at once
//! (Python: a `multiprocessing.Pool` fed with chunks of work).
//!
//! A private pool, not rayon's global one, so nothing else in the process (the tokenizer
//! library uses the global pool) competes with inference for its threads.

use super::job::Job;
use super::pool::SessionPool;
use super::Dispatch;
use crate::engine::EngineError;
use std::sync::Arc;

pub(super) struct RayonPool {
    threads: rayon::ThreadPool,
    sessions: Arc<SessionPool>,
}

impl RayonPool {
    pub fn new(sessions: Arc<SessionPool>, n: usize) -> Result<RayonPool, EngineError> {
        let nice = sessions.nice();
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .start_handler(move |_| crate::threads::lower_current_thread(nice))
            .thread_name(|i| format!("concur-rayon-{i}"))
            .build()
            .map_err(EngineError::load)?;
        Ok(RayonPool { threads, sessions })
    }
}

impl Dispatch for RayonPool {
    fn dispatch(&self, job: Job) {
        let sessions = self.sessions.clone();
        self.threads.spawn(move || sessions.run(job));
    }

    fn run(&self, task: super::Task) {
        self.threads.spawn(task);
    }
}
