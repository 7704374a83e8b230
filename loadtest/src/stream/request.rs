//! One streamed chat completion over the OpenAI protocol: the request
//! body, and the server-sent events read into a [`Trace`] as they arrive.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use rand::Rng;
use serde::Deserialize;

use super::trace::{Chunk, End, Trace, Usage};
use crate::client::Client;

/// The chat route every OpenAI-compatible server serves.
pub const PATH: &str = "/v1/chat/completions";

/// `max_tokens` per request: fixed, or drawn uniformly from a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxTokens {
    /// Every request asks for this many.
    Fixed(u32),
    /// Each request draws from `lo..=hi`.
    Uniform(u32, u32),
}

impl MaxTokens {
    /// This request's `max_tokens`.
    pub fn draw(self, rng: &mut impl Rng) -> u32 {
        match self {
            MaxTokens::Fixed(n) => n,
            MaxTokens::Uniform(lo, hi) => rng.random_range(lo..=hi),
        }
    }
}

impl FromStr for MaxTokens {
    type Err = anyhow::Error;

    /// `128`, or `16-256` for a uniform draw.
    fn from_str(s: &str) -> Result<Self> {
        let num = |p: &str| -> Result<u32> {
            match p.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("max tokens {p:?}: expected a positive integer"),
            }
        };
        match s.split_once('-') {
            None => Ok(MaxTokens::Fixed(num(s)?)),
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    bail!("max tokens {s:?}: the range is empty");
                }
                Ok(MaxTokens::Uniform(lo, hi))
            }
        }
    }
}

impl fmt::Display for MaxTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxTokens::Fixed(n) => write!(f, "{n}"),
            MaxTokens::Uniform(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

/// What every request of a run shares.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatParams {
    /// The `model` field, e.g. `SmolLM2-135M-Instruct`.
    pub model: String,
    /// A system message before each user message.
    pub system: Option<String>,
    /// 0 is greedy decoding, so a run repeats.
    pub temperature: f64,
}

impl ChatParams {
    /// The JSON body: one (optional) system and one user message, streamed,
    /// with the usage asked for in the last chunk.
    pub fn body(&self, user: &str, max_tokens: u32) -> Vec<u8> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(serde_json::json!({"role": "system", "content": system}));
        }
        messages.push(serde_json::json!({"role": "user", "content": user}));
        let v = serde_json::json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        serde_json::to_vec(&v).expect("JSON of strings and numbers serialises")
    }
}

/// The parts of a `chat.completion.chunk` that matter here.
#[derive(Deserialize)]
struct ChunkBody {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

/// Sends one streamed chat request and records when each text chunk
/// arrived. Never fails: every way it can go wrong is an [`End`]. Bounded
/// by `timeout` from the call.
pub async fn send(client: &Client, body: Vec<u8>, scheduled: Instant, timeout: Duration) -> Trace {
    let sent = Instant::now();
    let mut trace = Trace {
        scheduled,
        sent,
        chunks: Vec::new(),
        usage: None,
        done: sent,
        end: End::Transport,
    };
    let end = tokio::time::timeout(timeout, read(client, body, &mut trace)).await;
    trace.end = end.unwrap_or(End::Timeout);
    trace.done = Instant::now();
    trace
}

/// The exchange itself, filling `trace` as chunks arrive.
async fn read(client: &Client, body: Vec<u8>, trace: &mut Trace) -> End {
    let Ok(resp) = client.post_json_streaming(PATH, body).await else {
        return End::Transport;
    };
    let status = resp.status();
    if !status.is_success() {
        // Read the (short) error body so the connection can be reused.
        let _ = resp.into_body().collect().await;
        return End::Status(status.as_u16());
    }
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        let _ = resp.into_body().collect().await;
        return End::NotStreaming;
    }
    let mut events = resp.into_body().into_data_stream().eventsource();
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            return End::Broken;
        };
        let data = event.data.trim();
        if data == "[DONE]" {
            // The stream is over for the user; whatever follows (the
            // body's terminator) is not waited for: the connection closes.
            return End::Done;
        }
        if let Err(end) = on_chunk(data, trace) {
            return end;
        }
    }
    End::NoDone
}

/// Accounts one `data:` payload.
fn on_chunk(data: &str, trace: &mut Trace) -> Result<(), End> {
    let at = Instant::now();
    let chunk: ChunkBody = serde_json::from_str(data).map_err(|_| End::BadChunk)?;
    if chunk.error.is_some() {
        return Err(End::StreamError);
    }
    if chunk.usage.is_some() {
        trace.usage = chunk.usage;
    }
    let has_text = chunk.choices.iter().any(|c| {
        c.delta
            .as_ref()
            .and_then(|d| d.content.as_deref())
            .is_some_and(|s| !s.is_empty())
    });
    if has_text {
        trace.chunks.push(Chunk {
            at,
            usage_tokens: chunk.usage.map(|u| u.completion_tokens),
        });
    }
    Ok(())
}

/// Checks the chat parameters before a run sends anything.
pub fn check(params: &ChatParams) -> Result<()> {
    if params.model.trim().is_empty() {
        bail!("--model must name the served model");
    }
    if !(params.temperature.is_finite() && params.temperature >= 0.0) {
        bail!("temperature must be a non-negative number");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn max_tokens_parse_and_draw_within_range() {
        assert_eq!("128".parse::<MaxTokens>().unwrap(), MaxTokens::Fixed(128));
        let u: MaxTokens = "16-256".parse().unwrap();
        assert_eq!(u, MaxTokens::Uniform(16, 256));
        assert_eq!(u.to_string(), "16-256");
        for bad in ["0", "-5", "9-3", "x", "1-"] {
            assert!(bad.parse::<MaxTokens>().is_err(), "{bad}");
        }
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<u32> = (0..2000).map(|_| u.draw(&mut rng)).collect();
        assert!(draws.iter().all(|d| (16..=256).contains(d)));
        assert!(
            draws.contains(&16) && draws.contains(&256),
            "both ends drawn"
        );
        let mut again = StdRng::seed_from_u64(1);
        assert_eq!(u.draw(&mut again), draws[0], "seeded");
    }

    #[test]
    fn bodies_ask_for_a_greedy_stream_with_usage() {
        let p = ChatParams {
            model: "SmolLM2-135M-Instruct".into(),
            system: Some("Be brief.".into()),
            temperature: 0.0,
        };
        let v: serde_json::Value = serde_json::from_slice(&p.body("hi", 64)).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["temperature"], 0.0);
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "hi");
        let plain = ChatParams { system: None, ..p };
        let v: serde_json::Value = serde_json::from_slice(&plain.body("hi", 1)).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn chunks_with_text_are_kept_and_usage_remembered() {
        let base = Instant::now();
        let mut t = Trace {
            scheduled: base,
            sent: base,
            chunks: Vec::new(),
            usage: None,
            done: base,
            end: End::Transport,
        };
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}"#;
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#;
        let last =
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#;
        for d in [role, text, last] {
            on_chunk(d, &mut t).unwrap();
        }
        assert_eq!(t.chunks.len(), 1);
        assert_eq!(t.chunks[0].usage_tokens, None);
        assert_eq!(t.usage.unwrap().completion_tokens, 1);
        assert_eq!(on_chunk("{nope", &mut t), Err(End::BadChunk));
        let err = r#"{"error":{"message":"context full","type":"server_error"}}"#;
        assert_eq!(on_chunk(err, &mut t), Err(End::StreamError));
    }
}
