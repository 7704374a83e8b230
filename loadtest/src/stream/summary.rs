//! The result of one streaming run: JSON fields and the human summary.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::options::StreamOptions;
use super::recorder::StreamTotals;
use super::server_metrics::ServerFigures;
use crate::run::Load;
use crate::schedule::Arrival;
use crate::stats::LatencySummary;

/// One streaming run, ready for JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// `closed` or `open`.
    pub mode: String,
    /// Closed loop: concurrent conversations.
    pub streams: Option<usize>,
    /// Closed loop: pause after each stream, ms.
    pub think_time_ms: Option<f64>,
    /// Open loop: target streams per second.
    pub target_rate: Option<f64>,
    /// Open loop: gap distribution.
    pub arrival: Option<Arrival>,
    /// Open loop: streams scheduled in the window per second.
    pub offered_rps: Option<f64>,
    /// The server measured.
    pub url: String,
    /// The `model` sent.
    pub model: String,
    /// `max_tokens`: a number, or `lo-hi` drawn uniformly.
    pub max_tokens: String,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// The system message, if one was sent.
    pub system: Option<String>,
    /// Messages in the prompt corpus.
    pub prompts: usize,
    /// Seed of arrivals and `max_tokens` draws.
    pub seed: u64,
    /// Warm-up length in seconds.
    pub warmup_s: f64,
    /// Measured window in seconds.
    pub window_s: f64,
    /// Client-side counts, rates and latencies.
    #[serde(flatten)]
    pub totals: StreamTotals,
    /// The server's own figures from `/metrics`.
    pub server: ServerFigures,
}

impl StreamSummary {
    /// Assembles the summary of a finished run.
    pub fn new(
        opts: &StreamOptions,
        window: Duration,
        scheduled: Option<u64>,
        totals: StreamTotals,
        server: ServerFigures,
    ) -> Self {
        let mut s = StreamSummary {
            url: opts.base_url.clone(),
            model: opts.chat.model.clone(),
            max_tokens: opts.max_tokens.to_string(),
            temperature: opts.chat.temperature,
            system: opts.chat.system.clone(),
            prompts: opts.prompts.len(),
            seed: opts.seed,
            warmup_s: opts.warmup.as_secs_f64(),
            window_s: window.as_secs_f64(),
            offered_rps: scheduled.map(|n| n as f64 / window.as_secs_f64().max(1e-9)),
            totals,
            server,
            ..StreamSummary::default()
        };
        match opts.load {
            Load::Closed { users, think_time } => {
                s.mode = "closed".into();
                s.streams = Some(users);
                s.think_time_ms = Some(think_time.as_secs_f64() * 1000.0);
            }
            Load::Open { rate, arrival } => {
                s.mode = "open".into();
                s.target_rate = Some(rate);
                s.arrival = Some(arrival);
            }
        }
        s
    }
}

fn percentiles(l: &LatencySummary) -> String {
    format!(
        "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}  (n {})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms, l.count
    )
}

impl fmt::Display for StreamSummary {
    /// The human summary printed by `loadtest stream`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        match (self.streams, self.target_rate) {
            (Some(n), _) => write!(f, "closed loop, {n} concurrent streams")?,
            (_, Some(r)) => write!(
                f,
                "open loop, target {r:.2} streams/s ({:?}), offered {:.2}/s",
                self.arrival.unwrap_or(Arrival::Poisson),
                self.offered_rps.unwrap_or(0.0)
            )?,
            _ => write!(f, "{} loop", self.mode)?,
        }
        writeln!(
            f,
            ", model {}, max_tokens {}, temperature {}, {} prompts",
            self.model, self.max_tokens, self.temperature, self.prompts
        )?;
        writeln!(
            f,
            "window {:.1} s after {:.1} s warm-up",
            self.window_s, self.warmup_s
        )?;
        let errors: Vec<String> = t.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        writeln!(
            f,
            "streams {}  ok {}  429 {}  errors {}{}  late sends {}",
            t.requests,
            t.successes,
            t.rejected_429,
            t.error_count(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join(", "))
            },
            t.late_sends
        )?;
        let sources: Vec<String> = t
            .token_counts
            .iter()
            .map(|(k, v)| format!("{} {v}", k.name()))
            .collect();
        writeln!(
            f,
            "output {:.1} tokens/s  {:.2} streams/s  {:.1} tokens per stream  prompt tokens {}  (counted from: {})",
            t.output_tokens_per_s,
            t.requests_per_s,
            t.mean_output_tokens,
            t.prompt_tokens,
            sources.join(", ")
        )?;
        writeln!(f, "TTFT ms  {}", percentiles(&t.ttft))?;
        writeln!(f, "ITL ms   {}", percentiles(&t.itl))?;
        writeln!(f, "TPOT ms  {}", percentiles(&t.tpot))?;
        writeln!(f, "e2e ms   {}", percentiles(&t.e2e))?;
        server_lines(f, &self.server)
    }
}

/// The server's figures, one line each.
fn server_lines(f: &mut fmt::Formatter<'_>, s: &ServerFigures) -> fmt::Result {
    if let Some(e) = &s.error {
        writeln!(f, "server /metrics: {e}")?;
    }
    if s.histograms.is_empty() && s.counters.is_empty() && s.gauges.is_empty() {
        return writeln!(
            f,
            "server: no matching /metrics series ({} scrapes)",
            s.scrapes
        );
    }
    writeln!(f, "server ({} scrapes):", s.scrapes)?;
    let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    for (name, h) in &s.histograms {
        writeln!(
            f,
            "  {name}: n {:.0}  mean {}  p50 {}  p99 {}",
            h.count,
            num(h.mean),
            num(h.p50),
            num(h.p99)
        )?;
    }
    for (name, d) in &s.counters {
        writeln!(f, "  {name}: +{d}")?;
    }
    for (name, g) in &s.gauges {
        writeln!(f, "  {name}: mean {:.3}  max {:.3}", g.mean, g.max)?;
    }
    Ok(())
}
