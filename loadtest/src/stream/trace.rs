//! What one streamed completion looked like to the client (a [`Trace`]:
//! when it was scheduled and sent, when each content chunk arrived, the
//! usage the server reported, how it ended) and the arithmetic that turns
//! it into time to first token, inter-token latencies and a token count.
//! Pure functions of the trace, so they are tested on made-up instants.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A chunk whose delta carried text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chunk {
    /// When the client parsed it.
    pub at: Instant,
    /// `usage.completion_tokens` if this chunk carried usage (cumulative,
    /// as servers that report usage on every chunk send it).
    pub usage_tokens: Option<u64>,
}

/// The `usage` object of a completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt, chat template included.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `data: [DONE]` arrived after a 200.
    Done,
    /// A non-2xx answer (429 is counted apart from the errors).
    Status(u16),
    /// Not finished within the request timeout.
    Timeout,
    /// No response: connection refused or reset before the headers.
    Transport,
    /// A 200 that is not `text/event-stream` (`stream: true` ignored).
    NotStreaming,
    /// The body failed after the headers (the connection broke mid-stream).
    Broken,
    /// The body ended cleanly but without `data: [DONE]`.
    NoDone,
    /// The server sent an `error` object inside the stream.
    StreamError,
    /// A `data:` line that is not a JSON chunk.
    BadChunk,
}

impl End {
    /// The key under which a failure is counted; `None` for success and
    /// for 429 (a refusal by a full server, counted on its own).
    pub fn error_key(self) -> Option<String> {
        let key = match self {
            End::Done | End::Status(429) => return None,
            End::Status(code) => return Some(code.to_string()),
            End::Timeout => "timeout",
            End::Transport => "transport",
            End::NotStreaming => "not_streaming",
            End::Broken => "broken",
            End::NoDone => "no_done",
            End::StreamError => "stream_error",
            End::BadChunk => "bad_chunk",
        };
        Some(key.to_string())
    }
}

/// One stream as the client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// When the load model wanted it sent; latencies count from here.
    pub scheduled: Instant,
    /// When the client started sending it.
    pub sent: Instant,
    /// The chunks that carried text, in arrival order.
    pub chunks: Vec<Chunk>,
    /// The last `usage` the server sent, if any.
    pub usage: Option<Usage>,
    /// When the stream ended (the `[DONE]`, or the failure).
    pub done: Instant,
    /// How it ended.
    pub end: End,
}

/// Where a stream's token counts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Every text chunk carried cumulative usage: exact per chunk.
    ChunkUsage,
    /// Only the final usage: its total spread evenly over the text chunks.
    FinalUsage,
    /// No usage at all: one token per text chunk.
    Chunks,
}

impl TokenSource {
    /// The name used in JSON and the summary.
    pub fn name(self) -> &'static str {
        match self {
            TokenSource::ChunkUsage => "chunk_usage",
            TokenSource::FinalUsage => "final_usage",
            TokenSource::Chunks => "chunks",
        }
    }
}

/// The figures of one finished stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Timings {
    /// Scheduled send to the first text chunk.
    pub ttft: Option<Duration>,
    /// Scheduled send to the end of the stream.
    pub e2e: Duration,
    /// Per-token gaps after the first chunk: `(gap / tokens, tokens)` for
    /// each later chunk, the count rounded to a whole number, at least 1.
    pub itl: Vec<(Duration, u64)>,
    /// Mean time per output token after the first chunk: the span from the
    /// first to the last text chunk over the tokens of the chunks after the first.
    pub tpot: Option<Duration>,
    /// Output tokens: the final usage if sent, else the chunks' counts.
    pub tokens: f64,
    /// Tokens attributed to each text chunk (same order as the chunks).
    pub chunk_tokens: Vec<f64>,
    /// Where the counts came from.
    pub source: TokenSource,
}

/// Tokens carried by each text chunk, and where that count came from.
pub fn chunk_tokens(chunks: &[Chunk], usage: Option<&Usage>) -> (Vec<f64>, TokenSource) {
    let cumulative: Option<Vec<u64>> = chunks.iter().map(|c| c.usage_tokens).collect();
    if let Some(cum) = cumulative.filter(|c| !c.is_empty()) {
        // Differences of a running total; a total that goes backwards is
        // a server bug, counted as zero rather than negative.
        let mut prev = 0;
        let counts = cum
            .iter()
            .map(|&c| {
                let k = c.saturating_sub(prev);
                prev = prev.max(c);
                k as f64
            })
            .collect();
        return (counts, TokenSource::ChunkUsage);
    }
    match usage {
        Some(u) if !chunks.is_empty() => {
            let each = u.completion_tokens as f64 / chunks.len() as f64;
            (vec![each; chunks.len()], TokenSource::FinalUsage)
        }
        _ => (vec![1.0; chunks.len()], TokenSource::Chunks),
    }
}

/// TTFT, ITL, TPOT and the token count of one stream.
///
/// A chunk attributed zero tokens (text held back and flushed without a
/// new token) is no token boundary: it gets no ITL sample, and the next
/// gap runs from the last chunk that did carry tokens.
pub fn timings(t: &Trace) -> Timings {
    let (counts, source) = chunk_tokens(&t.chunks, t.usage.as_ref());
    let mut itl = Vec::new();
    let mut last = None;
    for (chunk, &k) in t.chunks.iter().zip(&counts) {
        if k <= 0.0 {
            continue;
        }
        if let Some(prev) = last {
            let gap = chunk.at.saturating_duration_since(prev);
            let weight = (k.round() as u64).max(1);
            itl.push((gap.div_f64(k), weight));
        }
        last = Some(chunk.at);
    }
    let tokens = t
        .usage
        .map_or_else(|| counts.iter().sum(), |u| u.completion_tokens as f64);
    let after_first: f64 = counts.iter().skip(1).sum();
    let tpot = match (t.chunks.first(), t.chunks.last()) {
        (Some(first), Some(last)) if after_first > 0.0 => Some(
            last.at
                .saturating_duration_since(first.at)
                .div_f64(after_first),
        ),
        _ => None,
    };
    Timings {
        ttft: t
            .chunks
            .first()
            .map(|c| c.at.saturating_duration_since(t.scheduled)),
        e2e: t.done.saturating_duration_since(t.scheduled),
        itl,
        tpot,
        tokens,
        chunk_tokens: counts,
        source,
    }
}

/// Tokens of the chunks that arrived in `[from, to)`: a run's output
/// tokens per second counts what the server delivered inside its window.
pub fn tokens_between(t: &Trace, counts: &[f64], from: Instant, to: Instant) -> f64 {
    t.chunks
        .iter()
        .zip(counts)
        .filter(|(c, _)| c.at >= from && c.at < to)
        .map(|(_, k)| k)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace scheduled at 0 ms whose text chunks arrive at `at_ms`.
    fn trace(at_ms: &[u64], cumulative: Option<&[u64]>, usage: Option<u64>) -> (Trace, Instant) {
        let base = Instant::now();
        let ms = |m: u64| base + Duration::from_millis(m);
        let chunks = at_ms
            .iter()
            .enumerate()
            .map(|(i, &m)| Chunk {
                at: ms(m),
                usage_tokens: cumulative.map(|c| c[i]),
            })
            .collect();
        let t = Trace {
            scheduled: base,
            sent: ms(5),
            chunks,
            usage: usage.map(|n| Usage {
                prompt_tokens: 7,
                completion_tokens: n,
            }),
            done: ms(at_ms.last().copied().unwrap_or(0) + 1),
            end: End::Done,
        };
        (t, base)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_token_per_chunk_gives_the_gaps_themselves() {
        // Scheduled at 0, sent at 5: TTFT counts from the schedule.
        let (t, _) = trace(&[100, 120, 150, 160], None, Some(4));
        let m = timings(&t);
        assert_eq!(m.source, TokenSource::FinalUsage);
        assert_eq!(m.chunk_tokens, vec![1.0; 4]);
        assert_eq!(m.ttft, Some(ms(100)));
        assert_eq!(m.itl, vec![(ms(20), 1), (ms(30), 1), (ms(10), 1)]);
        assert_eq!(m.tpot, Some(ms(20)), "60 ms over 3 tokens");
        assert_eq!(m.e2e, ms(161));
        assert_eq!(m.tokens, 4.0);
    }

    #[test]
    fn a_chunk_of_k_tokens_splits_its_gap_over_them() {
        // Cumulative usage on every chunk: 1, then 3 (2 tokens), then 6 (3).
        let (t, _) = trace(&[50, 90, 150], Some(&[1, 3, 6]), Some(6));
        let m = timings(&t);
        assert_eq!(m.source, TokenSource::ChunkUsage);
        assert_eq!(m.chunk_tokens, vec![1.0, 2.0, 3.0]);
        assert_eq!(m.itl, vec![(ms(20), 2), (ms(20), 3)]);
        assert_eq!(m.tpot, Some(ms(20)), "100 ms over 5 tokens");
        assert_eq!(m.tokens, 6.0);
    }

    #[test]
    fn a_final_total_above_the_chunks_is_spread_evenly() {
        // 8 tokens in 4 chunks, only the last usage says so: 2 per chunk.
        let (t, _) = trace(&[10, 30, 50, 70], None, Some(8));
        let m = timings(&t);
        assert_eq!(m.chunk_tokens, vec![2.0; 4]);
        assert_eq!(m.itl, vec![(ms(10), 2); 3]);
        assert_eq!(m.tpot, Some(ms(10)));
        assert_eq!(m.tokens, 8.0);
    }

    #[test]
    fn without_usage_every_text_chunk_is_one_token() {
        let (t, _) = trace(&[10, 25], None, None);
        let m = timings(&t);
        assert_eq!(m.source, TokenSource::Chunks);
        assert_eq!(m.itl, vec![(ms(15), 1)]);
        assert_eq!(m.tokens, 2.0);
    }

    #[test]
    fn a_chunk_without_new_tokens_is_no_boundary() {
        // The 30 ms chunk adds no token: the next gap runs from 10 ms.
        let (t, _) = trace(&[10, 30, 50], Some(&[1, 1, 2]), None);
        let m = timings(&t);
        assert_eq!(m.chunk_tokens, vec![1.0, 0.0, 1.0]);
        assert_eq!(m.itl, vec![(ms(40), 1)]);
        assert_eq!(m.tokens, 2.0, "the last cumulative count");
        assert_eq!(m.tpot, Some(ms(40)));
    }

    #[test]
    fn streams_without_text_have_no_ttft() {
        let (t, _) = trace(&[], None, Some(0));
        let m = timings(&t);
        assert_eq!((m.ttft, m.tpot, m.itl.len()), (None, None, 0));
        assert_eq!(m.tokens, 0.0);
        let (one, _) = trace(&[40], None, Some(1));
        let m = timings(&one);
        assert_eq!((m.ttft, m.tpot, m.itl.len()), (Some(ms(40)), None, 0));
    }

    #[test]
    fn tokens_are_counted_by_arrival_inside_the_window() {
        let (t, base) = trace(&[10, 20, 30, 40], Some(&[1, 3, 4, 5]), None);
        let (counts, _) = chunk_tokens(&t.chunks, None);
        // [20, 40): the chunks at 20 (2 tokens) and 30 (1).
        assert_eq!(
            tokens_between(&t, &counts, base + ms(20), base + ms(40)),
            3.0
        );
    }

    #[test]
    fn only_real_failures_have_an_error_key() {
        assert_eq!(End::Done.error_key(), None);
        assert_eq!(End::Status(429).error_key(), None);
        assert_eq!(End::Status(503).error_key().as_deref(), Some("503"));
        assert_eq!(End::Broken.error_key().as_deref(), Some("broken"));
    }
}
