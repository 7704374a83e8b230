//! Metrics of the core budget: how elastic or fixed parallelism uses the cores.

use prometheus::{Counter, IntCounterVec, IntGauge, Opts, Registry};

/// The core budget and how batches use it (elastic or fixed parallelism).
pub struct CoreMetrics {
    /// Cores inference may use.
    pub budget: IntGauge,
    /// Cores held by batches running a forward pass right now.
    pub busy: IntGauge,
    /// Core-seconds of forward passes (width x duration): `rate()` of it over the budget is
    /// the budget's utilisation, exact between scrapes unlike the gauge.
    pub busy_seconds: Counter,
    /// Batches run, by width (cores their forward pass used).
    pub batches: IntCounterVec,
}

impl CoreMetrics {
    /// Accounts one finished forward pass of `width` cores.
    pub fn record_batch(&self, width: usize, elapsed: std::time::Duration) {
        self.busy_seconds
            .inc_by(width as f64 * elapsed.as_secs_f64());
        self.batches.with_label_values(&[&width.to_string()]).inc();
    }

    pub(super) fn register(registry: &Registry) -> CoreMetrics {
        let budget = IntGauge::new("core_budget", "Cores inference may use.").expect("valid");
        let busy = IntGauge::new(
            "cores_busy",
            "Cores held by batches running a forward pass right now.",
        )
        .expect("valid");
        let busy_seconds = Counter::new(
            "core_busy_seconds_total",
            "Core-seconds spent in forward passes (width x duration); rate() / concur_core_budget = utilisation.",
        )
        .expect("valid");
        let batches = IntCounterVec::new(
            Opts::new(
                "batches_total",
                "Batches run, by width: the cores their forward pass used.",
            ),
            &["width"],
        )
        .expect("valid");
        for c in [
            Box::new(budget.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(busy.clone()),
            Box::new(busy_seconds.clone()),
            Box::new(batches.clone()),
        ] {
            registry.register(c).expect("unique name");
        }
        CoreMetrics {
            budget,
            busy,
            busy_seconds,
            batches,
        }
    }
}
