//! A batch on its way to an engine, and the one function every strategy calls to run it.

use super::Cores;
use crate::engine::{Batch, Engine, EngineError, EngineFactory};
use crate::metrics::Metrics;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receives a batch's result (one vector per row, in row order) and its inference time.
pub type Done = Box<dyn FnOnce(Result<Vec<Vec<f32>>, EngineError>, Duration) + Send>;

/// One batch and what to do with its result.
pub struct Job {
    pub batch: Batch,
    pub done: Done,
    /// Set by [`super::Executor::dispatch`]; released when the job finishes.
    pub(super) cores: Option<Cores>,
}

impl Job {
    pub fn new(batch: Batch, done: Done) -> Job {
        Job {
            batch,
            done,
            cores: None,
        }
    }

    /// Cores the forward pass may use: the width of the session that must run it.
    pub fn width(&self) -> usize {
        self.cores.as_ref().map_or(1, Cores::width)
    }

    /// Answers the job with an error without running it (e.g. no engine was available).
    pub(super) fn fail(self, error: EngineError, metrics: &Metrics) {
        metrics.batch_failures.inc();
        metrics.inflight_batches.dec();
        let Job { done, cores, .. } = self;
        drop(cores);
        done(Err(error), Duration::ZERO);
    }
}

/// What every strategy needs to run jobs: a way to rebuild engines, and the metrics.
#[derive(Clone)]
pub(super) struct Context {
    pub factory: EngineFactory,
    pub metrics: Arc<Metrics>,
    /// Nice value for threads the strategy owns (see `priority`).
    pub nice: i32,
}

impl Context {
    /// Runs `job` on `engine`, here, on the calling thread. The caller must put the engine
    /// back where it belongs *before* calling [`Finished::complete`], which frees the cores.
    ///
    /// A panic inside the engine fails only this batch: the engine, whose state is now
    /// unknown, is replaced by a fresh one from the factory, and the thread lives on.
    #[must_use = "the job is answered only by Finished::complete"]
    pub fn run(&self, engine: &mut Box<dyn Engine>, job: Job) -> Finished {
        let width = job.width();
        let Job { batch, done, cores } = job;
        let m = &self.metrics;
        m.busy_workers.inc();
        m.cores.busy.add(width as i64);
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| engine.embed(&batch)));
        let elapsed = start.elapsed();
        m.busy_workers.dec();
        m.cores.busy.sub(width as i64);
        m.cores.record_batch(width, elapsed);
        let result = outcome.unwrap_or_else(|_| {
            self.replace(engine, width);
            Err(EngineError::Panicked)
        });
        if result.is_err() {
            self.metrics.batch_failures.inc();
        }
        self.metrics.inference.observe(elapsed.as_secs_f64());
        self.metrics.inflight_batches.dec();
        Finished {
            done,
            cores,
            result,
            elapsed,
        }
    }

    fn replace(&self, engine: &mut Box<dyn Engine>, width: usize) {
        match (self.factory)(width) {
            Ok(fresh) => {
                *engine = fresh;
                self.metrics.worker_restarts.inc();
                tracing::warn!("an engine panicked; replaced it with a fresh session");
            }
            Err(e) => tracing::error!("an engine panicked and could not be rebuilt: {e}"),
        }
    }
}

/// A job that has run, not yet answered.
pub(super) struct Finished {
    done: Done,
    cores: Option<Cores>,
    result: Result<Vec<Vec<f32>>, EngineError>,
    elapsed: Duration,
}

impl Finished {
    /// Frees the batch's cores, so the batcher can form the next batch, then fans out.
    pub fn complete(self) {
        drop(self.cores);
        (self.done)(self.result, self.elapsed);
    }
}
