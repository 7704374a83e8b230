//! Every Prometheus metric the server exports, declared in one place.
//!
//! Each server instance owns a [`Metrics`] with its own registry, whose constant labels
//! `strategy` and `model` are on every series: two strategies scraped one after the other
//! (or two servers in one test process) never mix.
//!
//! Bucket bounds are built so each is the double nearest a short decimal (0.3, not
//! 0.30000000000000004): PromQL matches `le` as a string, so `le="0.3"` must exist as written.

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

mod connections;
mod cores;
mod generation;
mod processes;
mod reload;
mod snapshot;
mod snapshot_generation;
pub use connections::{ConnectionMetrics, RefuseReason, ShedReason};
pub use cores::CoreMetrics;
pub use generation::GenerationMetrics;
pub use processes::ProcessMetrics;
pub use reload::{ReloadMetrics, ReloadOutcome};
pub use snapshot::{Gauges, HistogramSnapshot, RequestCounts, Snapshot};
pub use snapshot_generation::GenerationSnapshot;

/// Why a request was turned away or dropped before it reached the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The admission queue was full (429).
    Overloaded,
    /// Its deadline passed while it was queued (503).
    Deadline,
    /// The client went away before its batch was formed.
    Cancelled,
    /// An inference request was malformed or broke a limit (400, 413, 422, or 404 for an
    /// unknown `model`).
    Invalid,
    /// No such route (404): scanners and typos, kept apart from bad inference input.
    NotFound,
    /// A known route with the wrong method (405).
    MethodNotAllowed,
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
            RejectReason::NotFound => "not_found",
            RejectReason::MethodNotAllowed => "method_not_allowed",
            RejectReason::Draining => "draining",
            RejectReason::Unauthorized => "unauthorized",
        }
    }
}

/// How a request ended, for the `outcome` label of the request duration: failures are often
/// fast, and must not flatter (or hide in) the latency of answered requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 1xx to 3xx.
    Success,
    /// 4xx other than 429: the client's mistake.
    ClientError,
    /// 5xx other than 503: the server's fault.
    ServerError,
    /// 429 and 503: turned away by policy (overload, deadline, loading, draining).
    Rejected,
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        match status {
            429 | 503 => Outcome::Rejected,
            400..=499 => Outcome::ClientError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Seconds from 10 µs to 10 s, six buckets a decade (1, 1.5, 2, 3, 5, 7): resolves both
/// event-loop lag (tens of microseconds, with 1 ms as an exact boundary) and queueing under
/// overload (seconds). Each bound is tenths over an exact power of ten, one correctly
/// rounded division, so it is the double nearest its decimal (`1.5 * 1e-5` is not).
fn seconds_buckets() -> Vec<f64> {
    let mut buckets: Vec<f64> = (1..=6)
        .rev()
        .flat_map(|exp| [10.0, 15.0, 20.0, 30.0, 50.0, 70.0].map(|t| t / 10f64.powi(exp)))
        .collect();
    buckets.push(10.0);
    buckets
}

/// A histogram of the request path that start-up work stays out of: the knowledge base is
/// embedded through the same pipeline before the server is ready, and its batches are not
/// requests. See [`Metrics::startup_work`].
#[derive(Clone)]
pub struct RequestHistogram {
    inner: Histogram,
    /// Shared with [`Metrics`]: how many start-up stages are running (0 once serving).
    startup: Arc<AtomicUsize>,
}

impl RequestHistogram {
    pub fn observe(&self, v: f64) {
        if self.startup.load(Ordering::Acquire) == 0 {
            self.inner.observe(v);
        }
    }
}

/// Marks start-up work while it lives; see [`Metrics::startup_work`].
#[must_use = "start-up work is marked only while the guard lives"]
pub struct StartupWork<'a> {
    metrics: &'a Metrics,
    stage: &'static str,
    started: Instant,
}

impl Drop for StartupWork<'_> {
    fn drop(&mut self) {
        self.metrics.startup.fetch_sub(1, Ordering::AcqRel);
        self.metrics
            .startup_seconds
            .with_label_values(&[self.stage])
            .set(self.started.elapsed().as_secs_f64());
    }
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    /// The live strategy, put on every series at scrape time (see [`reload`]).
    strategy: RwLock<&'static str>,
    /// `process_*` (memory, CPU, open files), unprefixed as every exporter names them.
    process: Registry,
    /// `concur_generation_*`: its own registry, as its `model` is the generative one.
    generation_registry: Registry,
    /// Above 0 while start-up work runs; shared with every [`RequestHistogram`].
    startup: Arc<AtomicUsize>,
    startup_seconds: GaugeVec,
    build_info: IntGaugeVec,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub queue_wait: RequestHistogram,
    pub tokenization: RequestHistogram,
    pub inference: RequestHistogram,
    pub batch_size: RequestHistogram,
    pub batch_tokens: RequestHistogram,
    pub padding_ratio: RequestHistogram,
    pub queue_depth: IntGauge,
    pub inflight_batches: IntGauge,
    pub busy_workers: IntGauge,
    pub rejected: IntCounterVec,
    pub batch_failures: IntCounter,
    pub worker_restarts: IntCounter,
    pub event_loop_lag: Histogram,
    pub cores: CoreMetrics,
    pub connections: ConnectionMetrics,
    pub reload: ReloadMetrics,
    pub processes: ProcessMetrics,
    pub generation: GenerationMetrics,
}

impl Metrics {
    /// Creates and registers every metric, labelled with `model` and the live `strategy`;
    /// generation's series too (a server with a generative model names it through
    /// [`Metrics::with_generative_model`]).
    pub fn new(strategy: &'static str, model: &str) -> Metrics {
        Metrics::with_generative_model(strategy, model, model)
    }

    /// As [`Metrics::new`], with `concur_generation_*` labelled `model = generative`.
    pub fn with_generative_model(strategy: &'static str, model: &str, generative: &str) -> Metrics {
        let labelled = |model: &str| {
            let labels = HashMap::from([("model".to_string(), model.to_string())]);
            Registry::new_custom(Some("concur".into()), Some(labels)).expect("valid registry")
        };
        let generation_registry = labelled(generative);
        let labels = HashMap::from([("model".to_string(), model.to_string())]);
        let registry = labelled(model);
        let process = Registry::new_custom(None, Some(labels)).expect("valid registry");
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique name");
        let startup = Arc::new(AtomicUsize::new(0));
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
            RequestHistogram {
                inner: h,
                startup: startup.clone(),
            }
        };
        let request_secs = |name: &str, help: &str| hist(name, help, seconds_buckets());
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
                "End-to-end time of an HTTP request, from its headers to its response, by outcome.",
            )
            .buckets(seconds_buckets()),
            &["route", "outcome"],
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
            RejectReason::NotFound,
            RejectReason::MethodNotAllowed,
            RejectReason::Draining,
            RejectReason::Unauthorized,
        ] {
            // Export zeros from the start, so rate() works before the first rejection.
            rejected.with_label_values(&[reason.as_str()]);
        }
        let startup_seconds = GaugeVec::new(
            Opts::new(
                "startup_seconds",
                "Time each start-up stage took (engines, knowledge_base); its work is not in the request histograms.",
            ),
            &["stage"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(startup_seconds.clone()))
            .expect("unique name");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the labels say what is running (onnxruntime once the engines load).",
            ),
            &["version", "commit", "rustc", "onnxruntime"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique name");
        Metrics {
            requests: counter_vec(
                "requests_total",
                "HTTP requests answered, by route and status code.",
                &["route", "status"],
            ),
            request_duration,
            queue_wait: request_secs(
                "queue_wait_seconds",
                "Time an input waited in the batch queue before its batch was dispatched.",
            ),
            tokenization: request_secs(
                "tokenization_seconds",
                "Time to tokenize the inputs of one request.",
            ),
            inference: request_secs(
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
                // i / 20 is one correctly rounded division: exactly the double nearest i x 0.05.
                (0..20).map(|i| f64::from(i) / 20.0).collect(),
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
                "Engine sessions rebuilt after a panic, and worker processes respawned after they died.",
            ),
            event_loop_lag: secs(
                "event_loop_lag_seconds",
                "How late a probe task wakes on the tokio runtime: high when the event loop is blocked.",
            ),
            cores: CoreMetrics::register(&registry),
            connections: ConnectionMetrics::register(&registry),
            reload: ReloadMetrics::register(&registry),
            strategy: RwLock::new(strategy),
            processes: ProcessMetrics::register(&registry),
            generation: GenerationMetrics::register(&generation_registry, seconds_buckets()),
            generation_registry,
            registry,
            process,
            startup,
            startup_seconds,
            build_info,
        }
    }

    /// Marks start-up work until the guard drops: the request histograms (queue wait,
    /// tokenization, inference, batch shape) record nothing meanwhile, and
    /// `concur_startup_seconds{stage}` gets its duration. Exact only while no request can
    /// reach the pipeline, which holds during start-up: inference routes answer 503 until
    /// the server is ready.
    pub fn startup_work(&self, stage: &'static str) -> StartupWork<'_> {
        self.startup.fetch_add(1, Ordering::AcqRel);
        StartupWork {
            metrics: self,
            stage,
            started: Instant::now(),
        }
    }

    /// Sets `concur_build_info` (once the engines have loaded ONNX Runtime, whose version
    /// is known only then).
    pub fn set_build_info(&self, onnxruntime: &str) {
        // vergen's placeholder when the build had no git checkout or no rustc to ask.
        let known = |v: Option<&'static str>| {
            v.filter(|v| !v.is_empty() && !v.starts_with("VERGEN"))
                .unwrap_or("unknown")
        };
        self.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                known(option_env!("VERGEN_GIT_SHA")),
                known(option_env!("VERGEN_RUSTC_SEMVER")),
                onnxruntime,
            ])
            .set(1);
    }

    /// The strategy label from now on (a reload switched strategy).
    pub fn set_strategy(&self, strategy: &'static str) {
        *self.strategy.write().unwrap_or_else(|p| p.into_inner()) = strategy;
    }

    /// Counts a rejection.
    pub fn reject(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let mut families = self.registry.gather();
        families.extend(self.generation_registry.gather());
        families.extend(self.process.gather());
        let strategy = *self.strategy.read().unwrap_or_else(|p| p.into_inner());
        reload::label_strategy(&mut families, strategy);
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests;
