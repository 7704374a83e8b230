//! `loadtest`: drives a `concur` server and turns the strategy comparison
//! into a report.
//!
//! Module map:
//! - [`corpus`]: the chat messages sent as load (JSON lines).
//! - [`schedule`]: open-loop arrival times (Poisson or constant).
//! - [`stats`]: latency accounting from scheduled send time; HDR histograms.
//! - [`client`]: the loopback-only HTTP client and endpoint mix.
//! - [`run`]: one closed- or open-loop run against a base URL.
//! - [`idle`]: idle keep-alive connections held open beside a run.
//! - [`switch`]: live reconfiguration on a schedule during a run, reported by segment.
//! - [`progress`]: the terminal progress bar.
//! - [`prom`]: Prometheus text parsing and bucket quantiles.
//! - [`breakdown`]: per-step server figures from two `/metrics` scrapes.
//! - [`server`]: starting/stopping `concur serve`, running `concur bench`.
//! - [`peer`]: starting/stopping an external server (a peer) in its own
//!   process group.
//! - [`machine`]: CPU model, cgroup quota and affinity of the run's machine.
//! - [`search`]: the ramp-then-bisect search for the highest sustained rate.
//! - [`sweep`]: the whole comparison across config presets.
//! - [`report`] and [`svg`]: the markdown report and its charts (SVG, drawn by plotters).

#![warn(missing_docs)]

pub mod breakdown;
pub mod client;
pub mod corpus;
pub mod idle;
pub mod machine;
pub mod peer;
pub mod progress;
pub mod prom;
pub mod report;
pub mod run;
pub mod schedule;
pub mod search;
pub mod server;
pub mod stats;
pub mod svg;
pub mod sweep;
pub mod switch;
