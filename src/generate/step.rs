//! One scheduler step as the executor runs it: row moves, a decode pass over the running
//! rows, a prefill chunk of one prompt, and sampling, all on the strategy's thread.

use super::engine::{Decoder, Forward};
use super::sampler::Sampler;
use crate::engine::EngineError;
use std::time::{Duration, Instant};

/// The engine's work for one step. Everything it needs is owned, so the step can run on
/// any thread and come back whole.
pub struct Step {
    /// Cache rows to move first: `(from, to, positions)`, in order.
    pub moves: Vec<(usize, usize, usize)>,
    /// Rows `0..n` decode one token each: their last token and their cache length.
    pub decode: Vec<(u32, usize)>,
    /// Samplers of the decoding rows, in row order.
    pub decode_samplers: Vec<Sampler>,
    /// A row run after the decoding rows and thrown away (token, cache length), so that
    /// no decode runs a single row (see the scheduler).
    pub pad: Option<(u32, usize)>,
    pub prefill: Option<Prefill>,
}

/// A chunk of one prompt, at the row after the decoding rows.
pub struct Prefill {
    pub row: usize,
    pub tokens: Vec<u32>,
    /// Prompt tokens already in the row's cache.
    pub past: usize,
    /// Set on the prompt's last chunk: the first completion token is sampled with it.
    pub sampler: Option<Sampler>,
}

/// What a step produced.
pub struct StepOutput {
    /// One token per decoding row, in row order.
    pub decoded: Vec<u32>,
    pub decode_samplers: Vec<Sampler>,
    /// The first token of a prompt whose last chunk ran, and its sampler.
    pub first: Option<(u32, Sampler)>,
    pub elapsed: Duration,
}

impl Step {
    /// Tokens the step feeds the model.
    pub fn tokens(&self) -> usize {
        self.decode.len() + self.prefill.as_ref().map_or(0, |p| p.tokens.len())
    }

    /// Runs the step on `engine`.
    pub fn run(self, engine: &mut dyn Decoder) -> Result<StepOutput, EngineError> {
        let start = Instant::now();
        for &(from, to, len) in &self.moves {
            engine.move_row(from, to, len);
        }
        let mut decode_samplers = self.decode_samplers;
        let mut decoded = Vec::with_capacity(self.decode.len());
        if !self.decode.is_empty() {
            let rows = self.decode.iter().chain(&self.pad);
            let ids: Vec<[u32; 1]> = rows.clone().map(|&(t, _)| [t]).collect();
            let tokens: Vec<&[u32]> = ids.iter().map(|t| &t[..]).collect();
            let past: Vec<usize> = rows.map(|&(_, p)| p).collect();
            let logits = engine.forward(&Forward {
                first_row: 0,
                tokens: &tokens,
                past: &past,
            })?;
            let vocab = logits.len() / tokens.len();
            for (row, sampler) in decode_samplers.iter_mut().enumerate() {
                decoded.push(sampler.sample(&logits[row * vocab..(row + 1) * vocab]));
            }
        }
        let mut first = None;
        if let Some(p) = self.prefill {
            let tokens = [&p.tokens[..]];
            let logits = engine.forward(&Forward {
                first_row: p.row,
                tokens: &tokens,
                past: &[p.past],
            })?;
            if let Some(mut sampler) = p.sampler {
                first = Some((sampler.sample(&logits), sampler));
            }
        }
        Ok(StepOutput {
            decoded,
            decode_samplers,
            first,
            elapsed: start.elapsed(),
        })
    }
}
