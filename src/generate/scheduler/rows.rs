//! The scheduler's housekeeping between steps: sequences that left (a client gone, a
//! deadline passed) and the row moves that keep running rows contiguous, ending everything
//! on failure, and the gauges.

use super::super::seq::Seq;
use super::super::GenError;
use super::Scheduler;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

impl Scheduler {
    /// Drops sequences whose client has gone, and waiting ones past their deadline.
    pub(super) fn drop_gone(&mut self) {
        let now = Instant::now();
        let label = self.label();
        let finished = &self.metrics.generation.finished;
        let before = self.waiting.len();
        self.waiting.retain(|s| {
            let expired = s.deadline.is_some_and(|d| d <= now);
            if expired {
                s.fail(GenError::Deadline);
                finished.with_label_values(&[label, "deadline"]).inc();
            } else if s.is_cancelled() {
                finished.with_label_values(&[label, "cancelled"]).inc();
            }
            !expired && !s.is_cancelled()
        });
        self.queued
            .fetch_sub(before - self.waiting.len(), Ordering::Relaxed);
        if self.admitted.front().is_some_and(Seq::is_cancelled) {
            // The prompt being prefilled: its row is simply reused by the next one.
            self.admitted.pop_front();
            finished.with_label_values(&[label, "cancelled"]).inc();
        }
        let before = self.admitted.len();
        self.admitted.retain(|s| !s.is_cancelled());
        for _ in self.admitted.len()..before {
            finished.with_label_values(&[label, "cancelled"]).inc();
        }
        let gone: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].is_cancelled())
            .collect();
        for _ in &gone {
            finished.with_label_values(&[label, "cancelled"]).inc();
        }
        self.remove_rows(gone);
    }

    /// Removes the rows `ended` (ascending), moving the last rows into the holes, and the
    /// prompt being prefilled down after the remaining rows.
    pub(super) fn remove_rows(&mut self, ended: Vec<usize>) {
        let before = self.rows.len();
        for &i in ended.iter().rev() {
            let last = self.rows.len() - 1;
            if i != last {
                self.moves.push((last, i, self.rows[last].cached()));
            }
            self.rows.swap_remove(i);
        }
        if let Some(front) = self.admitted.front() {
            if front.prefilled > 0 && self.rows.len() != before {
                self.moves.push((before, self.rows.len(), front.prefilled));
            }
        }
    }

    pub(super) fn fail_all(&mut self, error: GenError) {
        let n = self.waiting.len();
        for s in self
            .waiting
            .drain(..)
            .chain(self.admitted.drain(..))
            .chain(self.rows.drain(..))
        {
            s.fail(error.clone());
        }
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.moves.clear();
        self.publish();
    }

    pub(super) fn publish(&self) {
        let active = self.rows.len() + self.admitted.len();
        let slots = self.rows.len() + self.admitted.len().min(1);
        self.set_gauges([active, slots, self.waiting.len()]);
    }

    /// Active sequences, slots in use and waiting requests, under the live label.
    pub(super) fn set_gauges(&self, values: [usize; 3]) {
        let g = &self.metrics.generation;
        let gauges = [&g.active, &g.slots_in_use, &g.waiting];
        for (gauge, v) in gauges.into_iter().zip(values) {
            gauge.with_label_values(&[self.label()]).set(v as i64);
        }
    }
}
