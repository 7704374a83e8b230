//! A JSON snapshot of the metrics the live page charts (`GET /live.json`).
//!
//! Cumulative, as Prometheus scrapes them: counters, gauges and histogram buckets. The page
//! turns two snapshots into per-second rates and quantiles, so the server keeps no state per
//! viewer and any number of pages (or scripts) can poll without disturbing one another.

use super::{GenerationSnapshot, Metrics};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;
use utoipa::ToSchema;

/// Every figure the live page charts, cumulative since the server started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Snapshot {
    /// Seconds on a monotonic clock (its origin is arbitrary): divide counter deltas by
    /// the delta of this to get rates.
    pub clock_seconds: f64,
    pub requests: RequestCounts,
    /// Inference requests turned away or dropped before inference, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// End-to-end time of answered requests (2xx) on the timed routes, in seconds: the
    /// inference routes, but not generation's while the generative model is served (a
    /// generated answer streams for seconds; `generation` times it by token).
    pub latency: HistogramSnapshot,
    /// Time inputs waited in the batch queue, in seconds.
    pub queue_wait: HistogramSnapshot,
    /// Time of one batch's forward pass, in seconds.
    pub inference: HistogramSnapshot,
    /// Inputs per batch.
    pub batch_size: HistogramSnapshot,
    /// Fraction of each batch's token slots that are padding.
    pub padding_ratio: HistogramSnapshot,
    /// How late the event-loop probe woke, in seconds.
    pub event_loop_lag: HistogramSnapshot,
    /// Batches run, by width (the cores their forward pass used).
    pub batches_by_width: BTreeMap<String, u64>,
    /// Core-seconds spent in forward passes; its rate over `core_budget` is utilisation.
    pub core_busy_seconds: f64,
    pub batch_failures: u64,
    pub gauges: Gauges,
    /// The generative model's figures; absent when it is not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationSnapshot>,
}

/// Inference requests (the routes named by the caller) answered so far, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RequestCounts {
    /// 1xx to 3xx.
    pub ok: u64,
    /// 429 and 503: turned away by policy.
    pub rejected: u64,
    /// Other 4xx.
    pub client_errors: u64,
    /// Other 5xx.
    pub server_errors: u64,
}

/// Instantaneous values.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Gauges {
    pub queue_depth: i64,
    pub inflight_batches: i64,
    pub busy_workers: i64,
    pub cores_busy: i64,
    pub core_budget: i64,
    pub connections_open: i64,
}

/// A histogram as Prometheus exposes it: cumulative counts at each upper bound (`le`);
/// the `+Inf` bucket is `count`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum: f64,
    /// Upper bounds, ascending.
    pub le: Vec<f64>,
    /// Observations at or below each bound (cumulative), one per `le`.
    pub cumulative: Vec<u64>,
}

impl HistogramSnapshot {
    /// Adds another histogram with the same bounds (two label sets of one histogram).
    pub(super) fn add(&mut self, other: &HistogramSnapshot) {
        if self.le.is_empty() {
            *self = other.clone();
            return;
        }
        debug_assert_eq!(self.le, other.le, "one histogram's children share bounds");
        self.count += other.count;
        self.sum += other.sum;
        for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *a += b;
        }
    }
}

impl Metrics {
    /// The live page's feed. `inference_routes` are the `route` label values of the
    /// inference routes (the HTTP layer owns those names): their requests are counted.
    /// The successful durations of `timed_routes` make `latency`.
    pub fn snapshot(&self, inference_routes: &[&str], timed_routes: &[&str]) -> Snapshot {
        let on = |routes: &[&str], labels: &Labels| {
            labels
                .get("route")
                .is_some_and(|r| routes.contains(&r.as_str()))
        };
        let is_inference = |labels: &Labels| on(inference_routes, labels);
        let mut requests = RequestCounts::default();
        for (labels, n) in counters(&self.requests) {
            if !is_inference(&labels) {
                continue;
            }
            let status: u16 = labels
                .get("status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            *match status {
                429 | 503 => &mut requests.rejected,
                400..=499 => &mut requests.client_errors,
                500..=599 => &mut requests.server_errors,
                _ => &mut requests.ok,
            } += n as u64;
        }
        let mut latency = HistogramSnapshot::default();
        for (labels, h) in histograms(&self.request_duration) {
            if on(timed_routes, &labels) && labels.get("outcome").is_some_and(|o| o == "success") {
                latency.add(&h);
            }
        }
        Snapshot {
            clock_seconds: clock(),
            requests,
            rejected: by_label(&self.rejected, "reason"),
            latency,
            queue_wait: histogram(&self.queue_wait.inner),
            inference: histogram(&self.inference.inner),
            batch_size: histogram(&self.batch_size.inner),
            padding_ratio: histogram(&self.padding_ratio.inner),
            event_loop_lag: histogram(&self.event_loop_lag),
            batches_by_width: by_label(&self.cores.batches, "width"),
            core_busy_seconds: self.cores.busy_seconds.get(),
            batch_failures: self.batch_failures.get(),
            gauges: Gauges {
                queue_depth: self.queue_depth.get(),
                inflight_batches: self.inflight_batches.get(),
                busy_workers: self.busy_workers.get(),
                cores_busy: self.cores.busy.get(),
                core_budget: self.cores.budget.get(),
                connections_open: self.connections.open.get(),
            },
            generation: None,
        }
    }
}

/// Seconds since this process first asked: monotonic, unlike the wall clock.
fn clock() -> f64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A counter family's children keyed by one label's value.
fn by_label(c: &impl Collector, name: &str) -> BTreeMap<String, u64> {
    counters(c)
        .into_iter()
        .filter_map(|(mut labels, n)| Some((labels.remove(name)?, n as u64)))
        .collect()
}

/// One child's labels, name to value.
pub(super) type Labels = BTreeMap<String, String>;

fn labels(m: &prometheus::proto::Metric) -> Labels {
    m.get_label()
        .iter()
        .map(|l| (l.name().to_owned(), l.value().to_owned()))
        .collect()
}

/// Each child of a counter family with its labels and value.
pub(super) fn counters(c: &impl Collector) -> Vec<(Labels, f64)> {
    c.collect()
        .iter()
        .flat_map(MetricFamily::get_metric)
        .map(|m| (labels(m), m.get_counter().get_value()))
        .collect()
}

/// Each child of a histogram family with its labels and buckets.
pub(super) fn histograms(c: &impl Collector) -> Vec<(Labels, HistogramSnapshot)> {
    c.collect()
        .iter()
        .flat_map(MetricFamily::get_metric)
        .map(|m| (labels(m), of_proto(m.get_histogram())))
        .collect()
}

fn histogram(h: &prometheus::Histogram) -> HistogramSnapshot {
    histograms(h)
        .into_iter()
        .next()
        .map(|(_, h)| h)
        .unwrap_or_default()
}

fn of_proto(h: &prometheus::proto::Histogram) -> HistogramSnapshot {
    let buckets = h.get_bucket();
    HistogramSnapshot {
        count: h.get_sample_count(),
        sum: h.get_sample_sum(),
        le: buckets.iter().map(|b| b.upper_bound()).collect(),
        cumulative: buckets.iter().map(|b| b.cumulative_count()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RejectReason;

    #[test]
    fn counts_inference_routes_and_sums_their_latency() {
        let m = Metrics::new("workers", "m");
        let answer = |route: &str, status: &str, outcome: &str, secs: f64| {
            m.requests.with_label_values(&[route, status]).inc();
            m.request_duration
                .with_label_values(&[route, outcome])
                .observe(secs);
        };
        answer("embeddings", "200", "success", 0.004);
        answer("chat", "200", "success", 0.2);
        answer("embed", "429", "rejected", 0.0001);
        answer("embed", "422", "client_error", 0.0001);
        answer("metrics", "200", "success", 0.001);
        m.reject(RejectReason::Overloaded);
        m.batch_size.observe(8.0);
        m.cores.batches.with_label_values(&["2"]).inc_by(3);
        m.queue_depth.set(5);

        let s = m.snapshot(&["embeddings", "embed", "chat"], &["embeddings", "embed"]);
        let want = RequestCounts {
            ok: 2,
            rejected: 1,
            client_errors: 1,
            server_errors: 0,
        };
        assert_eq!(s.requests, want);
        // Only the answered requests of the timed routes; chat and /metrics stay out.
        assert_eq!(s.latency.count, 1);
        assert!((s.latency.sum - 0.004).abs() < 1e-9, "{}", s.latency.sum);
        let at = |h: &HistogramSnapshot, le: f64| {
            h.cumulative[h.le.iter().position(|&b| b == le).expect("bound")]
        };
        assert_eq!(at(&s.latency, 0.003), 0);
        assert_eq!(at(&s.latency, 0.005), 1);
        assert_eq!(at(&s.latency, 10.0), 1);
        assert_eq!(at(&s.batch_size, 8.0), 1);
        assert_eq!(at(&s.batch_size, 6.0), 0);
        assert_eq!(s.rejected["overloaded"], 1);
        assert_eq!(s.rejected["deadline"], 0, "every reason from the start");
        assert_eq!(s.batches_by_width["2"], 3);
        assert_eq!(s.gauges.queue_depth, 5);
        assert!(m.snapshot(&[], &[]).clock_seconds >= s.clock_seconds);
    }

    #[test]
    fn cumulative_counts_never_fall_along_the_bounds() {
        let m = Metrics::new("rayon", "m");
        for lag in [0.00002, 0.0004, 0.003, 0.03, 20.0] {
            m.event_loop_lag.observe(lag);
        }
        let h = m.snapshot(&[], &[]).event_loop_lag;
        assert_eq!(h.le.len(), h.cumulative.len());
        assert!(h.le.windows(2).all(|w| w[0] < w[1]));
        assert!(h.cumulative.windows(2).all(|w| w[0] <= w[1]));
        // 20 s is above every bound: only in `count` (the +Inf bucket).
        assert_eq!(*h.cumulative.last().unwrap(), 4);
        assert_eq!(h.count, 5);
    }
}
