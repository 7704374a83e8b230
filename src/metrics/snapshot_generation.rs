//! The generative model's part of the live page's feed (`GET /live.json`).
//!
//! Every series of generation carries the `scheduler` label. Counters and histograms are
//! summed over it: the sums only grow, so the difference of two snapshots stays right
//! across a scheduler switch. Gauges are summed too: the scheduler zeroes the label it
//! leaves, so only the live one counts.

use super::snapshot::{counters, histograms, HistogramSnapshot};
use super::Metrics;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use serde::Serialize;
use utoipa::ToSchema;

/// Generation, cumulative since the server started, and the scheduler serving it now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GenerationSnapshot {
    /// The live scheduler: `sequential`, `static` or `continuous`.
    pub scheduler: String,
    /// Slots of the key/value cache: sequences that can run at once.
    pub slots: u64,
    /// Completion tokens generated; their rate is output tokens per second.
    pub generated_tokens: u64,
    /// Prompt tokens prefilled.
    pub prompt_tokens: u64,
    /// Time to first token: from arrival to the first completion token, in seconds.
    /// Empty bounds until the first observation.
    pub ttft: HistogramSnapshot,
    /// Inter-token latency: between two tokens of one sequence, in seconds.
    pub itl: HistogramSnapshot,
    /// From arrival to admission into a slot, in seconds.
    pub queue_wait: HistogramSnapshot,
    /// Sequences admitted and not finished.
    pub active_sequences: i64,
    /// Key/value cache slots held.
    pub slots_in_use: i64,
    /// Requests waiting for admission.
    pub waiting_requests: i64,
}

impl Metrics {
    /// The generation part of the feed, for the live `scheduler` and its `slots` (the
    /// metrics know neither: the configuration and the model do).
    pub fn generation_snapshot(&self, scheduler: &str, slots: usize) -> GenerationSnapshot {
        let g = &self.generation;
        let tokens = |kind: &str| -> u64 {
            counters(&g.tokens)
                .into_iter()
                .filter(|(labels, _)| labels.get("kind").is_some_and(|k| k == kind))
                .map(|(_, n)| n as u64)
                .sum()
        };
        GenerationSnapshot {
            scheduler: scheduler.to_owned(),
            slots: slots as u64,
            generated_tokens: tokens("generated"),
            prompt_tokens: tokens("prompt"),
            ttft: summed(&g.ttft),
            itl: summed(&g.itl),
            queue_wait: summed(&g.queue_wait),
            active_sequences: gauge_sum(&g.active),
            slots_in_use: gauge_sum(&g.slots_in_use),
            waiting_requests: gauge_sum(&g.waiting),
        }
    }
}

/// Every child of a histogram family added together.
fn summed(c: &impl Collector) -> HistogramSnapshot {
    let mut sum = HistogramSnapshot::default();
    for (_, h) in histograms(c) {
        sum.add(&h);
    }
    sum
}

/// Every child of a gauge family added together.
fn gauge_sum(c: &impl Collector) -> i64 {
    c.collect()
        .iter()
        .flat_map(MetricFamily::get_metric)
        .map(|m| m.get_gauge().get_value() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_the_scheduler_label() {
        let m = Metrics::new("workers", "m");
        let g = &m.generation;
        let empty = m.generation_snapshot("continuous", 16);
        assert_eq!((empty.generated_tokens, empty.ttft.count), (0, 0));
        assert!(
            empty.ttft.le.is_empty(),
            "no bounds before the first observation"
        );

        g.tokens
            .with_label_values(&["static", "generated"])
            .inc_by(40);
        g.tokens
            .with_label_values(&["continuous", "generated"])
            .inc_by(2);
        g.tokens
            .with_label_values(&["continuous", "prompt"])
            .inc_by(9);
        g.ttft.with_label_values(&["static"]).observe(0.3);
        g.ttft.with_label_values(&["continuous"]).observe(0.02);
        g.itl.with_label_values(&["continuous"]).observe(0.01);
        // The label switched away from reads zero (the scheduler clears it).
        g.active.with_label_values(&["static"]).set(0);
        g.active.with_label_values(&["continuous"]).set(3);
        g.slots_in_use.with_label_values(&["continuous"]).set(3);
        g.waiting.with_label_values(&["continuous"]).set(7);

        let s = m.generation_snapshot("continuous", 16);
        assert_eq!((s.scheduler.as_str(), s.slots), ("continuous", 16));
        assert_eq!((s.generated_tokens, s.prompt_tokens), (42, 9));
        assert_eq!(s.ttft.count, 2);
        assert!((s.ttft.sum - 0.32).abs() < 1e-9, "{}", s.ttft.sum);
        assert_eq!(s.ttft.le.len(), s.ttft.cumulative.len());
        assert_eq!(*s.ttft.cumulative.last().unwrap(), 2);
        assert_eq!(s.itl.count, 1);
        assert_eq!(s.queue_wait.count, 0);
        let gauges = (s.active_sequences, s.slots_in_use, s.waiting_requests);
        assert_eq!(gauges, (3, 3, 7));
    }
}
