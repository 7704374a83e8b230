//! `processes`: each batch runs in a child process of this same binary (`concur __worker`),
//! one child per batch the core budget admits at once, each with its own session of every
//! width, fed over a Unix socket ([`ipc`]). Python's `multiprocessing` model, where Rust
//! has no GIL to escape: what it costs is a model copy per child and a socket round trip
//! per batch; what it buys is crash isolation. A segfault, abort or OOM kill inside ONNX
//! Runtime takes down one child, whose batch is retried once on another, and the child is
//! respawned (`slot`).
//!
//! - `spawn`: starting a child (socketpair, `PR_SET_PDEATHSIG`, setup, hello).
//! - `slot`: one supervisor thread per child: feeds it, notices its death, respawns it.
//! - `child`: the child's own main loop.

mod child;
/// The wire format; public for `examples/ipc.rs`, which measures its cost alone.
#[doc(hidden)]
pub mod ipc;
mod slot;
mod spawn;

pub use child::worker_main;

use super::job::{Context, Job};
use super::pool::{resident_bytes, Footprint};
use super::width::Ladder;
use super::Dispatch;
use crate::config::{ExecutorConfig, Variant};
use crate::engine::EngineError;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the children cost in memory, for `/info`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFootprint {
    /// The server's own resident memory once the children were up (no model in it).
    pub parent_rss_bytes: u64,
    /// Each child's resident memory once its sessions were loaded, by slot.
    pub children_rss_bytes: Vec<u64>,
}

/// A job, and whether it already ran on a child that died under it.
struct Queued {
    job: Job,
    retried: bool,
}

struct Queue {
    jobs: VecDeque<Queued>,
    closed: bool,
}

/// What the dispatcher and every slot thread share.
pub(super) struct Shared {
    /// A std mutex: held only to push or pop, never across a batch or a wait on a child.
    queue: Mutex<Queue>,
    /// Slot threads whose child is up and idle wait here for a job (or for shutdown).
    work: Condvar,
    ctx: Context,
    /// Children up (hello received, death not yet noticed): whether a retry has somewhere
    /// to go. Atomic: read by the dispatcher, written by slot threads.
    up: AtomicUsize,
    /// Slots down after crashing several times in a row, backing off.
    looping: AtomicUsize,
}

/// What a slot thread gets when it asks for work.
enum Take {
    Job(Queued),
    /// Nothing arrived within the tick: time to check on the child.
    Idle,
    /// Shut down and nothing left to run.
    Closed,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, tick: Duration) -> Take {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                return Take::Job(job);
            }
            if queue.closed {
                return Take::Closed;
            }
            let (guard, wait) = self
                .work
                .wait_timeout(queue, tick)
                .unwrap_or_else(|p| p.into_inner());
            queue = guard;
            if wait.timed_out() && queue.jobs.is_empty() && !queue.closed {
                return Take::Idle;
            }
        }
    }

    /// Queues a job for the next idle child; a retry goes first.
    fn push(&self, queued: Queued) {
        let mut queue = self.lock();
        if queue.closed {
            drop(queue);
            let error = EngineError::inference("the worker processes are shut down");
            return queued.job.fail(error, &self.ctx.metrics);
        }
        if queued.retried {
            queue.jobs.push_front(queued);
        } else {
            queue.jobs.push_back(queued);
        }
        drop(queue);
        self.work.notify_one();
    }

    /// Fails every queued job: no child is up to run them.
    fn fail_queued(&self, why: &str) {
        let jobs = std::mem::take(&mut self.lock().jobs);
        for queued in jobs {
            let error = EngineError::inference(format!("no worker process is running: {why}"));
            queued.job.fail(error, &self.ctx.metrics);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

pub(super) struct Processes {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Processes {
    /// Starts one child per batch the budget admits at once and waits until each has
    /// loaded its sessions; fails (stopping those that started) if any cannot.
    pub fn start(
        config: &ExecutorConfig,
        ladder: &Ladder,
        ctx: Context,
    ) -> Result<(Processes, Footprint), EngineError> {
        let spec = Arc::new(spec(config, ladder, ctx.nice)?);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            work: Condvar::new(),
            ctx,
            up: AtomicUsize::new(0),
            looping: AtomicUsize::new(0),
        });
        let children = ladder.max_concurrent();
        let (started, hellos) = mpsc::channel();
        let mut threads = Vec::with_capacity(children);
        for index in 0..children {
            let (shared, spec, started) = (shared.clone(), spec.clone(), started.clone());
            let thread = std::thread::Builder::new()
                .name(format!("concur-child-{index}"))
                .spawn(move || slot::run(index, shared, spec, started));
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!("cannot start a child supervisor thread: {e}"),
            }
        }
        drop(started);
        let processes = Processes {
            shared,
            threads: Mutex::new(threads),
        };
        // Each slot answers once: its child's hello, or why it could not start.
        let mut rss = vec![0u64; children];
        let mut failures = Vec::new();
        for (index, hello) in hellos {
            match hello {
                Ok(hello) => {
                    rss[index] = hello.rss_bytes;
                    crate::engine::note_onnxruntime_version(&hello.onnxruntime);
                }
                Err(e) => failures.push(format!("child {index}: {e}")),
            }
        }
        let up = processes.shared.up.load(Ordering::SeqCst);
        if !failures.is_empty() || up < children {
            processes.shutdown();
            failures.push(format!("{up} of {children} worker processes started"));
            return Err(EngineError::load(failures.join("; ")));
        }
        let footprint = Footprint {
            model_copies: children * ladder.rungs.len(),
            sessions_rss_bytes: rss.iter().sum(),
            processes: Some(ProcessFootprint {
                parent_rss_bytes: resident_bytes(),
                children_rss_bytes: rss,
            }),
        };
        Ok((processes, footprint))
    }
}

/// How every child is started: the executable, and the setup it is sent.
fn spec(config: &ExecutorConfig, ladder: &Ladder, nice: i32) -> Result<spawn::Spec, EngineError> {
    let model = config.processes.model.as_ref().ok_or_else(|| {
        EngineError::load("the processes strategy needs the [model] section in its config")
    })?;
    let library = crate::engine::resolve_ort_library(model.ort_library.as_deref())?;
    let exe = match &config.processes.worker_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().map_err(EngineError::load)?,
    };
    Ok(spawn::Spec {
        exe,
        setup: ipc::Setup {
            model_dir: model.dir.clone(),
            variant: match model.variant {
                Variant::Fp32 => "fp32".into(),
                Variant::Int8 => "int8".into(),
            },
            max_seq_length: model.max_seq_length,
            ort_library: std::fs::canonicalize(&library).unwrap_or(library),
            widths: ladder.rungs.iter().map(|r| r.width).collect(),
            inter_op_threads: config.inter_op_threads,
            intra_op_spinning: config.intra_op_spinning,
            nice,
        },
        batch_timeout: config.processes.batch_timeout,
    })
}

impl Dispatch for Processes {
    fn dispatch(&self, job: Job) {
        let shared = &self.shared;
        if shared.up.load(Ordering::SeqCst) == 0 && shared.looping.load(Ordering::SeqCst) > 0 {
            let error = EngineError::inference("no worker process is running (crash-looping)");
            return job.fail(error, &shared.ctx.metrics);
        }
        shared.push(Queued {
            job,
            retried: false,
        });
    }

    fn shutdown(&self) {
        // Slot threads run what is queued, then close their child's socket and reap it.
        self.shared.close();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a child supervisor thread panicked");
            }
        }
    }
}

impl Drop for Processes {
    /// Without a `shutdown` (e.g. start-up failed later on), slot threads still stop
    /// their children once the queue is empty.
    fn drop(&mut self) {
        self.shared.close();
    }
}
