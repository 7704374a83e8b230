//! `loadtest`: drives a `concur` server and turns the strategy comparison
//! into a report.
//!
//! The crate reads top-down: each module imports only modules listed below
//! it, never one above (`cargo test` would still pass with a cycle, so keep
//! to this order when adding one).
//!
//! - [`sweep`]: the whole comparison across config presets; its
//!   `report` child writes `report.md` and the charts from the sweep's
//!   results (its `options` and `results` children), which sit below it.
//! - [`stream`]: streaming chat load (OpenAI server-sent events) for any
//!   OpenAI-compatible server: TTFT, inter-token latency, tokens/s.
//! - [`search`]: the ramp-then-bisect search for the highest sustained rate.
//! - [`run`]: one closed- or open-loop run against a base URL.
//! - [`switch`]: live reconfiguration on a schedule during a run, reported by segment.
//! - [`idle`]: idle keep-alive connections held open beside a run.
//! - [`progress`]: the terminal progress bar.
//! - [`stats`]: latency accounting from scheduled send time; HDR histograms.
//! - [`llama_server`]: llama.cpp's `llama-server` started as a peer.
//! - [`peer`]: starting/stopping an external server (a peer) in its own
//!   process group.
//! - [`server`]: starting/stopping `concur serve`, running `concur bench`.
//! - [`client`]: the loopback-only HTTP client, the endpoint mix, and how
//!   a request ended.
//! - [`breakdown`]: per-step server figures from two `/metrics` scrapes.
//! - [`prom`]: Prometheus text parsing and bucket quantiles.
//! - [`svg`]: SVG charts drawn by plotters.
//! - [`machine`]: CPU model, cgroup quota and affinity of the run's machine.
//! - [`schedule`]: open-loop arrival times (Poisson or constant).
//! - [`corpus`]: the chat messages sent as load (JSON lines).

#![warn(missing_docs)]

pub mod breakdown;
pub mod client;
pub mod corpus;
pub mod idle;
pub mod llama_server;
pub mod machine;
pub mod peer;
pub mod progress;
pub mod prom;
pub mod run;
pub mod schedule;
pub mod search;
pub mod server;
pub mod stats;
pub mod stream;
pub mod svg;
pub mod sweep;
pub mod switch;
