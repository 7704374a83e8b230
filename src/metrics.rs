//! Every Prometheus metric the server exports, declared in one place.
//!
//! Each server instance owns a [`Metrics`] with its own registry, whose constant labels
//! `strategy` and `model` are on every series: two strategies scraped one after the other
//! (or two servers in one test process) never mix.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;

/// Why a request was turned away or dropped before it reached the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The admission queue was full (429).
    Overloaded,
    /// Its deadline passed while it was queued (503).
    Deadline,
    /// The client went away before its batch was formed.
    Cancelled,
    /// The request was malformed or broke a limit (4xx).
    Invalid,
    /// The server was draining for shutdown (503).
    Draining,
    /// Missing or wrong API key (401).
    Unauthorized,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Overloaded => "overloaded",
            RejectReason::Deadline => "deadline",
            RejectReason::Cancelled => "cancelled",
            RejectReason::Invalid => "invalid",
            RejectReason::Draining => "draining",
            RejectReason::Unauthorized => "unauthorized",
        }
    }
}

/// Seconds from 10 µs to 10 s, six buckets a decade (1, 1.5, 2, 3, 5, 7): resolves both
/// event-loop lag (tens of microseconds, with 1 ms as an exact boundary) and queueing under
/// overload (seconds).
fn seconds_buckets() -> Vec<f64> {
    let mut buckets: Vec<f64> = (-5..=0)
        .flat_map(|exp| [1.0, 1.5, 2.0, 3.0, 5.0, 7.0].map(|m| m * 10f64.powi(exp)))
        .collect();
    buckets.push(10.0);
    buckets
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub queue_wait: Histogram,
    pub tokenization: Histogram,
    pub inference: Histogram,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub padding_ratio: Histogram,
    pub queue_depth: IntGauge,
    pub inflight_batches: IntGauge,
    pub busy_workers: IntGauge,
    pub rejected: IntCounterVec,
    pub batch_failures: IntCounter,
    pub worker_restarts: IntCounter,
    pub event_loop_lag: Histogram,
    pub connections: ConnectionMetrics,
}

impl Metrics {
    /// Creates and registers every metric, labelled with `strategy` and `model`.
    pub fn new(strategy: &str, model: &str) -> Metrics {
        let labels = HashMap::from([
            ("strategy".to_string(), strategy.to_string()),
            ("model".to_string(), model.to_string()),
        ]);
        let registry =
            Registry::new_custom(Some("concur".into()), Some(labels)).expect("valid registry");
        let secs = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(seconds_buckets()))
                .expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique name");
            h
        };
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique name");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique name");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique name");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique name");
            c
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "End-to-end time of an HTTP request, from its headers to its response.",
            )
            .buckets(seconds_buckets()),
            &["route"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("unique name");
        let rejected = counter_vec(
            "rejected_requests_total",
            "Requests turned away or dropped before inference, by reason.",
            &["reason"],
        );
        for reason in [
            RejectReason::Overloaded,
            RejectReason::Deadline,
            RejectReason::Cancelled,
            RejectReason::Invalid,
            RejectReason::Draining,
            RejectReason::Unauthorized,
        ] {
            // Export zeros from the start, so rate() works before the first rejection.
            rejected.with_label_values(&[reason.as_str()]);
        }
        Metrics {
            requests: counter_vec(
                "requests_total",
                "HTTP requests answered, by route and status code.",
                &["route", "status"],
            ),
            request_duration,
            queue_wait: secs(
                "queue_wait_seconds",
                "Time an input waited in the batch queue before its batch was dispatched.",
            ),
            tokenization: secs(
                "tokenization_seconds",
                "Time to tokenize the inputs of one request.",
            ),
            inference: secs(
                "inference_seconds",
                "Time of one batch's forward pass, pooling included.",
            ),
            batch_size: hist(
                "batch_size",
                "Inputs per dispatched batch.",
                vec![1., 2., 3., 4., 6., 8., 12., 16., 24., 32., 48., 64., 96., 128., 256.],
            ),
            batch_tokens: hist(
                "batch_tokens",
                "Padded token slots per batch (longest input x inputs).",
                exponential_buckets(8.0, 2.0, 12).expect("valid buckets"),
            ),
            padding_ratio: hist(
                "batch_padding_ratio",
                "Fraction of a batch's token slots that are padding (0 = none wasted).",
                (0..20).map(|i| f64::from(i) * 0.05).collect(),
            ),
            queue_depth: gauge("queue_depth", "Inputs admitted and waiting for a batch."),
            inflight_batches: gauge(
                "inflight_batches",
                "Batches dispatched to the executor and not finished.",
            ),
            busy_workers: gauge(
                "busy_workers",
                "Engine sessions running a forward pass right now.",
            ),
            rejected,
            batch_failures: counter(
                "batch_failures_total",
                "Batches whose forward pass failed or panicked.",
            ),
            worker_restarts: counter(
                "worker_restarts_total",
                "Engine sessions rebuilt after a panic.",
            ),
            event_loop_lag: secs(
                "event_loop_lag_seconds",
                "How late a probe task wakes on the tokio runtime: high when the event loop is blocked.",
            ),
            connections: ConnectionMetrics::register(&registry),
            registry,
        }
    }

    /// Counts a rejection.
    pub fn reject(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

/// Why an open connection was closed to admit a new one at the connection cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// It had served requests and was waiting for the next one (keep-alive).
    Idle,
    /// It had not yet sent a complete request header (silent, or slow).
    Header,
}

impl ShedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Idle => "idle",
            ShedReason::Header => "header",
        }
    }
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// At the cap, every open connection had a request in flight: none could be shed.
    Busy,
    /// Its client address already held `server.max_connections_per_client` connections.
    PerClient,
}

impl RefuseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::Busy => "busy",
            RefuseReason::PerClient => "per_client",
        }
    }
}

/// The connection registry's metrics (`src/connections/registry.rs` updates them).
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    pub shed: IntCounterVec,
    pub refused: IntCounterVec,
}

impl ConnectionMetrics {
    fn register(registry: &Registry) -> ConnectionMetrics {
        let open = IntGauge::new("connections_open", "Connections open now (both listeners).")
            .expect("valid gauge");
        let shed = IntCounterVec::new(
            Opts::new(
                "connections_shed_total",
                "Connections closed at the connection cap to admit a new one, by what they were doing.",
            ),
            &["reason"],
        )
        .expect("valid counter");
        let refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "New connections closed at once, by reason.",
            ),
            &["reason"],
        )
        .expect("valid counter");
        for r in [ShedReason::Idle, ShedReason::Header] {
            shed.with_label_values(&[r.as_str()]);
        }
        for r in [RefuseReason::Busy, RefuseReason::PerClient] {
            refused.with_label_values(&[r.as_str()]);
        }
        registry
            .register(Box::new(open.clone()))
            .expect("unique name");
        registry
            .register(Box::new(shed.clone()))
            .expect("unique name");
        registry
            .register(Box::new(refused.clone()))
            .expect("unique name");
        ConnectionMetrics {
            open,
            shed,
            refused,
        }
    }
}
