//! Metrics of generation, labelled with the scheduler that produced them: time to first
//! token and inter-token latency (what a streaming user feels), tokens, slots and steps.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every generation series carries `scheduler`; the registry adds `strategy` and `model`.
pub struct GenerationMetrics {
    /// From a request's arrival at the scheduler to its first completion token.
    pub ttft: HistogramVec,
    /// Between two consecutive tokens of one sequence.
    pub itl: HistogramVec,
    /// From arrival to admission (a slot and, for `static`, the next batch).
    pub queue_wait: HistogramVec,
    /// Tokens, by `kind`: prompt (prefilled) or generated.
    pub tokens: IntCounterVec,
    /// Sequences admitted and not finished (prefilling or decoding).
    pub active: IntGaugeVec,
    /// Cache slots held.
    pub slots_in_use: IntGaugeVec,
    /// Requests waiting for admission.
    pub waiting: IntGaugeVec,
    /// Tokens one step fed the model (decode rows plus a prefill chunk).
    pub step_tokens: HistogramVec,
    /// Duration of one step on the engine.
    pub step_seconds: HistogramVec,
    /// Prefill chunks run.
    pub prefill_chunks: IntCounterVec,
    /// Finished sequences by `reason`: stop, length, cancelled, deadline, error.
    pub finished: IntCounterVec,
}

impl GenerationMetrics {
    pub(super) fn register(registry: &Registry, seconds: Vec<f64>) -> GenerationMetrics {
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &["scheduler"],
            )
            .expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique name");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["scheduler"]).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique name");
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique name");
            c
        };
        let token_buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        GenerationMetrics {
            ttft: hist(
                "generation_ttft_seconds",
                "Time to first token: from arrival to the first completion token.",
                seconds.clone(),
            ),
            itl: hist(
                "generation_itl_seconds",
                "Inter-token latency: between two consecutive tokens of one sequence.",
                seconds.clone(),
            ),
            queue_wait: hist(
                "generation_queue_wait_seconds",
                "From arrival to admission into a slot.",
                seconds.clone(),
            ),
            tokens: counter(
                "generation_tokens_total",
                "Tokens processed, by kind: prompt (prefilled) or generated.",
                &["scheduler", "kind"],
            ),
            active: gauge(
                "generation_active_sequences",
                "Sequences admitted and not finished.",
            ),
            slots_in_use: gauge(
                "generation_slots_in_use",
                "Key/value cache slots held by sequences.",
            ),
            waiting: gauge(
                "generation_waiting_requests",
                "Requests waiting for admission.",
            ),
            step_tokens: hist(
                "generation_step_tokens",
                "Tokens one step fed the model: decode rows plus a prefill chunk.",
                token_buckets,
            ),
            step_seconds: hist(
                "generation_step_seconds",
                "Duration of one step on the engine.",
                seconds,
            ),
            prefill_chunks: counter(
                "generation_prefill_chunks_total",
                "Prompt chunks prefilled.",
                &["scheduler"],
            ),
            finished: counter(
                "generation_finished_total",
                "Finished sequences, by reason.",
                &["scheduler", "reason"],
            ),
        }
    }
}
