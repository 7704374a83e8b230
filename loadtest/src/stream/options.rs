//! The options of one streaming run.

use std::sync::Arc;
use std::time::Duration;

use super::request::{ChatParams, MaxTokens};
use super::server_metrics::DEFAULT_PREFIXES;
use crate::run::Load;

/// Everything one streaming run needs. Build with [`StreamOptions::new`].
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Server base URL; loopback only.
    pub base_url: String,
    /// User messages, cycled in order.
    pub prompts: Arc<Vec<String>>,
    /// Closed loop (`users` = concurrent conversations; think time is
    /// waited after each stream) or open loop.
    pub load: Load,
    /// Model, system message, temperature.
    pub chat: ChatParams,
    /// `max_tokens` of each request.
    pub max_tokens: MaxTokens,
    /// Load applied before measuring, not counted.
    pub warmup: Duration,
    /// Length of the measured window.
    pub duration: Duration,
    /// Stop after this many measured streams.
    pub max_requests: Option<u64>,
    /// A stream not finished by then counts as `timeout`.
    pub request_timeout: Duration,
    /// Open loop only: cap on streams in flight (a send at the cap waits,
    /// becomes late, and its TTFT grows: nothing is hidden).
    pub max_inflight: usize,
    /// A send leaving later than this after its schedule counts as late.
    pub late_threshold: Duration,
    /// Seed for arrivals and `max_tokens` draws.
    pub seed: u64,
    /// Show a progress bar on stderr (only drawn on a terminal).
    pub progress: bool,
    /// `/metrics` series kept: names starting with one of these.
    pub metrics_prefixes: Vec<String>,
    /// Scrape `/metrics` this often during the window (zero: only at its
    /// start and after the run).
    pub metrics_every: Duration,
}

impl StreamOptions {
    /// Defaults: `max_tokens` 128, no warm-up, 30 s window, 120 s timeout,
    /// 256 in flight, 10 ms late threshold, seed 1, no progress bar,
    /// `/metrics` every second with the default prefixes.
    pub fn new(
        base_url: impl Into<String>,
        prompts: Arc<Vec<String>>,
        load: Load,
        chat: ChatParams,
    ) -> Self {
        StreamOptions {
            base_url: base_url.into(),
            prompts,
            load,
            chat,
            max_tokens: MaxTokens::Fixed(128),
            warmup: Duration::ZERO,
            duration: Duration::from_secs(30),
            max_requests: None,
            request_timeout: Duration::from_secs(120),
            max_inflight: 256,
            late_threshold: Duration::from_millis(10),
            seed: 1,
            progress: false,
            metrics_prefixes: DEFAULT_PREFIXES.map(String::from).to_vec(),
            metrics_every: Duration::from_secs(1),
        }
    }
}
