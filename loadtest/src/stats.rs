//! Latency accounting: HDR histograms, errors by kind and late sends.
//!
//! Every request carries three instants: when it was *scheduled*, when it
//! was actually *sent*, and when it was *done*. Latency is `done -
//! scheduled`, so time a request spent waiting inside the client because
//! the server (or the client) was behind is charged to the latency instead
//! of vanishing: the coordinated-omission correction. In the closed loop a
//! request is scheduled when its user is ready, so the two coincide.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::{Endpoint, Outcome};

/// One finished request, as seen by the client.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Which API the request went to.
    pub endpoint: Endpoint,
    /// When the load model wanted the request sent.
    pub scheduled: Instant,
    /// When the client actually started sending it.
    pub sent: Instant,
    /// When the response (or the failure) was complete.
    pub done: Instant,
    /// Success or the kind of failure.
    pub outcome: Outcome,
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of recorded latencies.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest recorded latency.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Counts and histograms for one measurement window.
pub struct Recorder {
    late_threshold: Duration,
    all: Histogram<u64>,
    by_endpoint: BTreeMap<Endpoint, Histogram<u64>>,
    successes: u64,
    errors: BTreeMap<String, u64>,
    late_sends: u64,
    max_send_delay: Duration,
    unsent: u64,
}

/// Latencies above this are clamped; it is far beyond any sane timeout.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 0.1% resolution, ample for percentiles.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("static histogram bounds")
}

impl Recorder {
    /// A send that leaves more than `late_threshold` after its scheduled
    /// time is counted as late.
    pub fn new(late_threshold: Duration) -> Self {
        Recorder {
            late_threshold,
            all: new_histogram(),
            by_endpoint: BTreeMap::new(),
            successes: 0,
            errors: BTreeMap::new(),
            late_sends: 0,
            max_send_delay: Duration::ZERO,
            unsent: 0,
        }
    }

    /// Accounts one finished request.
    pub fn record(&mut self, s: &Sample) {
        let send_delay = s.sent.saturating_duration_since(s.scheduled);
        if send_delay > self.late_threshold {
            self.late_sends += 1;
        }
        self.max_send_delay = self.max_send_delay.max(send_delay);
        match s.outcome.error_key() {
            None => {
                self.successes += 1;
                // Measured from the schedule, not from the actual send.
                let us = s.done.saturating_duration_since(s.scheduled).as_micros() as u64;
                self.all.saturating_record(us.max(1));
                self.by_endpoint
                    .entry(s.endpoint)
                    .or_insert_with(new_histogram)
                    .saturating_record(us.max(1));
            }
            Some(key) => *self.errors.entry(key).or_insert(0) += 1,
        }
    }

    /// Counts `n` requests that were scheduled inside the window but never
    /// sent because the run ended while the client was behind schedule.
    pub fn record_unsent(&mut self, n: u64) {
        self.unsent += n;
        if n > 0 {
            *self.errors.entry("unsent".into()).or_insert(0) += n;
        }
    }

    /// Successful requests so far.
    pub fn successes(&self) -> u64 {
        self.successes
    }

    /// Failed requests so far (all kinds, unsent included).
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Late sends so far.
    pub fn late_sends(&self) -> u64 {
        self.late_sends
    }

    /// Freezes the counts into a summary; `window` is the measured duration
    /// that throughput is computed over.
    pub fn totals(&self, window: Duration) -> Totals {
        let requests = self.successes + self.error_count();
        let secs = window.as_secs_f64().max(1e-9);
        Totals {
            requests,
            successes: self.successes,
            errors: self.errors.clone(),
            late_sends: self.late_sends,
            unsent: self.unsent,
            max_send_delay_ms: self.max_send_delay.as_secs_f64() * 1000.0,
            throughput_rps: self.successes as f64 / secs,
            latency: LatencySummary::from_histogram(&self.all),
            by_endpoint: self
                .by_endpoint
                .iter()
                .map(|(e, h)| (e.name().to_string(), LatencySummary::from_histogram(h)))
                .collect(),
        }
    }
}

/// What a measurement window produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests accounted (successes + errors, unsent included).
    pub requests: u64,
    /// 2xx responses.
    pub successes: u64,
    /// Failures by kind: a status code, `timeout`, `transport` or `unsent`.
    pub errors: BTreeMap<String, u64>,
    /// Sends that left later than the late threshold after their schedule.
    pub late_sends: u64,
    /// Scheduled sends that never left before the run ended.
    pub unsent: u64,
    /// Largest gap between a scheduled and an actual send.
    pub max_send_delay_ms: f64,
    /// Successful responses per second over the window.
    pub throughput_rps: f64,
    /// Latency of successful requests, from scheduled send to last byte.
    pub latency: LatencySummary,
    /// The same, per endpoint name.
    pub by_endpoint: BTreeMap<String, LatencySummary>,
}

impl Totals {
    /// Failed requests of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Late or unsent requests as a fraction of all requests.
    pub fn late_fraction(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        (self.late_sends + self.unsent) as f64 / self.requests as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(base: Instant, sched_ms: u64, sent_ms: u64, done_ms: u64, o: Outcome) -> Sample {
        let at = |ms| base + Duration::from_millis(ms);
        Sample {
            endpoint: Endpoint::Embeddings,
            scheduled: at(sched_ms),
            sent: at(sent_ms),
            done: at(done_ms),
            outcome: o,
        }
    }

    #[test]
    fn latency_is_measured_from_the_scheduled_time() {
        let base = Instant::now();
        let mut r = Recorder::new(Duration::from_millis(5));
        // Scheduled at 0, sent 100 ms late, answered 10 ms after sending:
        // the user waited 110 ms, not 10.
        r.record(&sample(base, 0, 100, 110, Outcome::Ok));
        let t = r.totals(Duration::from_secs(1));
        assert_eq!(t.latency.count, 1);
        assert!((t.latency.max_ms - 110.0).abs() < 0.2, "{:?}", t.latency);
        assert_eq!(t.late_sends, 1);
        assert!((t.max_send_delay_ms - 100.0).abs() < 1e-6);
    }

    #[test]
    fn on_time_sends_are_not_late() {
        let base = Instant::now();
        let mut r = Recorder::new(Duration::from_millis(5));
        r.record(&sample(base, 0, 4, 20, Outcome::Ok));
        r.record(&sample(base, 10, 16, 30, Outcome::Ok));
        let t = r.totals(Duration::from_secs(2));
        assert_eq!(t.late_sends, 1);
        assert_eq!(t.successes, 2);
        assert!((t.throughput_rps - 1.0).abs() < 1e-9);
        assert!((t.late_fraction() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn errors_are_counted_by_kind_and_kept_out_of_latency() {
        let base = Instant::now();
        let mut r = Recorder::new(Duration::from_millis(5));
        r.record(&sample(base, 0, 0, 1, Outcome::Status(429)));
        r.record(&sample(base, 0, 0, 1, Outcome::Status(429)));
        r.record(&sample(base, 0, 0, 1, Outcome::Status(503)));
        r.record(&sample(base, 0, 0, 1, Outcome::Timeout));
        r.record_unsent(3);
        let t = r.totals(Duration::from_secs(1));
        assert_eq!(t.errors["429"], 2);
        assert_eq!(t.errors["503"], 1);
        assert_eq!(t.errors["timeout"], 1);
        assert_eq!(t.errors["unsent"], 3);
        assert_eq!(t.requests, 7);
        assert_eq!(t.latency.count, 0);
        assert_eq!(t.unsent, 3);
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let base = Instant::now();
        let mut r = Recorder::new(Duration::from_millis(5));
        for ms in 1..=1000 {
            r.record(&sample(base, 0, 0, ms, Outcome::Ok));
        }
        let l = r.totals(Duration::from_secs(1)).latency;
        // HDR keeps 3 significant digits: allow 0.1% plus rounding.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.01;
        assert!(close(l.p50_ms, 500.0), "{l:?}");
        assert!(close(l.p90_ms, 900.0), "{l:?}");
        assert!(close(l.p99_ms, 990.0), "{l:?}");
        assert!(close(l.p999_ms, 999.0), "{l:?}");
        assert!(close(l.max_ms, 1000.0), "{l:?}");
        assert!(close(l.mean_ms, 500.5), "{l:?}");
    }
}
