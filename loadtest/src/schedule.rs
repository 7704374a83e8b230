//! Open-loop arrival schedules: when each request is *supposed* to be sent.
//!
//! The schedule is computed independently of how the server responds, which
//! is what makes the open loop immune to coordinated omission: a slow
//! response never delays the next scheduled send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How inter-arrival gaps are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Exponential gaps (a Poisson process): bursts happen, as with real users.
    Poisson,
    /// Evenly spaced sends, `1/rate` apart.
    Constant,
}

/// An endless iterator of send offsets from the start of a run.
pub struct Schedule {
    arrival: Arrival,
    rate: f64,
    rng: StdRng,
    /// Offsets are accumulated in f64 seconds: summing `Duration`s of
    /// truncated nanoseconds would drift below the target rate.
    next_s: f64,
}

impl Schedule {
    /// A schedule of `rate` sends per second. `seed` makes Poisson gaps
    /// reproducible. Panics if `rate` is not finite and positive.
    pub fn new(arrival: Arrival, rate: f64, seed: u64) -> Self {
        assert!(rate.is_finite() && rate > 0.0, "rate must be positive");
        Schedule {
            arrival,
            rate,
            rng: StdRng::seed_from_u64(seed),
            next_s: 0.0,
        }
    }

    fn gap_s(&mut self) -> f64 {
        match self.arrival {
            Arrival::Constant => 1.0 / self.rate,
            // Inverse CDF of the exponential distribution; `1 - u` lies in
            // (0, 1], so the logarithm is finite.
            Arrival::Poisson => {
                let u: f64 = self.rng.random();
                -(1.0 - u).ln() / self.rate
            }
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // The first send happens one gap after the start, not at zero, so
        // that a run of length T holds on average `rate * T` sends.
        self.next_s += self.gap_s();
        Some(Duration::from_secs_f64(self.next_s))
    }
}

/// How many measured sends a run may still start (`max_requests`), shared by its tasks;
/// warm-up sends never count.
#[derive(Debug)]
pub struct Quota {
    max: Option<u64>,
    started: AtomicU64,
}

impl Quota {
    /// At most `max` measured sends; None = no limit.
    pub fn new(max: Option<u64>) -> Self {
        Quota {
            max,
            started: AtomicU64::new(0),
        }
    }

    /// Claims a send; false once the measured sends are used up.
    pub fn claim(&self, measured: bool) -> bool {
        match (measured, self.max) {
            (true, Some(max)) => self.started.fetch_add(1, Ordering::Relaxed) < max,
            _ => true,
        }
    }
}

/// Counts the sends that never left: `first` (the send the client was
/// stuck on) plus the rest of `schedule` before `to`, keeping only those at
/// or after `from` (earlier ones belong to the warm-up and are not measured).
pub fn remaining_in(first: Duration, schedule: &mut Schedule, from: Duration, to: Duration) -> u64 {
    std::iter::once(first)
        .chain(schedule)
        .take_while(|t| *t < to)
        .filter(|t| *t >= from)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_counts_measured_sends_only() {
        let q = Quota::new(Some(2));
        assert!(q.claim(false) && q.claim(true) && q.claim(false) && q.claim(true));
        assert!(!q.claim(true), "the third measured send is over the quota");
        assert!(q.claim(false), "warm-up sends never count");
        let unlimited = Quota::new(None);
        assert!((0..100).all(|_| unlimited.claim(true)));
    }

    #[test]
    fn constant_spacing_is_exact() {
        let offsets: Vec<Duration> = Schedule::new(Arrival::Constant, 4.0, 1).take(8).collect();
        for (i, t) in offsets.iter().enumerate() {
            let expected = 0.25 * (i + 1) as f64;
            assert!(
                (t.as_secs_f64() - expected).abs() < 1e-9,
                "{t:?} vs {expected}"
            );
        }
    }

    #[test]
    fn poisson_mean_rate_within_tolerance() {
        let rate = 200.0;
        let horizon = Duration::from_secs(100);
        let n = Schedule::new(Arrival::Poisson, rate, 42)
            .take_while(|t| *t < horizon)
            .count() as f64;
        // Expect 20,000 arrivals; the Poisson standard deviation is ~141,
        // so 2% (~1,400) is a wide margin for any seed.
        let observed = n / horizon.as_secs_f64();
        assert!((observed - rate).abs() / rate < 0.02, "rate {observed}");
    }

    #[test]
    fn poisson_gaps_are_exponential() {
        // For an exponential distribution the coefficient of variation is 1;
        // a constant schedule would give 0.
        let offsets: Vec<f64> = Schedule::new(Arrival::Poisson, 50.0, 7)
            .take(20_000)
            .map(|d| d.as_secs_f64())
            .collect();
        let gaps: Vec<f64> = std::iter::once(offsets[0])
            .chain(offsets.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.02).abs() < 0.001, "mean gap {mean}");
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.05,
            "cv {}",
            var.sqrt() / mean
        );
    }

    #[test]
    fn same_seed_same_schedule() {
        let a: Vec<_> = Schedule::new(Arrival::Poisson, 10.0, 3).take(50).collect();
        let b: Vec<_> = Schedule::new(Arrival::Poisson, 10.0, 3).take(50).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn counts_remaining_sends() {
        let mut s = Schedule::new(Arrival::Constant, 10.0, 0);
        let first = s.next().unwrap(); // 0.1 s; the rest at 0.2, 0.3, ...
        let (from, to) = (Duration::from_millis(250), Duration::from_secs(1));
        // 0.3 .. 0.9 inclusive: 7 sends; 0.1 and 0.2 were warm-up.
        assert_eq!(remaining_in(first, &mut s, from, to), 7);
    }
}
