//! concur: a CPU inference server that measures how concurrency strategies trade latency
//! for throughput.
//!
//! The request path, one module per stage (each lower stage defines the contract the
//! stage above uses):
//!
//! - [`http`]: hyper routing, typed JSON in and out, limits, errors, timing headers,
//!   response bodies built whole or streamed (server-sent events of generated tokens, fed
//!   by [`generate`]), the OpenAPI document generated from those types, and the live page
//!   (`/`, embedded from `web/`) with its feed (`/live.json`, from [`metrics::Snapshot`]).
//! - [`pipeline`]: the path below HTTP shared by every route: tokenize, admit, batch, await.
//! - [`tokenize`]: the model's tokenizer with sentence-transformers' settings.
//! - [`admission`]: a bounded queue; full means 429 at once.
//! - [`batcher`]: the queue and batching policy (size, padded tokens, wait, length-aware
//!   grouping, long inputs alone); drops expired and cancelled inputs before they reach the
//!   engine; reserves cores, then picks each batch's width.
//! - [`executor`]: the strategy, i.e. which thread runs the forward pass (`inline`,
//!   `spawn_blocking`, `rayon`, `workers`, or `processes`: child processes fed over a Unix
//!   socket), and the parallelism, i.e. on how many cores: a core budget shared by sessions
//!   of several widths, each batch's width chosen from the moment (`elastic`) or fixed.
//! - [`engine`]: synchronous ONNX Runtime sessions, mean pooling, normalisation.
//!
//! The generation path, for the generative model (a decode step is a batch whose state,
//! the key/value cache, outlives it):
//!
//! - [`generate`]: the `Generator` handle (bounded queue, one token stream per request);
//!   its scheduler, an actor that at every step decides who joins, who leaves and which
//!   prompt chunk is prefilled (`sequential`, `static`, `continuous` are rules of that one
//!   loop), and runs the step through the [`executor`] on the same core budget; the
//!   decoder, whose cache stays in fixed slots between steps; sampling; the chat template,
//!   detokenization and stop sequences.
//!
//! Beside the path: [`config`] (TOML -> validated config, and which keys may change live),
//! [`reload`] (switching the config while serving: a new executor is built and warmed,
//! swapped into the batcher between batches, the old one drained and joined),
//! [`state`] (what handlers share: the live config and services, swapped whole),
//! [`metrics`] (every Prometheus metric, and the live page's snapshot of them), [`lag`]
//! (event-loop lag probe), [`threads`] (thread budget), [`chat`] (the retrieval bot),
//! [`server`] (lifecycle and shutdown), [`connections`] (accept loops, the connection cap
//! and shedding idle connections at it; `idle` holds the per-connection timers),
//! [`bench`](mod@bench) (raw engine ceiling).

pub mod admission;
pub mod batcher;
pub mod bench;
pub mod chat;
pub mod config;
pub mod connections;
pub mod engine;
pub mod executor;
pub mod generate;
pub mod http;
mod idle;
mod info;
pub mod lag;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod server;
pub mod state;
pub mod threads;
pub mod tokenize;

pub use config::Config;
pub use server::{serve, ServeError, Server};
