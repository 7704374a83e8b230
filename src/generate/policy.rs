//! The scheduling policies as one pure decision: given what is running, admitted and
//! waiting, what the next step does. `sequential`, `static` and `continuous` are admission
//! rules of the same loop, so they are compared on the same engine and cache.

use crate::config::{GenerationConfig, SchedulerKind};

/// The rules a scheduler applies at every step; switchable between two steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    pub kind: SchedulerKind,
    pub slots: usize,
    pub prefill_chunk_tokens: usize,
    pub max_step_tokens: usize,
    pub static_batch: usize,
}

impl PolicyConfig {
    pub fn from_config(c: &GenerationConfig) -> PolicyConfig {
        PolicyConfig {
            kind: c.scheduler,
            slots: c.slots,
            prefill_chunk_tokens: c.prefill_chunk_tokens,
            max_step_tokens: c.max_step_tokens,
            static_batch: c.static_batch,
        }
    }
}

/// What the scheduler holds before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Sequences whose prompt is in the cache (they decode, or wait for their batch).
    pub rows: usize,
    /// Admitted sequences whose prompt is not fully prefilled yet (each holds a slot).
    pub admitted: usize,
    /// Prompt tokens the first admitted sequence still needs.
    pub front_left: usize,
    /// Requests waiting for admission.
    pub waiting: usize,
}

/// The next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// Waiting requests to admit before the step (oldest first).
    pub admit: usize,
    /// Prompt tokens of the first admitted sequence to prefill in this step.
    pub prefill: usize,
    /// Whether the rows decode one token each in this step.
    pub decode: bool,
}

impl Plan {
    pub fn is_idle(&self) -> bool {
        self.prefill == 0 && !self.decode
    }
}

/// Decides the next step. `front_left` of a sequence admitted by this very plan is the
/// caller's to fill in: call again after admitting (`admit` is then 0).
pub fn plan(p: &PolicyConfig, load: Load) -> Plan {
    match p.kind {
        SchedulerKind::Sequential => batch_at_a_time(p, load, 1),
        SchedulerKind::Static => batch_at_a_time(p, load, p.static_batch.min(p.slots)),
        SchedulerKind::Continuous => continuous(p, load),
    }
}

/// `sequential` and `static`: a new batch starts only when the last one has ended; its
/// members are prefilled one after another, then decode together until the last ends.
fn batch_at_a_time(p: &PolicyConfig, load: Load, batch: usize) -> Plan {
    if load.rows == 0 && load.admitted == 0 {
        return Plan {
            admit: batch.min(load.waiting),
            ..Plan::default()
        };
    }
    if load.admitted > 0 {
        return Plan {
            prefill: load.front_left.min(p.prefill_chunk_tokens),
            ..Plan::default()
        };
    }
    Plan {
        decode: load.rows > 0,
        ..Plan::default()
    }
}

/// `continuous`: running rows decode at every step; beside them, one admitted prompt is
/// prefilled a chunk at a time within the step's token budget, and a waiting request is
/// admitted as soon as a slot is free and no other prompt is being prefilled.
fn continuous(p: &PolicyConfig, load: Load) -> Plan {
    let free = p.slots.saturating_sub(load.rows + load.admitted);
    if load.admitted == 0 && load.waiting > 0 && free > 0 {
        return Plan {
            admit: 1,
            ..Plan::default()
        };
    }
    // The running rows take one token each of the budget; a prompt always gets at least
    // one token, so it cannot starve behind a full budget.
    let budget = p.max_step_tokens.saturating_sub(load.rows).max(1);
    Plan {
        admit: 0,
        prefill: if load.admitted > 0 {
            load.front_left.min(p.prefill_chunk_tokens).min(budget)
        } else {
            0
        },
        decode: load.rows > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: SchedulerKind) -> PolicyConfig {
        PolicyConfig {
            kind,
            slots: 4,
            prefill_chunk_tokens: 8,
            max_step_tokens: 10,
            static_batch: 3,
        }
    }

    fn load(rows: usize, admitted: usize, front_left: usize, waiting: usize) -> Load {
        Load {
            rows,
            admitted,
            front_left,
            waiting,
        }
    }

    #[test]
    fn sequential_runs_one_conversation_to_its_end() {
        let p = cfg(SchedulerKind::Sequential);
        assert_eq!(plan(&p, load(0, 0, 0, 5)).admit, 1);
        let prefill = plan(&p, load(0, 1, 20, 4));
        assert_eq!((prefill.prefill, prefill.decode), (8, false));
        // While it decodes, nobody else is admitted.
        let step = plan(&p, load(1, 0, 0, 4));
        assert_eq!((step.admit, step.prefill, step.decode), (0, 0, true));
    }

    #[test]
    fn static_admits_a_batch_prefills_all_then_decodes_until_the_last_ends() {
        let p = cfg(SchedulerKind::Static);
        assert_eq!(plan(&p, load(0, 0, 0, 5)).admit, 3);
        // Members already prefilled wait for the others: no decode while any is admitted.
        let step = plan(&p, load(2, 1, 3, 2));
        assert_eq!((step.prefill, step.decode), (3, false));
        let step = plan(&p, load(3, 0, 0, 2));
        assert_eq!((step.admit, step.decode), (0, true));
        // One member left: still no admission until it ends.
        assert_eq!(plan(&p, load(1, 0, 0, 2)).admit, 0);
        assert!(plan(&p, load(0, 0, 0, 0)).is_idle());
    }

    #[test]
    fn continuous_admits_into_free_slots_and_prefills_beside_decoding() {
        let p = cfg(SchedulerKind::Continuous);
        assert_eq!(plan(&p, load(2, 0, 0, 3)).admit, 1);
        // Budget 10 - 2 rows = 8 prompt tokens beside the decode.
        let step = plan(&p, load(2, 1, 30, 2));
        assert_eq!((step.admit, step.prefill, step.decode), (0, 8, true));
        // Four rows leave a budget of 6.
        let p4 = PolicyConfig { slots: 8, ..p };
        assert_eq!(plan(&p4, load(4, 1, 30, 0)).prefill, 6);
        // The last chunk is what is left.
        assert_eq!(plan(&p, load(2, 1, 3, 0)).prefill, 3);
        // No free slot: nobody is admitted, the rows keep decoding.
        let full = plan(&p, load(4, 0, 0, 9));
        assert_eq!((full.admit, full.decode), (0, true));
    }

    #[test]
    fn continuous_never_starves_a_prompt_behind_a_full_budget() {
        let p = PolicyConfig {
            max_step_tokens: 4,
            slots: 8,
            ..cfg(SchedulerKind::Continuous)
        };
        assert_eq!(plan(&p, load(6, 1, 30, 0)).prefill, 1);
    }
}
