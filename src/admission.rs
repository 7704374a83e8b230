//! Admission control: a bounded number of inputs may wait for a batch. Beyond that a
//! request is refused at once (429), all of its inputs or none.

use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
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
    sizing: Arc<Mutex<Sizing>>,
    metrics: Arc<Metrics>,
}

/// The capacity, and permits still out that a shrinking reload wants gone: a semaphore
/// can only forget idle permits, so the rest are forgotten as queued inputs give them back.
#[derive(Debug, Default)]
struct Sizing {
    capacity: usize,
    debt: usize,
}

impl Admission {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(capacity)),
            sizing: Arc::new(Mutex::new(Sizing { capacity, debt: 0 })),
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

    /// Changes the capacity live. Inputs already queued keep their place; shrinking below
    /// the current depth only refuses new requests until the queue drains below it.
    pub fn resize(&self, capacity: usize) {
        let mut s = self.sizing.lock().unwrap_or_else(|p| p.into_inner());
        if capacity >= s.capacity {
            let grow = capacity - s.capacity;
            let repaid = grow.min(s.debt);
            s.debt -= repaid;
            self.permits.add_permits(grow - repaid);
        } else {
            s.debt += s.capacity - capacity;
        }
        s.capacity = capacity;
        settle(&self.permits, &mut s);
        drop(s);
        self.report_depth();
    }

    /// Refreshes the queue-depth gauge (and forgets returned permits a shrink still owes).
    pub fn report_depth(&self) {
        let mut s = self.sizing.lock().unwrap_or_else(|p| p.into_inner());
        settle(&self.permits, &mut s);
        let total = s.capacity + s.debt;
        let depth = total.saturating_sub(self.permits.available_permits());
        self.metrics.queue_depth.set(depth as i64);
    }
}

fn settle(permits: &Semaphore, s: &mut Sizing) {
    if s.debt > 0 {
        s.debt -= permits.forget_permits(s.debt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_keeps_queued_inputs_and_changes_room() {
        let a = Admission::new(4, Arc::new(Metrics::new("inline", "m")));
        let held = a.try_admit(3).unwrap();
        a.resize(2);
        assert_eq!(a.try_admit(1).unwrap_err(), AdmitError::Overloaded);
        drop(held);
        a.report_depth();
        let two = a.try_admit(2).unwrap();
        assert_eq!(a.try_admit(1).unwrap_err(), AdmitError::Overloaded);
        drop(two);
        a.resize(5);
        assert!(a.try_admit(5).is_ok());
    }
}
