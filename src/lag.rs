//! The event-loop lag probe: a task that asks to wake at a fixed interval and records how
//! late it wakes. A forward pass on a tokio worker thread (the `inline` strategy) shows
//! up here as lag of the order of the batch's inference time.

use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown` is cancelled.
pub async fn probe(interval: Duration, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    // After a stall, measure from now on rather than firing the missed ticks back to back.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut expected = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            woke = ticker.tick() => {
                let now = Instant::now();
                let late = now.saturating_duration_since(expected.max(woke));
                metrics.event_loop_lag.observe(late.as_secs_f64());
                expected = now + interval;
            }
        }
    }
}
