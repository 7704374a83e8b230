//! The child's side of `processes`: `concur __worker --fd N --parent PID`. It loads one
//! session per width, says hello, then answers batches until its socket closes.
//!
//! It never outlives the server: the parent set `PR_SET_PDEATHSIG` (SIGKILL) between fork
//! and exec, this checks the parent did not die before that took effect, and EOF on the
//! socket (the parent closed it, or died) ends the loop.

use super::ipc::{Hello, Reply, Request, Setup};
use crate::config::{Config, Variant};
use crate::engine::{Batch, Engine, EngineError, OnnxEngine, SharedWeights};
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Runs the child until its socket closes; returns the process exit code.
pub fn worker_main(fd: RawFd, parent: u32) -> i32 {
    // SAFETY: prctl and getppid have no memory-safety preconditions.
    let orphaned = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::getppid() as u32 != parent
    };
    if orphaned {
        tracing::error!("worker: the server {parent} is gone; exiting");
        return 1;
    }
    if fd < 0 {
        tracing::error!("worker: invalid --fd {fd}");
        return 2;
    }
    // SAFETY: the parent passed the child's end of a socketpair as this descriptor, and
    // nothing else in this process owns it.
    let socket = unsafe { UnixStream::from_raw_fd(fd) };
    match serve(socket) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("worker {}: {e}", std::process::id());
            3
        }
    }
}

fn serve(mut socket: UnixStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let setup = match Request::read(&mut socket, &mut buf)? {
        Request::Setup(setup) => setup,
        Request::Batch { .. } => return Err(io::Error::other("a batch before the setup")),
    };
    // Set before loading: threads ONNX Runtime starts inherit it.
    crate::threads::lower_current_thread(setup.nice);
    let mut engines = match load(&setup) {
        Ok(engines) => engines,
        Err(e) => {
            Reply::LoadFailed(e.to_string()).write(&mut socket, &mut buf)?;
            return Err(io::Error::other(e.to_string()));
        }
    };
    let hello = Hello {
        pid: std::process::id(),
        rss_bytes: super::super::pool::resident_bytes(),
        onnxruntime: crate::engine::onnxruntime_version(),
    };
    Reply::Hello(hello).write(&mut socket, &mut buf)?;
    loop {
        let (width, batch) = match Request::read(&mut socket, &mut buf) {
            Ok(Request::Batch { width, batch }) => (width, batch),
            Ok(Request::Setup(_)) => return Err(io::Error::other("a second setup")),
            // The server closed the socket: shut down, or it died.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let (reply, panicked) = run(&mut engines, width, &batch);
        reply.write(&mut socket, &mut buf)?;
        if panicked {
            // The session's state is unknown: a fresh child replaces this one.
            return Err(io::Error::other("the engine panicked; exiting"));
        }
    }
}

/// One session per width, sharing pre-packed weights.
fn load(setup: &Setup) -> Result<Vec<(usize, OnnxEngine)>, EngineError> {
    let mut config = Config::default();
    let model = &mut config.model;
    model.dir = setup.model_dir.clone();
    model.variant = match setup.variant.as_str() {
        "int8" => Variant::Int8,
        _ => Variant::Fp32,
    };
    model.max_seq_length = setup.max_seq_length;
    model.ort_library = Some(setup.ort_library.clone());
    let exec = &mut config.executor;
    exec.inter_op_threads = setup.inter_op_threads;
    exec.intra_op_spinning = setup.intra_op_spinning;
    exec.inference_nice = setup.nice;
    let shared = SharedWeights::new();
    setup
        .widths
        .iter()
        .map(|&w| OnnxEngine::load(&config.model, &config.executor, w, &shared).map(|e| (w, e)))
        .collect()
}

/// Runs one batch; the bool says whether the engine panicked.
fn run(engines: &mut [(usize, OnnxEngine)], width: usize, batch: &Batch) -> (Reply, bool) {
    let Some((_, engine)) = engines.iter_mut().find(|(w, _)| *w == width) else {
        let message = format!("no session of width {width} in this worker");
        return (
            Reply::BatchFailed {
                panicked: false,
                message,
            },
            false,
        );
    };
    let start = Instant::now();
    match catch_unwind(AssertUnwindSafe(|| engine.embed(batch))) {
        Ok(Ok(vectors)) => (
            Reply::Vectors {
                compute: start.elapsed(),
                vectors,
            },
            false,
        ),
        Ok(Err(e)) => (
            Reply::BatchFailed {
                panicked: false,
                message: e.to_string(),
            },
            false,
        ),
        Err(_) => (
            Reply::BatchFailed {
                panicked: true,
                message: EngineError::Panicked.to_string(),
            },
            true,
        ),
    }
}
