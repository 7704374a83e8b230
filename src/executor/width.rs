//! Parallelism as pure logic: which session widths exist, and how many cores the next
//! batch gets.
//!
//! A batch's *width* is the number of cores its forward pass may use (the ONNX Runtime
//! session's intra-op threads). Wide batches finish sooner (latency); narrow batches side
//! by side finish more work per second (throughput), because one forward pass never scales
//! perfectly over cores. [`choose`] picks from the moment, so one configuration serves a
//! lone user and a crowd.

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

/// Cores for the batch about to run.
///
/// `free`: cores idle right now, counting the narrowest share the batcher already holds.
/// `pending`: batches the queue still holds after this one. The idle cores are shared
/// evenly between this batch and those, so a batch alone on an idle machine gets all of
/// them and a batch with company leaves cores for the next one. Nobody waits for a core
/// that a wide batch took while they were already queued.
///
/// `demand`: how many batches have recently shared the budget ([`Demand`]). A batch never
/// gets more than its share of the whole budget under that demand, so with many users on
/// many cores a momentarily idle machine is not handed to one batch while the next
/// arrivals, a few milliseconds away, would then find no core.
pub fn choose(ladder: &Ladder, free: usize, pending: usize, demand: f64) -> usize {
    let now = free / (1 + pending);
    // Rounded, not floored: an average of 1.1 batches means a batch is mostly alone. With
    // floor, any trace of an earlier burst left in the average (an EWMA reaches 1.0 only
    // in the limit) kept a lone batch on 2 cores at width 1 for good.
    let share = (ladder.cores as f64 / demand.max(1.0)).round() as usize;
    ladder.fit(now.min(share.max(1)))
}

/// A moving average of the batches sharing the budget, sampled at each dispatch (those
/// running, this one, and those still queued behind it).
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    value: f64,
    last: Option<Instant>,
}

impl Demand {
    /// Weight of the newest sample under load: about the last ten batches count.
    const ALPHA: f64 = 0.1;
    /// After a pause the newest sample weighs more, 1 - e^(-pause / HORIZON): what the
    /// load was a second ago says little about now. Without it a burst (the knowledge base
    /// embedded at start) left the average high until about twenty more batches had run,
    /// and a lone user arriving later got one core for those. Under load dispatches are
    /// milliseconds apart and ALPHA rules.
    const HORIZON: Duration = Duration::from_millis(100);

    pub fn new() -> Demand {
        Demand {
            value: 1.0,
            last: None,
        }
    }

    pub fn observe(&mut self, batches: usize, now: Instant) -> f64 {
        let pause = self
            .last
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        let fresh = 1.0 - (-pause.as_secs_f64() / Self::HORIZON.as_secs_f64()).exp();
        self.value += Self::ALPHA.max(fresh) * (batches as f64 - self.value);
        // Floating point alone would leave it a few ulps off a steady value forever.
        if (self.value - batches as f64).abs() < 1e-3 {
            self.value = batches as f64;
        }
        self.value
    }
}

impl Default for Demand {
    fn default() -> Self {
        Demand::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elastic_ladders() {
        let two = Ladder::elastic(2);
        assert_eq!(
            two.rungs,
            vec![
                Rung {
                    width: 1,
                    sessions: 2
                },
                Rung {
                    width: 2,
                    sessions: 1
                }
            ]
        );
        assert_eq!(two.copies(), 3);
        let widths = |l: &Ladder| {
            l.rungs
                .iter()
                .map(|r| (r.width, r.sessions))
                .collect::<Vec<_>>()
        };
        assert_eq!(widths(&Ladder::elastic(1)), vec![(1, 1)]);
        assert_eq!(
            widths(&Ladder::elastic(6)),
            vec![(1, 6), (2, 3), (4, 1), (6, 1)]
        );
        assert_eq!(
            widths(&Ladder::elastic(16)),
            vec![(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]
        );
        assert_eq!(Ladder::elastic(16).max_concurrent(), 16);
    }

    #[test]
    fn fixed_is_one_rung() {
        let c = crate::Config::parse(
            "[executor]\nparallelism = \"fixed\"\nsessions = 3\nintra_op_threads = 2\n",
        )
        .unwrap();
        let l = Ladder::from_config(&c.executor, 64);
        assert_eq!((l.cores, l.copies(), l.max_concurrent()), (6, 3, 3));
        // Whatever the moment, a fixed batch gets intra_op_threads cores.
        for (free, pending) in [(2, 0), (6, 0), (6, 5), (1, 9)] {
            assert_eq!(choose(&l, free, pending, 1.0), 2);
        }
    }

    #[test]
    fn alone_gets_every_idle_core() {
        let l = Ladder::elastic(2);
        assert_eq!(choose(&l, 2, 0, 1.0), 2);
        let l = Ladder::elastic(16);
        assert_eq!(choose(&l, 16, 0, 1.0), 16);
        // Idle cores that are not a rung: the widest rung that fits.
        assert_eq!(choose(&l, 11, 0, 1.0), 8);
    }

    #[test]
    fn queued_batches_share_the_idle_cores() {
        let l = Ladder::elastic(2);
        assert_eq!(choose(&l, 2, 1, 1.0), 1, "company waiting: side by side");
        assert_eq!(choose(&l, 1, 0, 1.0), 1, "one core busy: the other one");
        let l = Ladder::elastic(16);
        assert_eq!(choose(&l, 16, 1, 1.0), 8);
        assert_eq!(choose(&l, 16, 3, 1.0), 4);
        assert_eq!(choose(&l, 16, 40, 1.0), 1);
        assert_eq!(choose(&l, 3, 0, 1.0), 2);
    }

    #[test]
    fn recent_demand_caps_a_lone_batch() {
        let l = Ladder::elastic(16);
        // Idle right now, but eight batches have been sharing the budget: two cores.
        assert_eq!(choose(&l, 16, 0, 8.0), 2);
        assert_eq!(
            choose(&l, 16, 0, 3.0),
            4,
            "16 / 3 = 5 cores: the 4-wide rung"
        );
        assert_eq!(choose(&l, 16, 0, 40.0), 1);
        // Demand never widens beyond what is idle now.
        assert_eq!(choose(&l, 2, 0, 1.0), 2);
    }

    /// Samples `batches` `n` times, a millisecond apart (a busy server), from `t`.
    fn busy(d: &mut Demand, t: &mut Instant, batches: usize, n: usize) -> f64 {
        let mut last = 0.0;
        for _ in 0..n {
            *t += Duration::from_millis(1);
            last = d.observe(batches, *t);
        }
        last
    }

    #[test]
    fn demand_follows_the_load_and_decays() {
        let (mut d, mut t) = (Demand::new(), Instant::now());
        assert!(busy(&mut d, &mut t, 16, 61) > 15.0);
        let mut last = f64::MAX;
        for _ in 0..60 {
            let now = busy(&mut d, &mut t, 1, 1);
            assert!(now <= last);
            last = now;
        }
        assert!(last < 1.1, "back to one batch at a time: {last}");
    }

    #[test]
    fn a_lone_batch_gets_every_core_again_after_a_burst() {
        // The knowledge base embedded at start is such a burst.
        let l = Ladder::elastic(2);
        let (mut d, mut t) = (Demand::new(), Instant::now());
        busy(&mut d, &mut t, 8, 12);
        let mut width = 0;
        for _ in 0..40 {
            width = choose(&l, 2, 0, busy(&mut d, &mut t, 1, 1));
        }
        assert_eq!(width, 2, "demand {d:?}");
        // Not only close: exactly one batch at a time.
        assert_eq!(busy(&mut d, &mut t, 1, 200), 1.0);
    }

    #[test]
    fn after_a_pause_the_first_lone_batch_gets_every_core() {
        let l = Ladder::elastic(2);
        let (mut d, mut t) = (Demand::new(), Instant::now());
        busy(&mut d, &mut t, 8, 30);
        // Still busy: one more lone batch a millisecond later is capped at one core.
        let mut soon = d;
        assert_eq!(
            choose(&l, 2, 0, soon.observe(1, t + Duration::from_millis(1))),
            1
        );
        // Half a second of quiet: the burst is all but forgotten at once.
        let after = d.observe(1, t + Duration::from_millis(500));
        assert!(after < 1.1, "{after}");
        assert_eq!(choose(&l, 2, 0, after), 2);
    }

    #[test]
    fn elastic_auto_uses_available_cpus() {
        let c = crate::Config::parse("").unwrap();
        assert_eq!(Ladder::from_config(&c.executor, 4).cores, 4);
        let c = crate::Config::parse("[executor]\ncores = 3\n").unwrap();
        assert_eq!(Ladder::from_config(&c.executor, 64).cores, 3);
    }
}
