//! Metrics of live reconfiguration, and the live `strategy` label.

use prometheus::proto::{LabelPair, MetricFamily};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// How a reload ended, for `concur_reloads_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is live.
    Applied,
    /// Nothing differed; nothing was done.
    Unchanged,
    /// Invalid, or it changed a key that cannot change live; the old config stays.
    Rejected,
    /// Valid, but building the new executor failed; the old config stays.
    Failed,
}

impl ReloadOutcome {
    pub const ALL: [ReloadOutcome; 4] = [
        ReloadOutcome::Applied,
        ReloadOutcome::Unchanged,
        ReloadOutcome::Rejected,
        ReloadOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Rejected => "rejected",
            ReloadOutcome::Failed => "failed",
        }
    }
}

pub struct ReloadMetrics {
    /// Starts at 1; each applied reload adds one. Dashboards mark its changes.
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
}

impl ReloadMetrics {
    pub(super) fn register(registry: &Registry) -> ReloadMetrics {
        let generation = IntGauge::new(
            "config_generation",
            "The live configuration's generation: 1 at start, +1 per applied reload.",
        )
        .expect("valid");
        generation.set(1);
        let reloads = IntCounterVec::new(
            Opts::new("reloads_total", "Configuration reloads, by outcome."),
            &["outcome"],
        )
        .expect("valid");
        for o in ReloadOutcome::ALL {
            reloads.with_label_values(&[o.as_str()]);
        }
        registry
            .register(Box::new(generation.clone()))
            .expect("unique");
        registry
            .register(Box::new(reloads.clone()))
            .expect("unique");
        ReloadMetrics {
            generation,
            reloads,
        }
    }

    pub fn count(&self, outcome: ReloadOutcome) {
        self.reloads.with_label_values(&[outcome.as_str()]).inc();
    }
}

/// Adds `strategy="<live>"` to every series at scrape time. Not a registry constant label,
/// because the strategy changes with a reload: series carry the strategy live when they are
/// scraped, so `rate()` of a counter is attributed to the strategy that was serving.
pub(super) fn label_strategy(families: &mut [MetricFamily], strategy: &str) {
    for family in families {
        for metric in family.mut_metric() {
            let mut labels = metric.take_label();
            labels.retain(|l| l.name() != "strategy");
            let mut pair = LabelPair::default();
            pair.set_name("strategy".into());
            pair.set_value(strategy.into());
            labels.push(pair);
            labels.sort_by(|a, b| a.name().cmp(b.name()));
            metric.set_label(labels);
        }
    }
}
