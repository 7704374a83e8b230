//! The executor: where a batch's forward pass runs (the *strategy*) and on how many cores
//! (the *parallelism*). One file per strategy, all behind [`Dispatch`]; they differ only in
//! which thread calls [`Engine::embed`](crate::engine::Engine::embed).
//!
//! - [`width`]: the session widths to load and how many cores the next batch gets (pure).
//! - [`cores`]: the core budget; a running batch holds as many cores as its width.
//! - [`pool`]: the sessions of every width, borrowed per batch by any strategy.
//!
//! The bridge between the async world and the synchronous engine lives here and nowhere
//! else: the batcher reserves [`Cores`] before it forms a batch, widens them when more
//! are idle, then hands the batch over with a completion callback that runs on the
//! engine's thread.

mod cores;
mod inline;
mod job;
mod pool;
mod rayon_pool;
mod spawn_blocking;
pub mod width;
mod workers;

pub use cores::Cores;
pub use job::{Done, Job};
pub use pool::Footprint;

use crate::config::{ExecutorConfig, Strategy};
use crate::engine::{EngineError, EngineFactory};
use crate::metrics::Metrics;
use cores::CoreBudget;
use pool::SessionPool;
use std::sync::{Arc, Mutex};
use width::{Demand, Ladder};

/// Runs jobs somewhere. `dispatch` never blocks its caller (the batcher task); where the
/// job then runs is the strategy.
pub(crate) trait Dispatch: Send + Sync {
    fn dispatch(&self, job: Job);
    /// Stops accepting jobs and waits for the threads this strategy owns. Blocking.
    fn shutdown(&self) {}
}

/// The configured strategy, its sessions, and the core budget that caps batches in flight.
pub struct Executor {
    dispatch: Box<dyn Dispatch>,
    pool: Arc<SessionPool>,
    budget: CoreBudget,
    /// Only the batcher task widens, so the lock is never contended; a std mutex because
    /// it is never held across an `.await`.
    demand: Mutex<Demand>,
    ladder: Ladder,
    footprint: Footprint,
    metrics: Arc<Metrics>,
}

impl Executor {
    /// Loads the sessions of `ladder` and starts the configured strategy.
    pub fn start(
        config: &ExecutorConfig,
        ladder: Ladder,
        factory: EngineFactory,
        metrics: Arc<Metrics>,
    ) -> Result<Executor, EngineError> {
        let ctx = job::Context {
            factory,
            metrics: metrics.clone(),
            nice: config.inference_nice,
        };
        let pool = Arc::new(SessionPool::new(&ladder, ctx)?);
        let footprint = pool.footprint().clone();
        // Threads that may call the engine at once: one per batch the budget admits.
        let threads = ladder.max_concurrent();
        let dispatch: Box<dyn Dispatch> = match config.strategy {
            Strategy::Inline => Box::new(inline::Inline::new(pool.clone())),
            Strategy::SpawnBlocking => Box::new(spawn_blocking::SpawnBlocking::new(pool.clone())),
            Strategy::Rayon => Box::new(rayon_pool::RayonPool::new(pool.clone(), threads)?),
            Strategy::Workers => Box::new(workers::Workers::new(pool.clone(), threads)?),
        };
        Ok(Executor {
            dispatch,
            pool,
            budget: CoreBudget::new(ladder.cores, ladder.narrowest(), &metrics),
            demand: Mutex::new(Demand::new()),
            ladder,
            footprint,
            metrics,
        })
    }

    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    pub fn footprint(&self) -> &Footprint {
        &self.footprint
    }

    /// Waits until the narrowest share of cores is idle.
    pub async fn reserve(&self) -> Cores {
        self.budget.reserve().await
    }

    /// Widens `cores` for a batch that leaves `pending` batches queued behind it: as many
    /// of the idle cores as [`width::choose`] gives it. Never waits.
    pub fn widen(&self, cores: &mut Cores, pending: usize) {
        let demand = self
            .demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(self.budget.batches() + pending);
        let want = width::choose(&self.ladder, self.budget.free(cores), pending, demand);
        self.budget.widen(cores, want);
    }

    /// Runs `job` on the strategy's thread; `job.done` is called exactly once, there.
    pub fn dispatch(&self, cores: Cores, mut job: Job) {
        self.metrics.inflight_batches.inc();
        job.cores = Some(cores);
        self.dispatch.dispatch(job);
    }

    /// Runs a short input through every session. Blocking: a reload calls it off the
    /// runtime, before the executor takes traffic.
    pub fn warm(&self) -> Result<(), EngineError> {
        self.pool.warm()
    }

    /// Waits until every batch dispatched here has finished (a replaced executor's last
    /// batches, before it is shut down).
    pub async fn idle(&self) {
        self.budget.idle().await
    }

    /// Stops the strategy's own threads, waiting for them. Blocking: call off the runtime.
    pub fn shutdown(&self) {
        self.dispatch.shutdown();
    }
}
