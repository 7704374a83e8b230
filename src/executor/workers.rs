//! `workers`: dedicated, named OS threads, one per batch the core budget admits at once,
//! fed by a bounded channel (Python: a pool of worker processes, minus the pickling, since
//! threads share memory and Rust has no GIL). Each job borrows a session of its width from
//! the shared pool, so a worker runs a narrow batch or a wide one as the batcher decided.

use super::job::Job;
use super::pool::SessionPool;
use super::Dispatch;
use crate::engine::EngineError;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(super) struct Workers {
    /// Bounded to one job per worker; the core budget keeps it from ever filling.
    /// Behind a mutex only so `shutdown` can drop it (closing the channel) through `&self`.
    tx: Mutex<Option<SyncSender<Work>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pool: Arc<SessionPool>,
}

impl Workers {
    pub fn new(pool: Arc<SessionPool>, n: usize) -> Result<Workers, EngineError> {
        let (tx, rx) = sync_channel::<Work>(n);
        // std's Receiver is single-consumer; the mutex makes it a shared work queue. A worker
        // holds it only while waiting for the next job, never while running one.
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (rx, pool) = (rx.clone(), pool.clone());
            let handle = std::thread::Builder::new()
                .name(format!("concur-worker-{i}"))
                .spawn(move || {
                    crate::threads::lower_current_thread(pool.nice());
                    while let Some(work) = next_job(&rx) {
                        // BUSY
                        match work {
                            Work::Batch(job) => pool.run(job),
                            Work::Task(task) => task(),
                        }
                        // IDLE
                    }
                })
                .map_err(EngineError::load)?;
            threads.push(handle);
        }
        Ok(Workers {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            pool,
        })
    }
}

impl Workers {
    /// Queues `work` for a worker; gives it back if the workers are shut down or busy.
    fn send(&self, work: Work) -> Result<(), Work> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else { return Err(work) };
        tx.try_send(work).map_err(|e| match e {
            TrySendError::Full(w) | TrySendError::Disconnected(w) => w,
        })
    }
}

/// What a worker runs: an embedding batch, or a generation step.
enum Work {
    Batch(Job),
    Task(super::Task),
}

/// The next job, or None once the channel is closed and empty.
fn next_job(rx: &Mutex<Receiver<Work>>) -> Option<Work> {
    rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok()
}

impl Dispatch for Workers {
    fn dispatch(&self, job: Job) {
        if let Err(Work::Batch(job)) = self.send(Work::Batch(job)) {
            self.pool
                .fail(job, EngineError::inference("worker queue unavailable"));
        }
    }

    fn run(&self, task: super::Task) {
        // A step that cannot be queued runs on the blocking pool rather than be lost:
        // its sequences are waiting for it.
        if let Err(Work::Task(task)) = self.send(Work::Task(task)) {
            drop(tokio::task::spawn_blocking(task));
        }
    }

    fn shutdown(&self) {
        // Dropping the only sender closes the channel: workers finish queued jobs, then exit.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("an engine worker thread panicked outside a batch");
            }
        }
    }
}
