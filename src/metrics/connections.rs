//! Metrics of the connection registry (`src/connections/registry.rs` updates them).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

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
    pub(super) fn register(registry: &Registry) -> ConnectionMetrics {
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
