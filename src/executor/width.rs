//! Parallelism as pure logic: which session widths exist, and how many cores the next
//! batch gets.
//!
//! A batch's *width* is the number of cores its forward pass may use (the ONNX Runtime
//! session's intra-op threads). Wide batches finish sooner (latency); narrow batches side
//! by side finish more work per second (throughput), because one forward pass never scales
//! perfectly over cores. [`choose`] picks from the moment (the idle cores, the queue, the
//! arrival rate and what a pass costs at each width here), so one configuration serves a
//! lone user and a crowd.

use super::cost::Costs;
use crate::config::{ExecutorConfig, Parallelism};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// Sessions of one width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rung {
    /// Cores one forward pass on these sessions uses.
    pub width: usize,
    /// Sessions of this width: enough for the whole budget to run at this width at once.
    pub sessions: usize,
}

/// The session widths the executor loads, narrowest first, and the core budget they share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ladder {
    pub cores: usize,
    pub rungs: Vec<Rung>,
}

impl Ladder {
    /// Fixed: one rung, `sessions` x `intra_op_threads`. Elastic: widths 1, 2, 4, ... and
    /// the whole budget, each with `cores / width` sessions, so that whatever mix of widths
    /// the budget admits, a session of each admitted width is idle.
    pub fn from_config(config: &ExecutorConfig, available_cpus: usize) -> Ladder {
        match config.parallelism {
            Parallelism::Fixed => Ladder {
                cores: config.sessions * config.intra_op_threads,
                rungs: vec![Rung {
                    width: config.intra_op_threads,
                    sessions: config.sessions,
                }],
            },
            Parallelism::Elastic => Ladder::elastic(config.cores.unwrap_or(available_cpus)),
        }
    }

    pub fn elastic(cores: usize) -> Ladder {
        let cores = cores.max(1);
        let mut widths: Vec<usize> = std::iter::successors(Some(1usize), |w| w.checked_mul(2))
            .take_while(|&w| w < cores)
            .collect();
        widths.push(cores);
        Ladder {
            cores,
            rungs: widths
                .into_iter()
                .map(|width| Rung {
                    width,
                    sessions: cores / width,
                })
                .collect(),
        }
    }

    /// The narrowest width: what a batch gets when cores are scarce.
    pub fn narrowest(&self) -> usize {
        self.rungs[0].width
    }

    /// The widest rung no wider than `cores` (the narrowest if none is).
    pub fn fit(&self, cores: usize) -> usize {
        self.rungs
            .iter()
            .rev()
            .find(|r| r.width <= cores)
            .map_or(self.narrowest(), |r| r.width)
    }

    /// Model copies loaded: sessions over all rungs.
    pub fn copies(&self) -> usize {
        self.rungs.iter().map(|r| r.sessions).sum()
    }

    /// Most batches that can run at once: the budget at the narrowest width.
    pub fn max_concurrent(&self) -> usize {
        self.cores / self.narrowest()
    }
}

/// What the width decision knows about the batch about to run and the moment.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    /// Cores idle right now, counting the narrowest share the batcher already holds.
    pub free: usize,
    /// Batches the queue still holds after this one.
    pub pending: usize,
    /// The batch: rows and padded tokens.
    pub rows: usize,
    pub tokens: usize,
    /// Rows arriving per second ([`Arrivals`], the caller's; the executor lowers it to
    /// [`Costs::arrival_rate`] when fewer arrive while batches run) and a typical row's
    /// tokens.
    pub rate: f64,
    pub typical_tokens: usize,
    /// The share of the budget batches kept busy lately ([`Costs::load`]).
    pub load: f64,
}

/// Above this load, a lone batch may take fewer of the idle cores ([`headroom`]).
const FULL_LOAD_FROM: f64 = 0.5;

/// Cores for the batch about to run.
///
/// With batches queued behind it, the idle cores are shared evenly between this batch and
/// those, so none waits for a core that a wide batch took while it was already queued.
///
/// With nothing queued behind it, every width that fits the idle cores is weighed by the
/// time its rows spend in it plus the time it costs the rows expected to arrive while it
/// runs ([`expected_cost`]). Sparse arrivals: the batch takes every idle core and finishes
/// soonest. Dense arrivals: a wide batch would make the next ones wait for it, so it leaves
/// them cores. Where that balance lies depends on what a pass costs at each width on this
/// machine, so the costs are measured ([`Costs`]), not assumed. Before any batch has run,
/// the batch gets every idle core.
pub fn choose(ladder: &Ladder, m: &Moment, costs: &Costs, now: Instant) -> usize {
    let share = ladder.fit(m.free / (1 + m.pending));
    if m.pending > 0 || ladder.rungs.len() == 1 {
        return share;
    }
    let widest = headroom(ladder, m, costs, now);
    let mut best: Option<(f64, usize)> = None;
    for width in ladder
        .rungs
        .iter()
        .map(|r| r.width)
        .filter(|&w| w <= widest)
    {
        let Some(cost) = expected_cost(ladder, m, width, costs, now) else {
            return share;
        };
        // Wider wins ties: the rungs are visited narrowest first.
        if best.is_none_or(|(b, _)| cost <= b) {
            best = Some((cost, width));
        }
    }
    best.map_or(share, |(_, w)| w)
}

/// The widest a lone batch may go: every idle core, unless rows arrive while batches run
/// and the cores are already more than half busy; then fewer, down to the narrowest when
/// they are fully busy.
///
/// The costs alone proved unstable under load. At half the bench's rate (215 rows a second
/// on the 2-core machine) one run in three settled on wide batches: narrow passes were then
/// only ever measured side by side, where they look as slow as wide ones, so nothing
/// pulled the batches back, and the median was 10.5 ms against 6.2 with narrow ones (the
/// cores 71% busy against 58%). The load is measured directly, so it cannot be talked out
/// of that. A closed loop (nothing arriving during runs) keeps every core however busy:
/// one user's batches never wait for each other.
fn headroom(ladder: &Ladder, m: &Moment, costs: &Costs, now: Instant) -> usize {
    let typical = costs
        .estimate(ladder.narrowest(), m.typical_tokens, now)
        .unwrap_or(0.0);
    // Fewer than one arrival in twenty typical passes: nobody to make room for.
    if m.rate * typical < 0.05 || m.load <= FULL_LOAD_FROM {
        return m.free;
    }
    let room = (1.0 - m.load) / (1.0 - FULL_LOAD_FROM);
    ladder.fit(((m.free as f64 * room) as usize).max(ladder.narrowest()))
}

/// Row-seconds the batch costs on `width` cores: its rows wait for it to finish; rows
/// arriving meanwhile either run on the cores it left idle, slower than on all of them, or
/// find none and wait for it (half its run, on average); and core-time it spends beyond
/// what the narrowest width would, delays the work that comes after it ([`excess_delay`]).
/// One batch ahead only: the moment after it is decided when it comes.
fn expected_cost(
    ladder: &Ladder,
    m: &Moment,
    width: usize,
    costs: &Costs,
    now: Instant,
) -> Option<f64> {
    let run = costs.estimate(width, m.tokens, now)?;
    let left = m.free - width;
    let delay = if left >= ladder.narrowest() {
        let beside = costs.estimate(ladder.fit(left), m.typical_tokens, now)?;
        let alone = costs.estimate(ladder.fit(m.free), m.typical_tokens, now)?;
        (beside - alone).max(0.0)
    } else {
        run / 2.0
    };
    let narrow = ladder.narrowest();
    let excess = width as f64 * run - narrow as f64 * costs.estimate(narrow, m.tokens, now)?;
    let typical = costs.estimate(narrow, m.typical_tokens, now)?;
    let later = excess_delay(ladder, m.rate, excess, typical);
    Some(m.rows as f64 * run + m.rate * run * delay + later)
}

/// Row-seconds by which `excess` core-seconds delay the rows arriving after a batch.
///
/// The fixed part of a pass does not spread over cores, so a small batch on two cores can
/// cost more core-time than on one (the server's own batch timings on the 2-core machine:
/// a row of 16 tokens or fewer took a median 2.8 ms on two cores against 3.8 ms on one,
/// 1.5 times the core-time). Under load that excess is capacity lost: the rows that arrive
/// before the cores next fall idle, about `rate × typical / (1 − load)` of them, each start
/// later by the excess shared over the cores. Without this term (and without
/// [`headroom`]) a lone batch went wide at any load where that was faster for it, and in a
/// model of those costs at half the bench's rate the median got longer than with narrow
/// batches, 7.2 ms against 6.9 (results/2core-poisson/sim.py).
fn excess_delay(ladder: &Ladder, rate: f64, excess: f64, typical: f64) -> f64 {
    if excess <= 0.0 {
        return 0.0;
    }
    let cores = ladder.cores as f64;
    // Capped: near saturation the queue, not this estimate, decides (batches share cores).
    let load = (rate * typical / cores).min(0.95);
    let rows_after = rate * typical / (1.0 - load);
    rows_after * excess / cores
}

/// How many rows arrive per second by the clock, and how long they are: exponentially
/// weighted counts whose weight halves every [`Arrivals::HALF_LIFE`].
///
/// The width decision takes the smaller of this rate and the rows arriving while batches
/// run ([`Costs::arrival_rate`]): the latter tells a closed loop (nothing arrives while
/// its batch runs) from a crowd, this one forgets the traffic after a pause.
#[derive(Debug, Clone, Copy)]
pub struct Arrivals {
    /// Weighted rows, and weighted tokens, as of `last`.
    rows: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Arrivals {
    /// Long enough to hold a few dozen arrivals at a rate that matters (a hundred per
    /// second), short enough that a burst (the knowledge base embedded at start) is
    /// forgotten within a second or two.
    const HALF_LIFE: Duration = Duration::from_millis(250);

    pub fn new() -> Arrivals {
        Arrivals {
            rows: 0.0,
            tokens: 0.0,
            last: None,
        }
    }

    fn decayed(&self, now: Instant) -> (f64, f64) {
        let age = self
            .last
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let keep = 0.5f64.powf(age / Self::HALF_LIFE.as_secs_f64());
        (self.rows * keep, self.tokens * keep)
    }

    /// Counts one arriving row of `tokens` tokens.
    pub fn observe(&mut self, tokens: usize, now: Instant) {
        let (rows, sum) = self.decayed(now);
        self.rows = rows + 1.0;
        self.tokens = sum + tokens as f64;
        self.last = Some(now);
    }

    /// Rows per second: the weighted count over the mean age of a weighted arrival.
    pub fn rate(&self, now: Instant) -> f64 {
        let mean_age = Self::HALF_LIFE.as_secs_f64() / std::f64::consts::LN_2;
        self.decayed(now).0 / mean_age
    }

    /// Tokens of a typical recent row (1 before any arrived).
    pub fn typical_tokens(&self) -> usize {
        if self.rows <= 0.0 {
            return 1;
        }
        ((self.tokens / self.rows).round() as usize).max(1)
    }
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals::new()
    }
}

#[cfg(test)]
#[path = "width_tests.rs"]
mod tests;
