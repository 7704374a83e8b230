//! Engines shared by strategies whose threads are not tied to one session
//! (inline, spawn_blocking, rayon): a job borrows any idle engine for its forward pass.

use super::job::{Context, Job};
use crate::engine::{Engine, EngineError};
use std::sync::Mutex;

pub(super) struct SessionPool {
    /// A std mutex, not a tokio one: it is held only to push or pop, never across the
    /// forward pass or an `.await`.
    idle: Mutex<Vec<Box<dyn Engine>>>,
    size: usize,
    ctx: Context,
}

impl SessionPool {
    pub fn new(sessions: usize, ctx: Context) -> Result<SessionPool, EngineError> {
        let engines = (0..sessions)
            .map(|_| (ctx.factory)())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPool {
            idle: Mutex::new(engines),
            size: sessions,
            ctx,
        })
    }

    /// How many engines the pool owns.
    pub fn len(&self) -> usize {
        self.size
    }

    /// The nice value for threads that run this pool's jobs.
    pub fn nice(&self) -> i32 {
        self.ctx.nice
    }

    /// Runs `job` on the calling thread with an idle engine.
    pub fn run(&self, job: Job) {
        // The executor's slots admit at most one job per engine, so one is always idle.
        let engine = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(mut engine) = engine else {
            job.fail(
                EngineError::inference("no idle engine session"),
                &self.ctx.metrics,
            );
            return;
        };
        let finished = self.ctx.run(&mut engine, job);
        // Back in the pool before the slot is freed: the next job must find it there.
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(engine);
        finished.complete();
    }
}
