//! The core budget: the CPUs inference may use, as permits. A running batch holds as many
//! as its width, so the batches in flight never ask for more cores than the budget has.

use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Cores held for one batch. Dropping it (when the batch is done) gives them back.
pub struct Cores {
    permit: OwnedSemaphorePermit,
}

impl Cores {
    /// How many cores are held: the batch's width.
    pub fn width(&self) -> usize {
        self.permit.num_permits()
    }
}

pub(super) struct CoreBudget {
    /// A tokio semaphore because the batcher awaits it. One permit per core; the
    /// batcher's first core is awaited, extra cores are only ever taken when idle
    /// (`try_acquire`), so widening never makes a batch wait.
    permits: Arc<Semaphore>,
    total: usize,
    /// Cores a batch needs at least (fixed: intra_op_threads; elastic: 1).
    unit: usize,
}

impl CoreBudget {
    pub fn new(total: usize, unit: usize, metrics: &Metrics) -> CoreBudget {
        metrics.cores.budget.set(total as i64);
        CoreBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
            unit,
        }
    }

    /// Waits until the narrowest share of cores is idle, and holds it.
    pub async fn reserve(&self) -> Cores {
        self.hold(self.unit).await
    }

    /// Waits until `n` cores (at most the whole budget) are idle, and holds them: a
    /// generation step, whose width is its session's thread count.
    pub async fn reserve_n(&self, n: usize) -> Cores {
        self.hold(n.clamp(1, self.total)).await
    }

    async fn hold(&self, n: usize) -> Cores {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .expect("the core semaphore is never closed");
        Cores { permit }
    }

    /// Waits until no batch holds cores: every batch dispatched has finished.
    pub async fn idle(&self) {
        let all = self
            .permits
            .acquire_many(self.total as u32)
            .await
            .expect("the core semaphore is never closed");
        drop(all);
    }

    /// Cores idle now, counting those `held` already holds.
    pub fn free(&self, held: &Cores) -> usize {
        self.permits.available_permits() + held.width()
    }

    /// Grows `held` to `width` cores if that many are idle now; never waits.
    pub fn widen(&self, held: &mut Cores, width: usize) {
        let extra = width.saturating_sub(held.width());
        if extra == 0 {
            return;
        }
        if let Ok(more) = self.permits.clone().try_acquire_many_owned(extra as u32) {
            held.permit.merge(more);
        }
    }
}
