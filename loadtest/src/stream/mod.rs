//! `loadtest stream`: load for any OpenAI-compatible server that streams
//! chat completions (`stream: true`, server-sent events of
//! `chat.completion.chunk` ending with `data: [DONE]`), measured the way
//! LLM serving is judged.
//!
//! How the figures are counted, per stream (see [`trace`]):
//! - **TTFT**: from the *scheduled* send (the open loop's arrival time, so
//!   time spent waiting in the client counts: no coordinated omission) to
//!   the first chunk whose delta carries non-empty text. A role-only first
//!   chunk does not count.
//! - **Tokens per chunk**: exact when every text chunk carries cumulative
//!   `usage.completion_tokens` (its increase is the chunk's count); else the
//!   final usage's total spread evenly over the text chunks (one each when
//!   they match, as with llama.cpp's server); with no usage at all, one
//!   token per text chunk.
//! - **ITL**: each gap between consecutive text chunks divided by the tokens
//!   of the later chunk, entered once per token, so a chunk of k tokens
//!   gives k samples of gap/k (k rounded to a whole number, at least 1).
//! - **TPOT**: per stream, the first-to-last text chunk span over the tokens
//!   after the first chunk.
//! - **Output tokens/s**: tokens of successful streams whose chunks arrived
//!   inside the measured window, over the window.
//!
//! A stream succeeds when `data: [DONE]` arrives; a 429 is counted apart
//! (the server refusing at admission), and every other ending is an error
//! by kind. Only successful streams enter the latency histograms.
//!
//! Inside, imports only go down: [`load`] runs the loops with
//! [`summary`] (the result), [`options`], [`recorder`] (accounting),
//! [`server_metrics`] (`/metrics`) and [`request`] (one stream over HTTP);
//! [`trace`], the arithmetic, is at the bottom.

pub mod load;
pub mod options;
pub mod recorder;
pub mod request;
pub mod server_metrics;
pub mod summary;
pub mod trace;

pub use load::run;
pub use options::StreamOptions;
pub use request::{ChatParams, MaxTokens};
pub use summary::StreamSummary;
