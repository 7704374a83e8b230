//! One sequence as the scheduler tracks it: its prompt, what is in its cache, its
//! sampler, and the text on its way to the client.

use super::sampler::Sampler;
use super::text::{ChatTokenizer, Detokenizer, Release, StopMatcher};
use super::{FinishReason, GenError, GenEvent, GenRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct Seq {
    pub prompt: Vec<u32>,
    /// Prompt tokens in the cache.
    pub prefilled: usize,
    /// Completion tokens sampled so far; the last is not in the cache yet.
    pub generated: usize,
    pub last: u32,
    pub max_tokens: usize,
    /// Taken while a step runs with it, put back after.
    pub sampler: Option<Sampler>,
    pub events: mpsc::Sender<GenEvent>,
    pub queued_at: Instant,
    pub deadline: Option<Instant>,
    pub last_token_at: Option<Instant>,
    detok: Detokenizer,
    stops: StopMatcher,
}

/// Why a sequence ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Finished(FinishReason),
    Cancelled,
}

impl Seq {
    pub fn new(request: GenRequest, events: mpsc::Sender<GenEvent>, queued_at: Instant) -> Seq {
        Seq {
            max_tokens: request.max_tokens,
            sampler: Some(Sampler::new(request.sampling)),
            prompt: request.prompt,
            prefilled: 0,
            generated: 0,
            last: 0,
            events,
            queued_at,
            deadline: request.deadline,
            last_token_at: None,
            detok: Detokenizer::default(),
            stops: StopMatcher::new(request.stop),
        }
    }

    /// Tokens in the cache: what the next decode step attends to.
    pub fn cached(&self) -> usize {
        self.prefilled + self.generated.saturating_sub(1)
    }

    pub fn prompt_left(&self) -> usize {
        self.prompt.len() - self.prefilled
    }

    /// Whether the client has gone (its stream was dropped).
    pub fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// Takes a newly sampled token: sends its text, and says whether the sequence ends.
    /// `context` is the slot's size: a full slot ends the sequence as `length`.
    pub fn accept(
        &mut self,
        id: u32,
        tokenizer: &ChatTokenizer,
        stop_ids: &[u32],
        context: usize,
    ) -> Option<Ended> {
        self.generated += 1;
        self.last = id;
        if stop_ids.contains(&id) {
            // Text held back as a possible start of a stop sequence was not one.
            let held = self.stops.flush();
            if !held.is_empty() {
                self.send_text(held);
            }
            return Some(self.finish(FinishReason::Stop));
        }
        let delta = self.detok.push(tokenizer, id);
        match self.stops.push(&delta) {
            Release::Stop(text) => {
                self.send_text(text);
                return Some(self.finish(FinishReason::Stop));
            }
            Release::Text(text) => {
                if !self.send_text(text) {
                    return Some(Ended::Cancelled);
                }
            }
        }
        // The next decode would put this token in the cache: it must fit.
        if self.generated >= self.max_tokens || self.prefilled + self.generated >= context {
            let held = self.stops.flush();
            self.send_text(held);
            return Some(self.finish(FinishReason::Length));
        }
        None
    }

    /// Sends a text event covering one token (possibly empty text); false if the client
    /// is gone.
    fn send_text(&self, text: String) -> bool {
        self.events
            .try_send(GenEvent::Text { text, tokens: 1 })
            .is_ok()
    }

    fn finish(&mut self, reason: FinishReason) -> Ended {
        let done = GenEvent::Done {
            reason,
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.generated,
        };
        match self.events.try_send(done) {
            Ok(()) => Ended::Finished(reason),
            Err(_) => Ended::Cancelled,
        }
    }

    /// Ends the sequence with `error` (the client may be gone already).
    pub fn fail(&self, error: GenError) {
        let _ = self.events.try_send(GenEvent::Failed(error));
    }
}
