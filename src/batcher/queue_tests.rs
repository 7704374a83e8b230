use super::*;
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, Clone)]
struct Fake {
    id: usize,
    tokens: usize,
    at: Instant,
    deadline: Instant,
    cancelled: bool,
}

impl Queued for Fake {
    fn tokens(&self) -> usize {
        self.tokens
    }
    fn enqueued_at(&self) -> Instant {
        self.at
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

fn queue_of(lengths: &[usize]) -> (Queue<Fake>, Instant) {
    let t0 = Instant::now();
    let mut q = Queue::default();
    for (id, &tokens) in lengths.iter().enumerate() {
        q.push(Fake {
            id,
            tokens,
            at: t0 + Duration::from_millis(id as u64),
            deadline: t0 + Duration::from_secs(10),
            cancelled: false,
        });
    }
    (q, t0)
}

fn ids(batch: &[Fake]) -> Vec<usize> {
    batch.iter().map(|f| f.id).collect()
}

const AWARE: Policy = Policy {
    max_batch_size: 4,
    max_batch_tokens: 1024,
    length_aware: true,
    solo_tokens: 0,
    window: 0,
};

const FIFO: Policy = Policy {
    length_aware: false,
    ..AWARE
};

#[test]
fn respects_max_batch_size() {
    let (mut q, _) = queue_of(&[10; 10]);
    assert_eq!(ids(&q.take_batch(&FIFO)), vec![0, 1, 2, 3]);
    assert_eq!(q.len(), 6);
}

#[test]
fn respects_padded_token_budget() {
    // 100 + 300: padded to 300 x 2 = 600 fits; a third row makes 900, a fourth 1200.
    let (mut q, _) = queue_of(&[100, 300, 50, 60]);
    let p = Policy {
        max_batch_tokens: 900,
        ..FIFO
    };
    assert_eq!(ids(&q.take_batch(&p)), vec![0, 1, 2]);
}

#[test]
fn length_aware_groups_similar_lengths_around_the_oldest() {
    let (mut q, _) = queue_of(&[20, 200, 22, 190, 18, 21, 210]);
    let first = q.take_batch(&AWARE);
    assert_eq!(ids(&first), vec![0, 2, 4, 5]);
    let second = q.take_batch(&AWARE);
    assert_eq!(ids(&second), vec![1, 3, 6]);
    assert!(q.is_empty());
}

#[test]
fn long_rows_run_alone_when_solo_tokens_is_set() {
    let p = Policy {
        solo_tokens: 128,
        ..AWARE
    };
    let (mut q, _) = queue_of(&[200, 210, 20, 22]);
    assert_eq!(
        ids(&q.take_batch(&p)),
        vec![0],
        "a long oldest row runs alone"
    );
    assert_eq!(ids(&q.take_batch(&p)), vec![1]);
    assert_eq!(ids(&q.take_batch(&p)), vec![2, 3], "short rows still share");
    let (mut q, _) = queue_of(&[200, 210]);
    assert_eq!(
        ids(&q.take_batch(&AWARE)),
        vec![0, 1],
        "off: long rows share"
    );
}

#[test]
fn the_window_bounds_how_far_a_young_entry_overtakes() {
    // The oldest is 20 tokens; the similar rows 4 and 5 are beyond a window of 3.
    let (mut q, _) = queue_of(&[20, 200, 190, 180, 21, 22]);
    let p = Policy { window: 3, ..AWARE };
    assert_eq!(
        ids(&q.take_batch(&p)),
        vec![0],
        "nothing similar within the window"
    );
    let (mut q, _) = queue_of(&[20, 200, 190, 180, 21, 22]);
    assert_eq!(
        ids(&q.take_batch(&AWARE)),
        vec![0, 4, 5],
        "no window: whole queue"
    );
}

#[test]
fn pending_batches_estimate() {
    let (q, _) = queue_of(&[10; 10]);
    assert_eq!(q.pending_batches(&FIFO), 3, "10 rows, 4 a batch");
    let (q, _) = queue_of(&[300, 300, 300]);
    assert_eq!(
        q.pending_batches(&FIFO),
        1,
        "900 tokens fit one 1024-token budget"
    );
    assert_eq!(Queue::<Fake>::default().pending_batches(&FIFO), 0);
}

#[test]
fn fifo_mixes_lengths_in_arrival_order() {
    let (mut q, _) = queue_of(&[20, 200, 22, 190, 18]);
    assert_eq!(ids(&q.take_batch(&FIFO)), vec![0, 1, 2, 3]);
}

#[test]
fn oldest_entry_is_always_in_the_batch() {
    let (mut q, _) = queue_of(&[250, 10, 11, 12, 13, 14]);
    let batch = q.take_batch(&AWARE);
    assert_eq!(ids(&batch), vec![0]);
    assert_eq!(ids(&q.take_batch(&AWARE)), vec![1, 2, 3, 4]);
}

#[test]
fn short_rows_within_slack_share_a_batch() {
    let (mut q, _) = queue_of(&[3, 12, 7]);
    assert_eq!(ids(&q.take_batch(&AWARE)), vec![0, 2]);
    assert_eq!(ids(&q.take_batch(&AWARE)), vec![1]);
}

#[test]
fn a_row_is_padded_by_at_most_a_seventh_of_its_length() {
    // 70 padded to 80 is a seventh of 70: allowed; to 81 it is more.
    let (mut q, _) = queue_of(&[70, 81, 80]);
    assert_eq!(ids(&q.take_batch(&AWARE)), vec![0, 2]);
    assert_eq!(ids(&q.take_batch(&AWARE)), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn prune_drops_expired_and_cancelled_only() {
    let (mut q, t0) = queue_of(&[10, 10, 10]);
    q.entries[1].cancelled = true;
    q.entries[2].deadline = t0 + Duration::from_millis(5);
    let first: Vec<_> = q
        .prune(Instant::now())
        .iter()
        .map(|(f, r)| (f.id, *r))
        .collect();
    assert_eq!(first, vec![(1, DropReason::Cancelled)]);
    tokio::time::advance(Duration::from_millis(5)).await;
    let second: Vec<_> = q
        .prune(Instant::now())
        .iter()
        .map(|(f, r)| (f.id, *r))
        .collect();
    assert_eq!(second, vec![(2, DropReason::Expired)]);
    assert_eq!(q.len(), 1);
    assert_eq!(q.earliest_deadline(), Some(t0 + Duration::from_secs(10)));
}

#[test]
fn is_full_by_count_or_tokens() {
    let (q, _) = queue_of(&[10; 4]);
    assert!(q.is_full(&AWARE));
    let (q, _) = queue_of(&[10; 3]);
    assert!(!q.is_full(&AWARE));
    let (q, _) = queue_of(&[256, 256]);
    let p = Policy {
        max_batch_tokens: 600,
        ..AWARE
    };
    assert!(q.is_full(&p));
}

/// One step of a random schedule: an arrival (length, deadline offset, cancelled later?)
/// or a batch being taken after some time passes.
#[derive(Debug, Clone)]
enum Step {
    Arrive {
        tokens: usize,
        ttl_ms: u64,
        cancel: bool,
    },
    Advance(u64),
    Take,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..=256, 1u64..50, prop::bool::weighted(0.1))
            .prop_map(|(tokens, ttl_ms, cancel)| Step::Arrive { tokens, ttl_ms, cancel }),
        2 => (0u64..20).prop_map(Step::Advance),
        3 => Just(Step::Take),
    ]
}

proptest! {
    /// Every entry leaves the queue exactly once (batched, expired or cancelled), batches
    /// never exceed the limits, nothing expired or cancelled is batched, and the oldest
    /// entry is always in the batch.
    #[test]
    fn every_entry_answered_once_within_limits(
        steps in prop::collection::vec(step(), 1..200),
        max_batch_size in 1usize..16,
        max_batch_tokens in 256usize..4096,
        length_aware in any::<bool>(),
        solo_tokens in prop_oneof![Just(0usize), 8usize..300],
        window in 0usize..8,
    ) {
        let policy = Policy { max_batch_size, max_batch_tokens, length_aware, solo_tokens, window };
        let t0 = Instant::now();
        let mut now = t0;
        let mut q: Queue<Fake> = Queue::default();
        let mut seen = HashSet::new();
        let mut next_id = 0;
        let take = |q: &mut Queue<Fake>, now: Instant, seen: &mut HashSet<usize>| {
            for (f, reason) in q.prune(now) {
                prop_assert!(seen.insert(f.id), "entry {} left twice", f.id);
                prop_assert!(reason == DropReason::Cancelled || f.deadline <= now);
            }
            let oldest = q.entries.front().map(|f| f.id);
            let batch = q.take_batch(&policy);
            prop_assert_eq!(batch.first().map(|f| f.id).is_some(), oldest.is_some());
            if let Some(o) = oldest {
                prop_assert!(batch.iter().any(|f| f.id == o), "oldest not batched");
            }
            let longest = batch.iter().map(|f| f.tokens).max().unwrap_or(0);
            prop_assert!(batch.len() <= policy.max_batch_size);
            prop_assert!(batch.len() <= 1 || batch.len() * longest <= policy.max_batch_tokens);
            prop_assert!(batch.len() <= 1 || solo_tokens == 0 || longest < solo_tokens);
            for f in batch {
                prop_assert!(!f.cancelled && f.deadline > now);
                prop_assert!(seen.insert(f.id), "entry {} left twice", f.id);
            }
            Ok(())
        };
        for s in steps {
            match s {
                Step::Arrive { tokens, ttl_ms, cancel } => {
                    q.push(Fake { id: next_id, tokens, at: now, deadline: now + Duration::from_millis(ttl_ms), cancelled: false });
                    if cancel {
                        let n = q.entries.len();
                        q.entries[n / 2].cancelled = true;
                    }
                    next_id += 1;
                }
                Step::Advance(ms) => now += Duration::from_millis(ms),
                Step::Take => take(&mut q, now, &mut seen)?,
            }
        }
        while !q.is_empty() {
            take(&mut q, now, &mut seen)?;
        }
        prop_assert_eq!(seen.len(), next_id);
    }
}
