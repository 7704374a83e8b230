//! One supervisor thread per child: it takes jobs from the shared queue while its child is
//! up, runs them over the socket, notices the child's death (EOF mid-batch at once, an
//! idle death within a tick), retries the batch once elsewhere, and respawns the child,
//! backing off when it keeps crashing.

use super::ipc::{self, Hello, Reply};
use super::spawn::{describe, Child, Spec};
use super::{Queued, Shared, Take};
use crate::engine::EngineError;
use crate::executor::job::Job;
use crate::metrics::Metrics;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle slot checks that its child still runs (and refreshes its RSS).
const TICK: Duration = Duration::from_millis(50);
const RSS_EVERY: Duration = Duration::from_secs(1);
/// How long a child may take to exit once its socket closed, before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// A child that lived this long, or answered a batch, was not crash-looping.
const STABLE: Duration = Duration::from_secs(10);
/// Deaths in a row after which the slot counts as crash-looping (`/ready` answers 503).
const CRASH_LOOP: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Slot {
    index: usize,
    shared: Arc<Shared>,
    spec: Arc<Spec>,
    /// Deaths (or failed starts) in a row with no batch answered in between.
    failures: u32,
    /// Whether this slot is counted in `Shared::looping`.
    looping: bool,
    /// Whether the current child has answered a batch.
    answered: bool,
}

/// Starts the slot's first child, reports its hello (or failure) on `started`, then
/// supervises it until shutdown.
pub(super) fn run(
    index: usize,
    shared: Arc<Shared>,
    spec: Arc<Spec>,
    started: Sender<(usize, Result<Hello, String>)>,
) {
    let mut slot = Slot {
        index,
        shared,
        spec,
        failures: 0,
        looping: false,
        answered: false,
    };
    let mut child = match Child::start(&slot.spec) {
        Ok(child) => child,
        Err(e) => {
            let _ = started.send((index, Err(e)));
            return;
        }
    };
    slot.came_up(&child);
    let _ = started.send((index, Ok(child.hello.clone())));
    drop(started);
    loop {
        let death = slot.serve(&mut child);
        slot.went_down(&child);
        let Some((why, job)) = death else {
            let status = child.stop(GRACE);
            tracing::debug!(
                child = index,
                pid = child.pid(),
                "worker {}",
                describe(status)
            );
            break;
        };
        tracing::warn!(
            child = index,
            pid = child.pid(),
            "worker process {why}; respawning"
        );
        // Not up any more: a retry goes to another child, or nowhere.
        if let Some(job) = job {
            slot.retry_or_fail(job, &why);
        }
        match slot.respawn() {
            Some(next) => child = next,
            None => break,
        }
    }
    slot.set_looping(false);
}

impl Slot {
    fn metrics(&self) -> &Metrics {
        &self.shared.ctx.metrics
    }

    fn came_up(&mut self, child: &Child) {
        self.answered = false;
        self.set_looping(false);
        let t = Some(self.spec.batch_timeout);
        if let Err(e) = (child.socket.set_read_timeout(t)).and(child.socket.set_write_timeout(t)) {
            tracing::warn!(child = self.index, "cannot set the batch timeout: {e}");
        }
        self.shared.up.fetch_add(1, Ordering::SeqCst);
        self.metrics().processes.children.inc();
        self.report_rss(child);
    }

    fn went_down(&mut self, child: &Child) {
        self.shared.up.fetch_sub(1, Ordering::SeqCst);
        let m = self.metrics();
        m.processes.children.dec();
        let _ = m
            .processes
            .child_rss
            .remove_label_values(&[&self.index.to_string()]);
        if self.answered || child.started.elapsed() >= STABLE {
            self.failures = 0;
        }
    }

    fn report_rss(&self, child: &Child) {
        let rss = super::super::pool::resident_bytes_of(&child.pid().to_string());
        self.metrics()
            .processes
            .child_rss
            .with_label_values(&[&self.index.to_string()])
            .set(rss as i64);
    }

    /// Runs jobs on `child` until shutdown (None) or its death: why it died, and the job
    /// it was running if any.
    fn serve(&mut self, child: &mut Child) -> Option<(String, Option<Queued>)> {
        let mut rss_at = Instant::now();
        loop {
            if rss_at.elapsed() >= RSS_EVERY {
                self.report_rss(child);
                rss_at = Instant::now();
            }
            match self.shared.take(TICK) {
                Take::Closed => return None,
                Take::Idle => {
                    if let Ok(Some(status)) = child.process.try_wait() {
                        let why = format!("died while idle: {}", describe(Some(status)));
                        return Some((why, None));
                    }
                }
                Take::Job(queued) => {
                    if let Err((queued, why)) = self.run_job(child, queued) {
                        return Some((why, Some(queued)));
                    }
                }
            }
        }
    }

    /// Runs one job on `child`. Err: the child died or hung (and was killed) under it.
    fn run_job(&mut self, child: &mut Child, queued: Queued) -> Result<(), (Queued, String)> {
        let width = queued.job.width();
        let m = self.shared.ctx.metrics.clone();
        m.busy_workers.inc();
        m.cores.busy.add(width as i64);
        let start = Instant::now();
        let exchange = exchange(child, width, &queued.job);
        let elapsed = start.elapsed();
        m.busy_workers.dec();
        m.cores.busy.sub(width as i64);
        let (reply, sent, received) = match exchange {
            Ok(done) => done,
            Err(e) => return Err((queued, self.lost(child, &e))),
        };
        let result = match reply {
            Reply::Vectors { compute, vectors } => {
                let p = &m.processes;
                p.ipc_seconds
                    .observe(elapsed.saturating_sub(compute).as_secs_f64());
                p.ipc_bytes
                    .with_label_values(&["to_child"])
                    .observe(sent as f64);
                p.ipc_bytes
                    .with_label_values(&["from_child"])
                    .observe(received as f64);
                self.answered = true;
                self.failures = 0;
                Ok(vectors)
            }
            // A child whose engine panicked exits after this answer; the next tick sees it.
            Reply::BatchFailed { panicked: true, .. } => Err(EngineError::Panicked),
            Reply::BatchFailed { message, .. } => Err(EngineError::inference(message)),
            Reply::Hello(_) | Reply::LoadFailed(_) => {
                let status = child.kill();
                let why = format!(
                    "sent an unexpected reply and was killed ({})",
                    describe(status)
                );
                return Err((queued, why));
            }
        };
        finish(&m, queued.job, width, result, elapsed);
        Ok(())
    }

    /// Why `child` was lost mid-batch: it died (EOF) or hung past the timeout (killed now).
    fn lost(&self, child: &mut Child, e: &io::Error) -> String {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            let status = child.kill();
            let timeout = self.spec.batch_timeout;
            return format!(
                "did not answer a batch within {timeout:?} and was killed ({})",
                describe(status)
            );
        }
        let status = child.reap(Duration::from_secs(1));
        format!("died mid-batch ({e}): {}", describe(status))
    }

    /// Puts a batch whose child died back in the queue, first in line, if it has not been
    /// retried yet and a child can take it soon: another one is up, or this slot's
    /// replacement starts at once (its first death in a while). Fails it (500) otherwise.
    fn retry_or_fail(&self, queued: Queued, why: &str) {
        let soon =
            self.shared.up.load(Ordering::SeqCst) > 0 || backoff(self.failures + 1).is_zero();
        if !queued.retried && soon {
            tracing::warn!(child = self.index, "retrying its batch on another child");
            return self.shared.push(Queued {
                job: queued.job,
                retried: true,
            });
        }
        let reason = if queued.retried {
            "and it had been retried once already"
        } else {
            "and no worker process could retry it soon"
        };
        let error = EngineError::inference(format!("the worker process {why}, {reason}"));
        queued.job.fail(error, self.metrics());
    }

    /// Starts a replacement for `dead`, backing off while starts keep failing. None at
    /// shutdown.
    fn respawn(&mut self) -> Option<Child> {
        loop {
            self.failures += 1;
            let delay = backoff(self.failures);
            if self.failures >= CRASH_LOOP && !self.looping {
                tracing::error!(
                    child = self.index,
                    failures = self.failures,
                    "worker process keeps crashing; backing off {delay:?} between starts"
                );
                self.set_looping(true);
            }
            if !self.sleep(delay) {
                return None;
            }
            self.metrics().worker_restarts.inc();
            match Child::start(&self.spec) {
                Ok(child) => {
                    tracing::info!(
                        child = self.index,
                        pid = child.pid(),
                        "worker process respawned"
                    );
                    self.came_up(&child);
                    return Some(child);
                }
                Err(e) => {
                    tracing::error!(child = self.index, "worker process failed to start: {e}");
                    if self.shared.up.load(Ordering::SeqCst) == 0 {
                        self.shared.fail_queued(&e);
                    }
                }
            }
        }
    }

    /// Sleeps `delay` unless shutdown comes first; false at shutdown.
    fn sleep(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.shared.is_closed() {
                return false;
            }
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        !self.shared.is_closed()
    }

    fn set_looping(&mut self, looping: bool) {
        if looping == self.looping {
            return;
        }
        self.looping = looping;
        let gauge = &self.shared.ctx.metrics.processes.crash_looping;
        if looping {
            self.shared.looping.fetch_add(1, Ordering::SeqCst);
            gauge.inc();
        } else {
            self.shared.looping.fetch_sub(1, Ordering::SeqCst);
            gauge.dec();
        }
    }
}

/// Sends a job's batch and reads the answer: (reply, bytes sent, bytes read).
fn exchange(child: &mut Child, width: usize, job: &Job) -> io::Result<(Reply, usize, usize)> {
    let sent = ipc::write_batch(&mut child.socket, &mut child.buf, width, &job.batch)?;
    let (reply, received) = Reply::read(&mut child.socket, &mut child.buf)?;
    Ok((reply, sent, received))
}

/// The first respawn is at once; then 250 ms, doubling, up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let doublings = (failures - 2).min(16);
    (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Accounts a batch a child answered, as `Context::run` does for in-process strategies,
/// frees its cores, then fans out the result.
fn finish(
    m: &Metrics,
    job: Job,
    width: usize,
    result: Result<Vec<Vec<f32>>, EngineError>,
    elapsed: Duration,
) {
    m.cores.record_batch(width, elapsed);
    if result.is_err() {
        m.batch_failures.inc();
    }
    m.inference.observe(elapsed.as_secs_f64());
    m.inflight_batches.dec();
    let Job { done, cores, .. } = job;
    drop(cores);
    done(result, elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_then_doubles_to_a_cap() {
        let ms = |f| backoff(f).as_millis();
        assert_eq!([1, 2, 3, 4, 5].map(ms), [0, 250, 500, 1000, 2000]);
        assert_eq!(ms(30), MAX_BACKOFF.as_millis());
    }
}
