//! The server-side view of one load step: deltas between two `/metrics`
//! scrapes, reduced to the figures the report compares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::prom::{Hist, Scrape};

/// Metric names exported by `concur` (its metrics module is the authority).
pub mod names {
    /// End-to-end request duration histogram (label `route`).
    pub const REQUEST_DURATION: &str = "concur_request_duration_seconds";
    /// Time from admission until a batch picked the request up.
    pub const QUEUE_WAIT: &str = "concur_queue_wait_seconds";
    /// Tokenization time per request.
    pub const TOKENIZATION: &str = "concur_tokenization_seconds";
    /// Forward-pass time per batch.
    pub const INFERENCE: &str = "concur_inference_seconds";
    /// Items per batch.
    pub const BATCH_SIZE: &str = "concur_batch_size";
    /// Padded tokens per batch.
    pub const BATCH_TOKENS: &str = "concur_batch_tokens";
    /// Fraction of a batch's token slots that are padding.
    pub const PADDING_RATIO: &str = "concur_batch_padding_ratio";
    /// How late the event-loop probe woke up.
    pub const EVENT_LOOP_LAG: &str = "concur_event_loop_lag_seconds";
    /// Requests by route and status.
    pub const REQUESTS: &str = "concur_requests_total";
    /// Rejections by reason.
    pub const REJECTED: &str = "concur_rejected_requests_total";
    /// `processes` only: per batch, the round trip to a child minus its forward pass.
    pub const IPC_SECONDS: &str = "concur_ipc_seconds";
    /// `processes` only: per batch, bytes to a child and back (label `direction`).
    pub const IPC_BYTES: &str = "concur_ipc_bytes";
}

/// Per-step server figures; `None` where the metric is missing or saw no
/// observations during the step. Times are in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Requests finished during the step, by status code.
    pub requests_by_status: BTreeMap<String, f64>,
    /// Rejections during the step, by reason.
    pub rejections: BTreeMap<String, f64>,
    /// Server-measured request duration, mean.
    pub request_mean_ms: Option<f64>,
    /// Server-measured request duration, p99 (bucket estimate).
    pub request_p99_ms: Option<f64>,
    /// Queue wait, mean.
    pub queue_wait_mean_ms: Option<f64>,
    /// Queue wait, p99 (bucket estimate).
    pub queue_wait_p99_ms: Option<f64>,
    /// Tokenization, mean per request.
    pub tokenization_mean_ms: Option<f64>,
    /// Forward pass, mean per batch.
    pub inference_mean_ms: Option<f64>,
    /// Forward pass, p99 per batch (bucket estimate).
    pub inference_p99_ms: Option<f64>,
    /// Batches run during the step.
    pub batches: Option<f64>,
    /// Mean items per batch.
    pub batch_size_mean: Option<f64>,
    /// Mean padded tokens per batch.
    pub batch_tokens_mean: Option<f64>,
    /// Mean fraction of token slots wasted on padding.
    pub padding_ratio_mean: Option<f64>,
    /// Event-loop lag p99 (bucket estimate).
    pub event_loop_lag_p99_ms: Option<f64>,
    /// Upper bound of the highest event-loop lag bucket hit.
    pub event_loop_lag_max_ms: Option<f64>,
    /// `processes` only: what feeding a child cost per batch, mean (µs).
    #[serde(default)]
    pub ipc_mean_us: Option<f64>,
    /// `processes` only: the same, p99 (bucket estimate, µs).
    #[serde(default)]
    pub ipc_p99_us: Option<f64>,
    /// `processes` only: mean bytes per batch sent to the child (token ids).
    #[serde(default)]
    pub ipc_bytes_to_child_mean: Option<f64>,
    /// `processes` only: mean bytes per batch read back (vectors).
    #[serde(default)]
    pub ipc_bytes_from_child_mean: Option<f64>,
}

fn delta(before: &Scrape, after: &Scrape, name: &str) -> Option<Hist> {
    let d = after
        .hist(name, &[])?
        .delta(before.hist(name, &[]).as_ref());
    (d.count > 0.0).then_some(d)
}

fn counter_delta(
    before: &Scrape,
    after: &Scrape,
    name: &str,
    label: &str,
) -> BTreeMap<String, f64> {
    let prev = before.sum_by(name, label);
    after
        .sum_by(name, label)
        .into_iter()
        .map(|(k, v)| {
            let d = v - prev.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

fn ms(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite()).map(|v| v * 1000.0)
}

/// `route` label values of the inference endpoints. Series of other
/// routes (`/metrics` itself, `/ready`, ...) are left out so that the
/// scrapes and probes of the load tester do not dilute request figures.
pub const INFERENCE_ROUTES: [&str; 3] = ["embeddings", "embed", "chat"];

fn inference_only(s: &Scrape) -> Scrape {
    s.clone().retain(|x| {
        x.labels
            .get("route")
            .is_none_or(|r| INFERENCE_ROUTES.contains(&r.as_str()))
    })
}

/// Reduces the scrapes taken before and after a step to its breakdown.
pub fn breakdown(before: &Scrape, after: &Scrape) -> Breakdown {
    let (before, after) = (&inference_only(before), &inference_only(after));
    let h = |name| delta(before, after, name);
    let request = h(names::REQUEST_DURATION);
    let queue = h(names::QUEUE_WAIT);
    let inference = h(names::INFERENCE);
    let lag = h(names::EVENT_LOOP_LAG);
    let ipc = h(names::IPC_SECONDS);
    let us = |x: Option<f64>| x.filter(|v| v.is_finite()).map(|v| v * 1e6);
    let bytes = |direction| {
        let d = after
            .hist(names::IPC_BYTES, &[("direction", direction)])?
            .delta(
                before
                    .hist(names::IPC_BYTES, &[("direction", direction)])
                    .as_ref(),
            );
        (d.count > 0.0).then(|| d.mean()).flatten()
    };
    Breakdown {
        requests_by_status: counter_delta(before, after, names::REQUESTS, "status"),
        rejections: counter_delta(before, after, names::REJECTED, "reason"),
        request_mean_ms: ms(request.as_ref().and_then(Hist::mean)),
        request_p99_ms: ms(request.as_ref().and_then(|d| d.quantile(0.99))),
        queue_wait_mean_ms: ms(queue.as_ref().and_then(Hist::mean)),
        queue_wait_p99_ms: ms(queue.as_ref().and_then(|d| d.quantile(0.99))),
        tokenization_mean_ms: ms(h(names::TOKENIZATION).and_then(|d| d.mean())),
        inference_mean_ms: ms(inference.as_ref().and_then(Hist::mean)),
        inference_p99_ms: ms(inference.as_ref().and_then(|d| d.quantile(0.99))),
        batches: inference.as_ref().map(|d| d.count),
        batch_size_mean: h(names::BATCH_SIZE).and_then(|d| d.mean()),
        batch_tokens_mean: h(names::BATCH_TOKENS).and_then(|d| d.mean()),
        padding_ratio_mean: h(names::PADDING_RATIO).and_then(|d| d.mean()),
        event_loop_lag_p99_ms: ms(lag.as_ref().and_then(|d| d.quantile(0.99))),
        event_loop_lag_max_ms: ms(lag.as_ref().and_then(Hist::max_bound)),
        ipc_mean_us: us(ipc.as_ref().and_then(Hist::mean)),
        ipc_p99_us: us(ipc.as_ref().and_then(|d| d.quantile(0.99))),
        ipc_bytes_to_child_mean: bytes("to_child"),
        ipc_bytes_from_child_mean: bytes("from_child"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_between_scrapes() {
        let before = Scrape::parse(
            "concur_batch_size_bucket{le=\"8\"} 2\nconcur_batch_size_bucket{le=\"+Inf\"} 2\n\
             concur_batch_size_sum 4\nconcur_batch_size_count 2\n\
             concur_rejected_requests_total{reason=\"overloaded\"} 5\n\
             concur_event_loop_lag_seconds_bucket{le=\"0.001\"} 100\n\
             concur_event_loop_lag_seconds_bucket{le=\"0.1\"} 100\n\
             concur_event_loop_lag_seconds_bucket{le=\"+Inf\"} 100\n\
             concur_event_loop_lag_seconds_sum 0.01\nconcur_event_loop_lag_seconds_count 100\n",
        )
        .unwrap();
        let after = Scrape::parse(
            "concur_batch_size_bucket{le=\"8\"} 6\nconcur_batch_size_bucket{le=\"+Inf\"} 6\n\
             concur_batch_size_sum 24\nconcur_batch_size_count 6\n\
             concur_rejected_requests_total{reason=\"overloaded\"} 5\n\
             concur_rejected_requests_total{reason=\"deadline\"} 2\n\
             concur_requests_total{route=\"embeddings\",status=\"200\"} 9\n\
             concur_requests_total{route=\"metrics\",status=\"200\"} 2\n\
             concur_event_loop_lag_seconds_bucket{le=\"0.001\"} 150\n\
             concur_event_loop_lag_seconds_bucket{le=\"0.1\"} 200\n\
             concur_event_loop_lag_seconds_bucket{le=\"+Inf\"} 200\n\
             concur_event_loop_lag_seconds_sum 1\nconcur_event_loop_lag_seconds_count 200\n",
        )
        .unwrap();
        let b = breakdown(&before, &after);
        assert_eq!(b.batch_size_mean, Some(5.0));
        // Only the new reason changed; unchanged counters are left out.
        assert_eq!(b.rejections.len(), 1);
        assert_eq!(b.rejections["deadline"], 2.0);
        // 100 new lag samples: 50 under 1 ms, 50 in (1, 100] ms; rank 99
        // is 49 of 50 into the upper bucket.
        let p99 = b.event_loop_lag_p99_ms.unwrap();
        assert!((p99 - (1.0 + 99.0 * 49.0 / 50.0)).abs() < 1e-9, "{p99}");
        assert_eq!(b.event_loop_lag_max_ms, Some(100.0));
        assert_eq!(b.queue_wait_mean_ms, None);
        // The load tester's own scrapes are not counted as load.
        assert_eq!(b.requests_by_status["200"], 9.0);
        assert_eq!((b.ipc_mean_us, b.ipc_bytes_to_child_mean), (None, None));
    }

    #[test]
    fn ipc_per_batch_of_the_processes_strategy() {
        let scrape = |n: f64, secs: f64, to: f64, from: f64| {
            Scrape::parse(&format!(
                "concur_ipc_seconds_bucket{{le=\"0.0001\"}} {n}\nconcur_ipc_seconds_bucket{{le=\"+Inf\"}} {n}\n\
                 concur_ipc_seconds_sum {secs}\nconcur_ipc_seconds_count {n}\n\
                 concur_ipc_bytes_bucket{{direction=\"to_child\",le=\"+Inf\"}} {n}\n\
                 concur_ipc_bytes_sum{{direction=\"to_child\"}} {to}\nconcur_ipc_bytes_count{{direction=\"to_child\"}} {n}\n\
                 concur_ipc_bytes_bucket{{direction=\"from_child\",le=\"+Inf\"}} {n}\n\
                 concur_ipc_bytes_sum{{direction=\"from_child\"}} {from}\nconcur_ipc_bytes_count{{direction=\"from_child\"}} {n}\n"
            ))
            .unwrap()
        };
        let b = breakdown(
            &scrape(2.0, 0.0001, 200.0, 6000.0),
            &scrape(6.0, 0.0003, 1000.0, 30000.0),
        );
        assert!(
            (b.ipc_mean_us.unwrap() - 50.0).abs() < 1e-6,
            "{:?}",
            b.ipc_mean_us
        );
        assert_eq!(b.ipc_bytes_to_child_mean, Some(200.0));
        assert_eq!(b.ipc_bytes_from_child_mean, Some(6000.0));
    }
}
