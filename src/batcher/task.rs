//! The batcher actor: owns the queue, forms batches when a core is idle, picks their
//! width, dispatches.

use super::queue::{DropReason, Policy, Queue};
use super::{BatchError, Embedded, Entry, Reply};
use crate::admission::{Admission, AdmitError};
use crate::config::BatchingConfig;
use crate::engine::{Batch, EngineError, TokenIds};
use crate::executor::width::{Arrivals, Moment};
use crate::executor::{Cores, Executor, Job};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why inputs could not be queued.
pub type SubmitError = AdmitError;

/// A cheap, clonable handle for submitting inputs to the batcher.
///
/// The batcher runs until every handle is dropped and its queue is empty: dropping the last
/// handle is the "all done" signal of a graceful shutdown.
#[derive(Clone)]
pub struct BatcherHandle {
    /// Unbounded only in type: [`Admission`] caps what may be in it.
    tx: mpsc::UnboundedSender<Entry>,
    control: mpsc::UnboundedSender<Swap>,
    admission: Admission,
}

/// A live reconfiguration: the executor and batching policy the batcher uses from now on.
struct Swap {
    executor: Arc<Executor>,
    batching: BatchingConfig,
    /// Gets the executor it replaced, whose batches in flight are still running there.
    replaced: oneshot::Sender<Arc<Executor>>,
}

impl BatcherHandle {
    /// Queues every input of one request, or none of them when the queue is full.
    pub fn submit(
        &self,
        rows: Vec<TokenIds>,
        deadline: Instant,
    ) -> Result<Vec<oneshot::Receiver<Reply>>, SubmitError> {
        let mut permit = self.admission.try_admit(rows.len())?;
        let now = Instant::now();
        let mut receivers = Vec::with_capacity(rows.len());
        for tokens in rows {
            let (reply, rx) = oneshot::channel();
            let share = permit.split(1).expect("one permit per input was acquired");
            let entry = Entry {
                tokens,
                enqueued_at: now,
                deadline,
                reply,
                permit: share,
            };
            self.tx.send(entry).map_err(|_| AdmitError::Closed)?;
            receivers.push(rx);
        }
        Ok(receivers)
    }

    /// Switches the batcher to `executor` and `batching`, between two batches: inputs
    /// queued now go to the new executor. Returns the old one (its batches in flight still
    /// finish there) or None when the batcher has stopped.
    pub async fn swap(
        &self,
        executor: Arc<Executor>,
        batching: &BatchingConfig,
    ) -> Option<Arc<Executor>> {
        let (replaced, rx) = oneshot::channel();
        let swap = Swap {
            executor,
            batching: batching.clone(),
            replaced,
        };
        self.control.send(swap).ok()?;
        rx.await.ok()
    }
}

/// Starts the batcher task on `tracker`. After `stop` it accepts no new inputs, batches
/// what is queued, and ends.
pub fn spawn(
    config: &BatchingConfig,
    executor: Arc<Executor>,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> BatcherHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (control, control_rx) = mpsc::unbounded_channel();
    let admission = Admission::new(config.queue_capacity, metrics.clone());
    let batcher = Batcher {
        policy: Policy::from_config(config),
        max_wait: config.max_wait,
        executor,
        metrics,
        admission: admission.clone(),
        arrivals: Arrivals::new(),
    };
    tracker.spawn(batcher.run(rx, control_rx, stop));
    BatcherHandle {
        tx,
        control,
        admission,
    }
}

struct Batcher {
    policy: Policy,
    max_wait: Duration,
    executor: Arc<Executor>,
    metrics: Arc<Metrics>,
    admission: Admission,
    /// The arrival rate and row lengths the width decision weighs; kept across reloads,
    /// since the traffic does not change with the configuration.
    arrivals: Arrivals,
}

impl Batcher {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Entry>,
        mut control: mpsc::UnboundedReceiver<Swap>,
        stop: CancellationToken,
    ) {
        let mut queue: Queue<Entry> = Queue::default();
        let mut cores: Option<Cores> = None;
        let mut open = true;
        loop {
            let now = Instant::now();
            self.drop_dead(&mut queue, now);
            if queue.is_empty() && !open {
                break;
            }
            if cores.is_some() && self.ready(&queue, now, open) {
                let entries = queue.take_batch(&self.policy);
                let mut held = cores.take().expect("checked above");
                // Parallelism: the batch's width, from what is still queued behind it
                // and what is arriving.
                let moment = self.moment(&entries, &queue, now);
                self.executor.widen(&mut held, moment);
                self.dispatch(held, entries);
                continue;
            }
            let wake = self.next_wake(&queue, cores.is_some());
            tokio::select! {
                // New work: take everything already sent, so one wake sees a whole burst.
                entry = rx.recv(), if open => match entry {
                    Some(e) => {
                        self.arrive(&mut queue, e);
                        while let Ok(e) = rx.try_recv() {
                            self.arrive(&mut queue, e);
                        }
                    }
                    None => open = false,
                },
                // An idle core: reserved before the batch is formed, so batches wait
                // for the engine instead of piling up, and the queue keeps inputs where
                // length-aware grouping can still see them. Only once there is work: a
                // core held by an idle batcher is one a generation step, which waits
                // for all of its cores at once, would wait for forever.
                c = self.executor.reserve(), if cores.is_none() && !queue.is_empty() => {
                    cores = Some(c)
                }
                // A reload: cores held on the old executor go back to it unused.
                Some(swap) = control.recv() => {
                    cores = None;
                    self.apply(swap);
                }
                // Shutdown: refuse new inputs; what was sent is still received, then None.
                () = stop.cancelled(), if open && !rx.is_closed() => rx.close(),
                // The oldest input has waited max_wait, or a deadline is due.
                () = sleep_until(wake), if wake.is_some() => {}
            }
        }
    }

    fn arrive(&mut self, queue: &mut Queue<Entry>, entry: Entry) {
        self.arrivals.observe(entry.tokens.len(), entry.enqueued_at);
        self.executor.arrived(1);
        queue.push(entry);
    }

    /// The batch about to run and the moment, for its width (the idle cores and the load
    /// are the executor's to know).
    fn moment(&self, batch: &[Entry], queue: &Queue<Entry>, now: Instant) -> Moment {
        let longest = batch.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
        Moment {
            free: 0,
            pending: queue.pending_batches(&self.policy),
            rows: batch.len(),
            tokens: longest * batch.len(),
            rate: self.arrivals.rate(now),
            typical_tokens: self.arrivals.typical_tokens(),
            load: 0.0,
        }
    }

    fn apply(&mut self, swap: Swap) {
        self.policy = Policy::from_config(&swap.batching);
        self.max_wait = swap.batching.max_wait;
        self.admission.resize(swap.batching.queue_capacity);
        let old = std::mem::replace(&mut self.executor, swap.executor);
        let _ = swap.replaced.send(old);
    }

    /// Whether to form a batch now rather than wait for company.
    fn ready(&self, queue: &Queue<Entry>, now: Instant, open: bool) -> bool {
        let Some(oldest) = queue.oldest() else {
            return false;
        };
        !open
            || self.max_wait.is_zero()
            || oldest + self.max_wait <= now
            || queue.is_full(&self.policy)
    }

    fn next_wake(&self, queue: &Queue<Entry>, have_cores: bool) -> Option<Instant> {
        let wait_done = queue
            .oldest()
            .filter(|_| have_cores && !self.max_wait.is_zero())
            .map(|t| t + self.max_wait);
        [wait_done, queue.earliest_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Answers expired entries and forgets cancelled ones: neither reaches the engine.
    fn drop_dead(&self, queue: &mut Queue<Entry>, now: Instant) {
        let dropped = queue.prune(now);
        if dropped.is_empty() {
            return;
        }
        for (entry, reason) in dropped {
            if reason == DropReason::Expired {
                let _ = entry.reply.send(Err(BatchError::Expired));
            }
        }
        self.admission.report_depth();
    }

    fn dispatch(&self, cores: Cores, entries: Vec<Entry>) {
        let now = Instant::now();
        let mut rows = Vec::with_capacity(entries.len());
        let mut waiters = Vec::with_capacity(entries.len());
        for e in entries {
            let wait = now - e.enqueued_at;
            self.metrics.queue_wait.observe(wait.as_secs_f64());
            rows.push(e.tokens);
            waiters.push((e.reply, wait));
            // e.permit drops here: the input has left the queue.
        }
        self.admission.report_depth();
        let batch = Batch { rows };
        let padded = batch.padded_tokens();
        self.metrics.batch_size.observe(batch.rows.len() as f64);
        self.metrics.batch_tokens.observe(padded as f64);
        let waste = 1.0 - batch.real_tokens() as f64 / padded.max(1) as f64;
        self.metrics.padding_ratio.observe(waste);
        let done = Box::new(move |result, elapsed| fan_out(waiters, result, elapsed));
        self.executor.dispatch(cores, Job::new(batch, done));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends each row's vector to the input it came from, or the batch's error to all of them.
fn fan_out(
    waiters: Vec<(oneshot::Sender<Reply>, Duration)>,
    result: Result<Vec<Vec<f32>>, EngineError>,
    inference: Duration,
) {
    let batch_size = waiters.len();
    let result = result.and_then(|v| {
        if v.len() == batch_size {
            Ok(v)
        } else {
            Err(EngineError::inference(format!(
                "engine returned {} rows for a batch of {batch_size}",
                v.len()
            )))
        }
    });
    match result {
        Ok(vectors) => {
            for ((reply, queue_wait), vector) in waiters.into_iter().zip(vectors) {
                // A closed receiver means the client left mid-inference; nothing to do.
                let _ = reply.send(Ok(Embedded {
                    vector,
                    queue_wait,
                    inference,
                    batch_size,
                }));
            }
        }
        Err(e) => {
            for (reply, _) in waiters {
                let _ = reply.send(Err(BatchError::Engine(e.clone())));
            }
        }
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
