//! Accounting for a streaming run: TTFT, ITL, TPOT and end-to-end
//! histograms, tokens, errors, 429s and late sends.
//!
//! A stream counts toward the run when it was *scheduled* inside the
//! measured window, as in [`crate::stats`]; only successful streams enter
//! the latency histograms. Output tokens per second is different: it counts
//! the tokens of successful streams whose chunks *arrived* inside the window,
//! whenever the stream was scheduled, so a stream that straddles an edge
//! adds only what the server delivered within the window.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::trace::{timings, tokens_between, End, TokenSource, Trace};
use crate::stats::LatencySummary;

/// Latencies above an hour are clamped; no request timeout is that long.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 0.1% resolution, ample for percentiles.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("static histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration, count: u64) {
    let us = (d.as_micros() as u64).max(1);
    // Saturating: a value past the bound is clamped, never an error.
    let _ = h.record_n(us.min(MAX_TRACKABLE_US), count);
}

/// Counts and histograms of one measured window.
pub struct StreamRecorder {
    late_threshold: Duration,
    window: (Instant, Instant),
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    tpot: Histogram<u64>,
    e2e: Histogram<u64>,
    successes: u64,
    rejected: u64,
    errors: BTreeMap<String, u64>,
    late_sends: u64,
    max_send_delay: Duration,
    unsent: u64,
    output_tokens: f64,
    prompt_tokens: u64,
    tokens_in_window: f64,
    sources: BTreeMap<TokenSource, u64>,
}

impl StreamRecorder {
    /// Counts streams scheduled in `[from, to)` and tokens arriving in it;
    /// a send more than `late_threshold` behind its schedule is late.
    pub fn new(late_threshold: Duration, from: Instant, to: Instant) -> Self {
        StreamRecorder {
            late_threshold,
            window: (from, to),
            ttft: new_histogram(),
            itl: new_histogram(),
            tpot: new_histogram(),
            e2e: new_histogram(),
            successes: 0,
            rejected: 0,
            errors: BTreeMap::new(),
            late_sends: 0,
            max_send_delay: Duration::ZERO,
            unsent: 0,
            output_tokens: 0.0,
            prompt_tokens: 0,
            tokens_in_window: 0.0,
            sources: BTreeMap::new(),
        }
    }

    /// Accounts one finished stream (from the warm-up too: its tokens may
    /// arrive inside the window).
    pub fn record(&mut self, t: &Trace) {
        let measured = t.scheduled >= self.window.0;
        let m = timings(t);
        if t.end == End::Done {
            let (from, to) = self.window;
            self.tokens_in_window += tokens_between(t, &m.chunk_tokens, from, to);
        }
        if !measured {
            return;
        }
        let delay = t.sent.saturating_duration_since(t.scheduled);
        self.late_sends += u64::from(delay > self.late_threshold);
        self.max_send_delay = self.max_send_delay.max(delay);
        if let Some(key) = t.end.error_key() {
            *self.errors.entry(key).or_insert(0) += 1;
            return;
        }
        if t.end != End::Done {
            self.rejected += 1;
            return;
        }
        self.successes += 1;
        self.output_tokens += m.tokens;
        self.prompt_tokens += t.usage.map_or(0, |u| u.prompt_tokens);
        *self.sources.entry(m.source).or_insert(0) += 1;
        if let Some(ttft) = m.ttft {
            record(&mut self.ttft, ttft, 1);
        }
        for (gap, n) in m.itl {
            record(&mut self.itl, gap, n);
        }
        if let Some(tpot) = m.tpot {
            record(&mut self.tpot, tpot, 1);
        }
        record(&mut self.e2e, m.e2e, 1);
    }

    /// Streams scheduled inside the window but never sent because the run
    /// ended while the client was behind: errors of kind `unsent`.
    pub fn record_unsent(&mut self, n: u64) {
        self.unsent += n;
        if n > 0 {
            *self.errors.entry("unsent".into()).or_insert(0) += n;
        }
    }

    /// One line for the progress bar.
    pub fn status(&self) -> String {
        format!(
            "ok {} err {} 429 {} tokens {:.0}",
            self.successes,
            self.errors.values().sum::<u64>(),
            self.rejected,
            self.output_tokens
        )
    }

    /// Freezes the counts; rates are over `window`, the measured duration.
    pub fn totals(&self, window: Duration) -> StreamTotals {
        let secs = window.as_secs_f64().max(1e-9);
        let error_count: u64 = self.errors.values().sum();
        StreamTotals {
            requests: self.successes + self.rejected + error_count,
            successes: self.successes,
            rejected_429: self.rejected,
            errors: self.errors.clone(),
            late_sends: self.late_sends,
            unsent: self.unsent,
            max_send_delay_ms: self.max_send_delay.as_secs_f64() * 1000.0,
            requests_per_s: self.successes as f64 / secs,
            output_tokens: self.output_tokens,
            output_tokens_per_s: self.tokens_in_window / secs,
            mean_output_tokens: self.output_tokens / (self.successes.max(1) as f64),
            prompt_tokens: self.prompt_tokens,
            token_counts: self.sources.clone(),
            ttft: LatencySummary::from_histogram(&self.ttft),
            itl: LatencySummary::from_histogram(&self.itl),
            tpot: LatencySummary::from_histogram(&self.tpot),
            e2e: LatencySummary::from_histogram(&self.e2e),
        }
    }
}

/// What a streaming window produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamTotals {
    /// Streams accounted: successes, 429s and errors (unsent included).
    pub requests: u64,
    /// Streams that ended with `data: [DONE]`.
    pub successes: u64,
    /// 429 answers: the server refused at admission; not errors.
    pub rejected_429: u64,
    /// Failures by kind: a status code, `timeout`, `transport`, `broken`,
    /// `no_done`, `stream_error`, `bad_chunk`, `not_streaming`, `unsent`.
    pub errors: BTreeMap<String, u64>,
    /// Sends that left later than the late threshold after their schedule.
    pub late_sends: u64,
    /// Scheduled sends that never left before the run ended.
    pub unsent: u64,
    /// Largest gap between a scheduled and an actual send.
    pub max_send_delay_ms: f64,
    /// Successful streams per second of window.
    pub requests_per_s: f64,
    /// Output tokens of the successful streams (usage when sent).
    pub output_tokens: f64,
    /// Output tokens whose chunks arrived inside the window, per second.
    pub output_tokens_per_s: f64,
    /// Output tokens per successful stream.
    pub mean_output_tokens: f64,
    /// Prompt tokens of the successful streams, from usage (0 without).
    pub prompt_tokens: u64,
    /// Successful streams by where their token counts came from.
    pub token_counts: BTreeMap<TokenSource, u64>,
    /// Time to first token: scheduled send to the first text chunk.
    pub ttft: LatencySummary,
    /// Inter-token latency: each gap between text chunks divided over the
    /// tokens of the later chunk, one sample per token.
    pub itl: LatencySummary,
    /// Time per output token of each stream after its first chunk.
    pub tpot: LatencySummary,
    /// Scheduled send to `[DONE]`.
    pub e2e: LatencySummary,
}

impl StreamTotals {
    /// Failures of every kind (429s excluded).
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::trace::{Chunk, Usage};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn stream(base: Instant, sched: u64, at: &[u64], end: End) -> Trace {
        Trace {
            scheduled: base + ms(sched),
            sent: base + ms(sched),
            chunks: at
                .iter()
                .map(|&m| Chunk {
                    at: base + ms(m),
                    usage_tokens: None,
                })
                .collect(),
            usage: Some(Usage {
                prompt_tokens: 10,
                completion_tokens: at.len() as u64,
            }),
            done: base + ms(at.last().copied().unwrap_or(sched) + 1),
            end,
        }
    }

    #[test]
    fn counts_429s_apart_from_errors_and_tokens_by_arrival() {
        let base = Instant::now();
        let mut r = StreamRecorder::new(ms(5), base + ms(1000), base + ms(3000));
        // Warm-up stream: not counted, but its chunk at 1000 is in the window.
        r.record(&stream(base, 0, &[500, 1000], End::Done));
        r.record(&stream(base, 1000, &[1100, 1120, 1140], End::Done));
        // Straddles the end: only the chunk at 2990 is inside.
        r.record(&stream(base, 2900, &[2990, 3010], End::Done));
        r.record(&stream(base, 1500, &[], End::Status(429)));
        r.record(&stream(base, 1500, &[1600], End::Broken));
        r.record_unsent(2);
        let t = r.totals(Duration::from_secs(2));
        assert_eq!(t.requests, 6, "2 ok, one 429, one broken, 2 unsent");
        assert_eq!(t.successes, 2);
        assert_eq!(t.rejected_429, 1);
        assert_eq!(t.error_count(), 3);
        assert_eq!(t.errors["broken"], 1);
        assert_eq!(t.errors["unsent"], 2);
        assert_eq!(t.output_tokens, 5.0);
        assert_eq!(t.prompt_tokens, 20);
        assert_eq!(t.output_tokens_per_s, 2.5, "1 + 3 + 1 tokens in 2 s");
        assert_eq!(t.requests_per_s, 1.0);
        assert_eq!(t.token_counts[&TokenSource::FinalUsage], 2);
        assert_eq!(t.ttft.count, 2);
        assert_eq!(t.itl.count, 3, "three gaps of 20 ms");
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(t.itl.p50_ms, 20.0), "{:?}", t.itl);
        assert!(close(t.ttft.max_ms, 100.0), "{:?}", t.ttft);
    }

    #[test]
    fn late_sends_are_counted_from_the_schedule() {
        let base = Instant::now();
        let mut r = StreamRecorder::new(ms(5), base, base + ms(1000));
        let mut t = stream(base, 0, &[50], End::Done);
        t.sent = base + ms(30);
        r.record(&t);
        let totals = r.totals(Duration::from_secs(1));
        assert_eq!(totals.late_sends, 1);
        assert!((totals.max_send_delay_ms - 30.0).abs() < 1e-9);
        // TTFT runs from the schedule, so the 30 ms wait is inside it.
        assert!((totals.ttft.max_ms - 50.0).abs() < 0.1, "{:?}", totals.ttft);
    }
}
