//! The executor: where a batch's forward pass runs (the *strategy*) and on how many cores
//! (the *parallelism*). One file per strategy, all behind `Dispatch`; they differ only in
//! which thread calls [`Engine::embed`](crate::engine::Engine::embed).
//!
//! - [`width`]: the session widths to load and how many cores the next batch gets (pure).
//! - [`cost`]: what a batch costs at each width, learned from the batches that ran.
//! - `cores`: the core budget; a running batch holds as many cores as its width.
//! - `pool`: the sessions of every width, borrowed per batch by any strategy.
//!
//! The bridge between the async world and the synchronous engine lives here and nowhere
//! else: the batcher reserves [`Cores`] before it forms a batch, widens them when more
//! are idle, then hands the batch over with a completion callback that runs on the
//! engine's thread.

mod cores;
pub mod cost;
mod inline;
mod job;
mod pool;
#[doc(hidden)]
pub mod processes;
mod rayon_pool;
mod spawn_blocking;
pub mod width;
mod workers;

pub use cores::Cores;
pub use job::{Done, Job};
pub use pool::{resident_bytes, Footprint};
pub use processes::{worker_main, ProcessFootprint};

use crate::config::{ExecutorConfig, Strategy};
use crate::engine::{EngineError, EngineFactory};
use crate::metrics::Metrics;
use cores::CoreBudget;
use cost::Costs;
use pool::SessionPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use width::{Ladder, Moment};

/// Runs jobs somewhere. `dispatch` never blocks its caller (the batcher task); where the
/// job then runs is the strategy.
pub(crate) trait Dispatch: Send + Sync {
    fn dispatch(&self, job: Job);
    /// Runs `task` where this strategy runs its batches. Strategies whose engines live
    /// elsewhere (`processes`) run it on tokio's blocking pool: a generation step needs
    /// the key/value cache of this process.
    fn run(&self, task: Task) {
        drop(tokio::task::spawn_blocking(task));
    }
    /// Stops accepting jobs and waits for the threads this strategy owns. Blocking.
    fn shutdown(&self) {}
}

/// Work other than an embedding batch, run on the strategy's thread: a generation step,
/// which owns its engine and answers through its own channel.
pub type Task = Box<dyn FnOnce() + Send>;

/// A started strategy, what loading its sessions cost, and the sessions when they live in
/// this process.
type Started = (Box<dyn Dispatch>, Footprint, Option<Arc<SessionPool>>);

/// A strategy that runs its jobs on `pool`, and what loading the pool cost.
fn in_process<D: Dispatch + 'static>(
    pool: Arc<SessionPool>,
    start: impl FnOnce(Arc<SessionPool>) -> Result<D, EngineError>,
) -> Result<Started, EngineError> {
    let footprint = pool.footprint().clone();
    Ok((Box::new(start(pool.clone())?), footprint, Some(pool)))
}

/// The configured strategy, its sessions, and the core budget that caps batches in flight.
pub struct Executor {
    dispatch: Box<dyn Dispatch>,
    /// The sessions, when they live in this process (not under `processes`).
    pool: Option<Arc<SessionPool>>,
    budget: CoreBudget,
    /// Written by whichever thread finishes a batch, read by the batcher when it widens
    /// one. A std mutex: it is held for a few arithmetic operations, never across an
    /// `.await`, and an `Arc` because the completion callbacks outlive no executor but are
    /// `'static`.
    costs: Arc<Mutex<Costs>>,
    /// Rows the batcher has received, ever: a batch's completion subtracts the count at
    /// its dispatch to learn how many arrived while it ran. An atomic because the batcher
    /// adds and engine threads read; relaxed, as a count a row off only nudges a rate.
    arrived: Arc<AtomicU64>,
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
        // Threads that may call the engine at once: one per batch the budget admits.
        let threads = ladder.max_concurrent();
        // The sessions of this process; `processes` loads them in its children instead.
        let pool = || SessionPool::new(&ladder, ctx.clone()).map(Arc::new);
        let (dispatch, footprint, pool): Started = match config.strategy {
            Strategy::Inline => in_process(pool()?, |p| Ok(inline::Inline::new(p)))?,
            Strategy::SpawnBlocking => {
                in_process(pool()?, |p| Ok(spawn_blocking::SpawnBlocking::new(p)))?
            }
            Strategy::Rayon => in_process(pool()?, |p| rayon_pool::RayonPool::new(p, threads))?,
            Strategy::Workers => in_process(pool()?, |p| workers::Workers::new(p, threads))?,
            Strategy::Processes => {
                let (p, footprint) = processes::Processes::start(config, &ladder, ctx.clone())?;
                (Box::new(p), footprint, None)
            }
        };
        Ok(Executor {
            dispatch,
            pool,
            budget: CoreBudget::new(ladder.cores, ladder.narrowest(), &metrics),
            costs: Arc::new(Mutex::new(Costs::new(ladder.rungs.iter().map(|r| r.width)))),
            arrived: Arc::new(AtomicU64::new(0)),
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

    /// Counts rows the batcher received (for the arrival rate during runs).
    pub fn arrived(&self, rows: u64) {
        self.arrived.fetch_add(rows, Ordering::Relaxed);
    }

    /// Widens `cores` for the batch described by `moment` (its `free` and `load` are
    /// filled in here, its `rate` lowered to the rows arriving while batches run): as
    /// many of the idle cores as [`width::choose`] gives it. Never waits.
    pub fn widen(&self, cores: &mut Cores, moment: Moment) {
        let now = Instant::now();
        let costs = self.costs.lock().unwrap_or_else(|p| p.into_inner());
        let moment = Moment {
            free: self.budget.free(cores),
            rate: moment.rate.min(costs.arrival_rate(now)),
            load: costs.load(self.ladder.cores, now),
            ..moment
        };
        let want = width::choose(&self.ladder, &moment, &costs, now);
        drop(costs);
        self.budget.widen(cores, want);
    }

    /// Records a pass as if a batch had run, with `arrived` rows arriving during it
    /// (tests teach a machine's costs and a traffic's rate).
    #[cfg(test)]
    pub(crate) fn record_cost(
        &self,
        width: usize,
        tokens: usize,
        took: std::time::Duration,
        arrived: u64,
        at: Instant,
    ) {
        let mut c = self.costs.lock().unwrap_or_else(|p| p.into_inner());
        c.record(width, tokens, took, arrived, at);
    }

    /// Runs `job` on the strategy's thread; `job.done` is called exactly once, there.
    pub fn dispatch(&self, cores: Cores, mut job: Job) {
        self.metrics.inflight_batches.inc();
        // What the pass took at this width teaches the width decision. Timestamped on
        // the batcher's clock, at dispatch, so that paused time in tests stays consistent.
        let (width, tokens, at) = (cores.width(), job.batch.padded_tokens(), Instant::now());
        let (costs, arrived) = (self.costs.clone(), self.arrived.clone());
        let before = arrived.load(Ordering::Relaxed);
        let done = job.done;
        job.done = Box::new(move |result, took| {
            if result.is_ok() {
                let meanwhile = arrived.load(Ordering::Relaxed).saturating_sub(before);
                let mut c = costs.lock().unwrap_or_else(|p| p.into_inner());
                c.record(width, tokens, took, meanwhile, at);
            }
            done(result, took);
        });
        job.cores = Some(cores);
        self.dispatch.dispatch(job);
    }

    /// Waits until `n` cores are idle (at most the budget) and holds them: what a
    /// generation step on `n` intra-op threads needs, so it never oversubscribes the CPU
    /// beside embedding batches.
    pub async fn reserve_n(&self, n: usize) -> Cores {
        self.budget.reserve_n(n).await
    }

    /// The core budget's size.
    pub fn cores(&self) -> usize {
        self.ladder.cores
    }

    /// Runs `task` on the strategy's thread with `cores` held until it returns; the task
    /// gets the width it holds.
    pub fn run_task(&self, cores: Cores, task: impl FnOnce(usize) + Send + 'static) {
        let metrics = self.metrics.clone();
        self.dispatch.run(Box::new(move || {
            let width = cores.width();
            metrics.cores.busy.add(width as i64);
            task(width);
            metrics.cores.busy.sub(width as i64);
            drop(cores);
        }));
    }

    /// Runs a short input through every session of this process. Blocking: a reload
    /// calls it off the runtime, before the executor takes traffic. (`processes` children
    /// load their sessions before they report ready.)
    pub fn warm(&self) -> Result<(), EngineError> {
        self.pool.as_ref().map_or(Ok(()), |p| p.warm())
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
