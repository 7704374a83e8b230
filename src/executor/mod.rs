//! The strategy: where a batch's forward pass runs. One file per strategy, all behind
//! [`Dispatch`]; they differ only in which thread calls [`Engine::embed`].
//!
//! The bridge between the async world and the synchronous engine lives here and nowhere
//! else: the batcher reserves a [`Slot`] (an idle session) before it forms a batch, then
//! hands the batch over with a completion callback that runs on the engine's thread.

mod inline;
mod job;
mod pool;
mod priority;
mod rayon_pool;
mod spawn_blocking;
mod workers;

pub use job::{Done, Job};

use crate::config::{ExecutorConfig, Strategy};
use crate::engine::{EngineError, EngineFactory};
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An idle engine session, reserved. Dropping it (when the batch is done) frees the session.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Runs jobs somewhere. `dispatch` never blocks its caller (the batcher task); where the
/// job then runs is the strategy.
pub(crate) trait Dispatch: Send + Sync {
    fn dispatch(&self, job: Job);
    /// Stops accepting jobs and waits for the threads this strategy owns. Blocking.
    fn shutdown(&self) {}
}

/// The configured strategy plus the slot semaphore that caps batches in flight.
pub struct Executor {
    dispatch: Box<dyn Dispatch>,
    /// A tokio semaphore because the batcher awaits it; one permit per engine session, so
    /// no strategy ever has more batches running than it has sessions.
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Executor {
    /// Loads `config.sessions` engines and starts the configured strategy.
    pub fn start(
        config: &ExecutorConfig,
        factory: EngineFactory,
        metrics: Arc<Metrics>,
    ) -> Result<Executor, EngineError> {
        let n = config.sessions;
        let ctx = job::Context {
            factory: factory.clone(),
            metrics: metrics.clone(),
            nice: config.inference_nice,
        };
        let dispatch: Box<dyn Dispatch> = match config.strategy {
            Strategy::Inline => Box::new(inline::Inline::new(pool::SessionPool::new(n, ctx)?)),
            Strategy::SpawnBlocking => Box::new(spawn_blocking::SpawnBlocking::new(
                pool::SessionPool::new(n, ctx)?,
            )),
            Strategy::Rayon => {
                Box::new(rayon_pool::RayonPool::new(pool::SessionPool::new(n, ctx)?)?)
            }
            Strategy::Workers => Box::new(workers::Workers::new(n, ctx)?),
        };
        Ok(Executor {
            dispatch,
            slots: Arc::new(Semaphore::new(n)),
            metrics,
        })
    }

    /// Waits until a session is idle.
    pub async fn reserve(&self) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed");
        Slot(permit)
    }

    /// Runs `job` on the strategy's thread; `job.done` is called exactly once, there.
    pub fn dispatch(&self, slot: Slot, mut job: Job) {
        self.metrics.inflight_batches.inc();
        job.slot = Some(slot);
        self.dispatch.dispatch(job);
    }

    /// Stops the strategy's own threads, waiting for them. Blocking: call off the runtime.
    pub fn shutdown(&self) {
        self.dispatch.shutdown();
    }
}
