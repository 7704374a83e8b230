//! Metrics of the `processes` strategy: its children, and what feeding them over a socket
//! costs per batch. Registered for every strategy (all zero outside `processes`), so
//! dashboards need no per-strategy queries.

use prometheus::{exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntGauge};
use prometheus::{IntGaugeVec, Opts, Registry};

/// The children of the `processes` strategy and their IPC.
pub struct ProcessMetrics {
    /// Children started and ready for batches.
    pub children: IntGauge,
    /// Children down after several crashes in a row, waiting out a backoff; `/ready`
    /// answers 503 while it is above zero.
    pub crash_looping: IntGauge,
    /// Resident memory of each child, by child slot (refreshed about once a second).
    pub child_rss: IntGaugeVec,
    /// Per batch: the round trip minus the child's own forward pass (encode, two socket
    /// transfers, decode, wake-ups).
    pub ipc_seconds: Histogram,
    /// Per batch: bytes written to the child (token ids) and read back (vectors).
    pub ipc_bytes: HistogramVec,
}

impl ProcessMetrics {
    pub(super) fn register(registry: &Registry) -> ProcessMetrics {
        let children = IntGauge::new(
            "worker_processes",
            "Child processes of the processes strategy that are up and ready for batches.",
        )
        .expect("valid");
        let crash_looping = IntGauge::new(
            "worker_processes_crash_looping",
            "Child processes down after several crashes in a row, waiting out a backoff.",
        )
        .expect("valid");
        let child_rss = IntGaugeVec::new(
            Opts::new(
                "worker_process_resident_memory_bytes",
                "Resident memory of each child process, by child slot.",
            ),
            &["child"],
        )
        .expect("valid");
        // 1 µs to about 1 s: socket round trips are tens of microseconds.
        let ipc_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ipc_seconds",
                "Per batch, what feeding a child process costs: the round trip minus the child's forward pass.",
            )
            .buckets(exponential_buckets(1e-6, 2.0, 21).expect("valid buckets")),
        )
        .expect("valid");
        let ipc_bytes = HistogramVec::new(
            HistogramOpts::new(
                "ipc_bytes",
                "Per batch, bytes sent to a child process (to_child) and read back (from_child).",
            )
            .buckets(exponential_buckets(64.0, 4.0, 10).expect("valid buckets")),
            &["direction"],
        )
        .expect("valid");
        for direction in ["to_child", "from_child"] {
            ipc_bytes.with_label_values(&[direction]);
        }
        for c in [
            Box::new(children.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(crash_looping.clone()),
            Box::new(child_rss.clone()),
            Box::new(ipc_seconds.clone()),
            Box::new(ipc_bytes.clone()),
        ] {
            registry.register(c).expect("unique name");
        }
        ProcessMetrics {
            children,
            crash_looping,
            child_rss,
            ipc_seconds,
            ipc_bytes,
        }
    }
}
