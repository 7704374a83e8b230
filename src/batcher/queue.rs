//! Batch formation as pure logic: no tokio tasks, no engine, time passed in.
//!
//! The queue keeps entries in arrival order. A batch always starts from the oldest entry
//! (so nothing starves) and, when length-aware, adds the queued entries whose lengths are
//! closest to it, so rows padded to the longest waste few token slots.

use std::collections::VecDeque;
use tokio::time::Instant;

/// What the queue needs to know about an entry.
pub trait Queued {
    /// Token count of the entry (its row length in a batch).
    fn tokens(&self) -> usize;
    fn enqueued_at(&self) -> Instant;
    fn deadline(&self) -> Instant;
    /// True when nobody waits for the answer any more (the client went away).
    fn is_cancelled(&self) -> bool;
}

/// Limits on one batch.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_batch_size: usize,
    /// Padded token slots: longest row times rows.
    pub max_batch_tokens: usize,
    pub length_aware: bool,
    /// Rows at least this long run in a batch of their own (0 = off): a long row gains
    /// little from company, and company multiplies its latency, the tail's.
    pub solo_tokens: usize,
    /// Length-aware batches choose among the oldest `window` entries only (0 = all): a
    /// young entry may not overtake more than that many older ones, which bounds how
    /// unequal waits get in a deep queue.
    pub window: usize,
}

impl Policy {
    pub fn from_config(b: &crate::config::BatchingConfig) -> Policy {
        Policy {
            max_batch_size: b.max_batch_size,
            max_batch_tokens: b.max_batch_tokens,
            length_aware: b.length_aware,
            solo_tokens: b.solo_tokens,
            window: b.window,
        }
    }
}

/// Rows this much shorter than the batch's longest may always share it: below this the
/// wasted slots cost less than running another batch.
const PADDING_SLACK: usize = 4;

/// Otherwise a length-aware batch pads a row by at most 1/PADDING_SHARE of its own length.
/// A batch costs about its padded token slots, so every padded slot is lost throughput;
/// fewer rows per batch cost much less on a CPU. Measured on 2 cores (loadtest run, 64 and
/// 16 users, two servers alternating): padding by up to 1/7 gave 200-212 req/s at 64 users
/// against 141-173 when rows could be padded to twice their length, 192-194 against
/// 164-182 at 16 users, p99 level or lower; 1/15 was no better than 1/7.
const PADDING_SHARE: usize = 7;

impl Policy {
    /// Whether rows of lengths `shortest..=longest` may share a batch of `rows` rows.
    fn fits(&self, rows: usize, shortest: usize, longest: usize) -> bool {
        let within_limits = rows <= self.max_batch_size && rows * longest <= self.max_batch_tokens;
        let solo = self.solo_tokens > 0 && longest >= self.solo_tokens;
        if rows > 1 && solo {
            return false;
        }
        // Length-aware batches also refuse a row that would be padded by more than a
        // PADDING_SHARE-th of its length; it waits for a batch of its own kind instead.
        let padding = longest - shortest;
        let similar =
            !self.length_aware || padding <= PADDING_SLACK || padding * PADDING_SHARE <= shortest;
        within_limits && similar
    }
}

/// Why an entry left the queue without being batched.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum DropReason {
    Expired,
    Cancelled,
}

/// The batcher's queue of waiting entries, in arrival order.
#[derive(Debug)]
pub struct Queue<T> {
    entries: VecDeque<T>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            entries: VecDeque::new(),
        }
    }
}

impl<T: Queued> Queue<T> {
    pub fn push(&mut self, entry: T) {
        self.entries.push_back(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Arrival time of the oldest entry: when a non-full batch stops waiting for company.
    pub fn oldest(&self) -> Option<Instant> {
        self.entries.front().map(Queued::enqueued_at)
    }

    /// The earliest deadline in the queue: when the batcher must wake to expire it.
    pub fn earliest_deadline(&self) -> Option<Instant> {
        self.entries.iter().map(Queued::deadline).min()
    }

    /// Removes entries that expired by `now` or were cancelled, and hands them back so the
    /// caller can answer and count them. They never reach the engine.
    pub fn prune(&mut self, now: Instant) -> Vec<(T, DropReason)> {
        // The batcher calls this on every wake-up: rebuild the queue only when needed.
        let dead = |e: &T| e.is_cancelled() || e.deadline() <= now;
        if !self.entries.iter().any(dead) {
            return Vec::new();
        }
        let mut dropped = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if e.is_cancelled() {
                dropped.push((e, DropReason::Cancelled));
            } else if e.deadline() <= now {
                dropped.push((e, DropReason::Expired));
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        dropped
    }

    /// True when the next batch would be as large as the policy allows, so waiting for more
    /// entries cannot improve it.
    pub fn is_full(&self, policy: &Policy) -> bool {
        if self.entries.len() >= policy.max_batch_size {
            return true;
        }
        let longest = self.entries.iter().map(Queued::tokens).max().unwrap_or(0);
        (self.entries.len() + 1) * longest.max(1) > policy.max_batch_tokens
    }

    /// About how many batches the queued entries make: enough to tell whether a batch
    /// about to run has company waiting, and how much (a lower bound: padding ignored).
    pub fn pending_batches(&self, policy: &Policy) -> usize {
        let tokens: usize = self.entries.iter().map(Queued::tokens).sum();
        self.entries
            .len()
            .div_ceil(policy.max_batch_size)
            .max(tokens.div_ceil(policy.max_batch_tokens))
    }

    /// Removes and returns the next batch (empty only when the queue is empty).
    pub fn take_batch(&mut self, policy: &Policy) -> Vec<T> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let chosen = if policy.length_aware {
            self.choose_similar(policy)
        } else {
            self.choose_in_order(policy)
        };
        let mut take = vec![false; self.entries.len()];
        for &i in &chosen {
            take[i] = true;
        }
        let mut batch = Vec::with_capacity(chosen.len());
        let mut kept = VecDeque::with_capacity(self.entries.len() - chosen.len());
        for (i, e) in self.entries.drain(..).enumerate() {
            if take[i] {
                batch.push(e);
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        batch
    }

    /// Arrival order: the oldest entries while they fit.
    fn choose_in_order(&self, policy: &Policy) -> Vec<usize> {
        let mut longest = 0;
        let mut chosen = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let l = longest.max(e.tokens());
            if !chosen.is_empty() && !policy.fits(chosen.len() + 1, 0, l) {
                break;
            }
            longest = l;
            chosen.push(i);
        }
        chosen
    }

    /// The oldest entry, then a window grown around it in length order, one neighbour at a
    /// time, always the one closest in length to the oldest.
    fn choose_similar(&self, policy: &Policy) -> Vec<usize> {
        let reach = match policy.window {
            0 => self.entries.len(),
            w => w.min(self.entries.len()),
        };
        let mut order: Vec<usize> = (0..reach).collect();
        // Stable: equal lengths keep arrival order, so older entries go first.
        order.sort_by_key(|&i| self.entries[i].tokens());
        let len = |pos: usize| self.entries[order[pos]].tokens();
        let anchor = order
            .iter()
            .position(|&i| i == 0)
            .expect("index 0 is in order");
        let target = len(anchor);
        let (mut lo, mut hi) = (anchor, anchor);
        loop {
            let rows = hi - lo + 2;
            let down = (lo > 0 && policy.fits(rows, len(lo - 1), len(hi))).then(|| lo - 1);
            let up =
                (hi + 1 < order.len() && policy.fits(rows, len(lo), len(hi + 1))).then(|| hi + 1);
            match (down, up) {
                (Some(d), Some(u)) if target - len(d) <= len(u) - target => lo = d,
                (Some(_), Some(u)) => hi = u,
                (Some(d), None) => lo = d,
                (None, Some(u)) => hi = u,
                (None, None) => break,
            }
        }
        order[lo..=hi].to_vec()
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
