//! The engine sessions of every width, shared by all strategies: a job borrows an idle
//! session of its width for its forward pass and puts it back before it is answered.

use super::job::{Context, Job};
use super::width::Ladder;
use crate::engine::{Batch, Engine, EngineError};
use serde::Serialize;
use std::sync::Mutex;

/// What loading the sessions cost, for `/info`.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// Sessions (model copies) loaded, over all widths.
    pub model_copies: usize,
    /// Resident memory the process gained while loading them (pre-packed weights are
    /// shared, so copies after the first cost far less than the first).
    pub sessions_rss_bytes: u64,
    /// `processes` only: the server's and each child's resident memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<super::processes::ProcessFootprint>,
}

struct Rung {
    width: usize,
    /// A std mutex, not a tokio one: it is held only to push or pop, never across the
    /// forward pass or an `.await`.
    idle: Mutex<Vec<Box<dyn Engine>>>,
}

pub(super) struct SessionPool {
    rungs: Vec<Rung>,
    footprint: Footprint,
    ctx: Context,
}

impl SessionPool {
    /// Loads every session of `ladder`.
    pub fn new(ladder: &Ladder, ctx: Context) -> Result<SessionPool, EngineError> {
        let before = resident_bytes();
        let rungs = ladder
            .rungs
            .iter()
            .map(|r| {
                let engines = (0..r.sessions)
                    .map(|_| (ctx.factory)(r.width))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rung {
                    width: r.width,
                    idle: Mutex::new(engines),
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let footprint = Footprint {
            model_copies: ladder.copies(),
            sessions_rss_bytes: resident_bytes().saturating_sub(before),
            processes: None,
        };
        Ok(SessionPool {
            rungs,
            footprint,
            ctx,
        })
    }

    pub fn footprint(&self) -> &Footprint {
        &self.footprint
    }

    /// Runs one short input through every session, here: the first forward pass of a
    /// session allocates its buffers, which a reload must not leave to a live request.
    pub fn warm(&self) -> Result<(), EngineError> {
        // [CLS] hello [SEP]
        let batch = Batch {
            rows: vec![vec![101, 7592, 102]],
        };
        for rung in &self.rungs {
            let mut idle = rung.idle.lock().unwrap_or_else(|p| p.into_inner());
            for engine in idle.iter_mut() {
                engine.embed(&batch)?;
            }
        }
        Ok(())
    }

    /// The nice value for threads that run this pool's jobs.
    pub fn nice(&self) -> i32 {
        self.ctx.nice
    }

    /// Answers `job` with `error` without running it.
    pub fn fail(&self, job: Job, error: EngineError) {
        job.fail(error, &self.ctx.metrics);
    }

    /// Runs `job` on the calling thread with an idle session of the job's width.
    pub fn run(&self, job: Job) {
        let width = job.width();
        let Some(rung) = self.rungs.iter().find(|r| r.width == width) else {
            return self.fail(
                job,
                EngineError::inference(format!("no session of width {width}")),
            );
        };
        // The core budget admits a job only when a session of its width is idle.
        let engine = rung.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(mut engine) = engine else {
            let error = EngineError::inference(format!("no idle session of width {width}"));
            return self.fail(job, error);
        };
        let finished = self.ctx.run(&mut engine, job);
        // Back in the pool before the cores are freed: the next job must find it there.
        rung.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(engine);
        finished.complete();
    }
}

/// The process's resident set size, from /proc/self/statm (0 where unavailable).
pub fn resident_bytes() -> u64 {
    resident_bytes_of("self")
}

/// The resident set size of process `pid` ("self" or a number), 0 where unavailable.
pub(super) fn resident_bytes_of(pid: &str) -> u64 {
    let pages = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
