//! Admission control: a bounded number of inputs may wait for a batch. Beyond that a
//! request is refused at once (429), all of its inputs or none.

use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("the server is at capacity; retry shortly")]
    Overloaded,
    #[error("the server is shutting down")]
    Closed,
}

/// The queue's capacity, counted in inputs.
#[derive(Clone)]
pub struct Admission {
    /// A semaphore rather than a bounded channel: a request with several inputs takes all of
    /// its permits at once or none, and each input gives its permit back as it leaves the
    /// queue for a batch.
    permits: Arc<Semaphore>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            metrics,
        }
    }

    /// Reserves room for `inputs` queued inputs, without waiting.
    pub fn try_admit(&self, inputs: usize) -> Result<OwnedSemaphorePermit, AdmitError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(inputs as u32)
            .map_err(|e| match e {
                TryAcquireError::NoPermits => AdmitError::Overloaded,
                TryAcquireError::Closed => AdmitError::Closed,
            })?;
        self.report_depth();
        Ok(permit)
    }

    /// Refreshes the queue-depth gauge.
    pub fn report_depth(&self) {
        let depth = self.capacity - self.permits.available_permits();
        self.metrics.queue_depth.set(depth as i64);
    }
}
