//! The batcher actor with a fake engine and paused time.

use super::*;
use crate::config::{ExecutorConfig, Strategy};
use crate::engine::{Engine, EngineFactory};
use crate::executor::width::Ladder;
use std::sync::{Condvar, Mutex};

/// Returns [row length, first id] per row; panics on a row starting with 999; blocks on
/// the gate (if any) while it is closed.
struct Fake {
    seen: Arc<Mutex<Vec<u32>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    /// Cores the session was built for; returned as each row's third value.
    width: usize,
}

impl Engine for Fake {
    fn embed(&mut self, batch: &Batch) -> Result<Vec<Vec<f32>>, EngineError> {
        let (lock, cv) = &*self.gate;
        drop(cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap());
        self.seen
            .lock()
            .unwrap()
            .extend(batch.rows.iter().map(|r| r[0]));
        if batch.rows.iter().any(|r| r[0] == 999) {
            panic!("injected fault");
        }
        Ok(batch
            .rows
            .iter()
            .map(|r| vec![r.len() as f32, r[0] as f32, self.width as f32])
            .collect())
    }
}

struct Rig {
    handle: BatcherHandle,
    seen: Arc<Mutex<Vec<u32>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    metrics: Arc<Metrics>,
    executor: Arc<Executor>,
}

impl Rig {
    fn new(strategy: Strategy, batching: &str) -> Rig {
        // One core: one batch at a time, as most of these tests expect.
        Rig::with_ladder(strategy, batching, Ladder::elastic(1))
    }

    fn with_ladder(strategy: Strategy, batching: &str, ladder: Ladder) -> Rig {
        let config = crate::Config::parse(batching).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(true), Condvar::new()));
        let (s, g) = (seen.clone(), gate.clone());
        let factory: EngineFactory = Arc::new(move |width| {
            Ok(Box::new(Fake {
                seen: s.clone(),
                gate: g.clone(),
                width,
            }) as Box<dyn Engine>)
        });
        let metrics = Arc::new(Metrics::new(strategy.as_str(), "fake"));
        let exec = ExecutorConfig {
            strategy,
            ..config.executor.clone()
        };
        let executor = Arc::new(Executor::start(&exec, ladder, factory, metrics.clone()).unwrap());
        let handle = spawn(
            &config.batching,
            executor.clone(),
            metrics.clone(),
            &TaskTracker::new(),
            CancellationToken::new(),
        );
        Rig {
            handle,
            seen,
            gate,
            metrics,
            executor,
        }
    }

    fn submit(&self, first_ids: &[u32], ttl: Duration) -> Vec<oneshot::Receiver<Reply>> {
        let rows = first_ids.iter().map(|&id| vec![id, 7, 7]).collect();
        self.handle.submit(rows, Instant::now() + ttl).unwrap()
    }

    /// Submits one row of `tokens` tokens and returns the width its batch ran at.
    async fn width_of_row(&self, id: u32, tokens: usize) -> f32 {
        let mut row = vec![7; tokens];
        row[0] = id;
        let rx = self
            .handle
            .submit(vec![row], Instant::now() + LONG)
            .unwrap();
        width_of(rx.into_iter().next().unwrap().await.unwrap())
    }

    fn set_gate(&self, open: bool) {
        *self.gate.0.lock().unwrap() = open;
        self.gate.1.notify_all();
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_lone_input_waits_for_company_up_to_max_wait() {
    let rig = Rig::new(Strategy::Inline, "[batching]\nmax_wait_ms = 10\n");
    let mut first = rig.submit(&[1], LONG);
    let early = tokio::time::timeout(Duration::from_millis(9), &mut first[0]).await;
    assert!(early.is_err(), "dispatched before max_wait");
    let second = rig.submit(&[2], LONG);
    let a = first.remove(0).await.unwrap().unwrap();
    let b = second.into_iter().next().unwrap().await.unwrap().unwrap();
    assert_eq!((a.batch_size, b.batch_size), (2, 2));
    assert_eq!(
        (a.vector[1], b.vector[1]),
        (1.0, 2.0),
        "rows came back to the wrong input"
    );
}

#[tokio::test(start_paused = true)]
async fn continuous_batching_dispatches_without_waiting() {
    let rig = Rig::new(Strategy::Inline, "[batching]\nmax_wait_ms = 0\n");
    let start = Instant::now();
    let reply = rig.submit(&[5], LONG).remove(0).await.unwrap().unwrap();
    assert_eq!(reply.batch_size, 1);
    assert_eq!(Instant::now(), start, "no simulated time may pass");
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_does_not_wait() {
    let rig = Rig::new(
        Strategy::Inline,
        "[batching]\nmax_wait_ms = 1000\nmax_batch_size = 3\n",
    );
    let start = Instant::now();
    let replies = rig.submit(&[1, 2, 3], LONG);
    for (i, r) in replies.into_iter().enumerate() {
        let r = r.await.unwrap().unwrap();
        assert_eq!(r.batch_size, 3);
        assert_eq!(
            r.vector[1],
            (i + 1) as f32,
            "inputs must come back in order"
        );
    }
    assert_eq!(Instant::now(), start);
}

// Real time: with paused time, tokio would jump the clock past every deadline while the
// worker thread (which tokio cannot see) is busy.
#[tokio::test]
async fn expired_and_cancelled_inputs_never_reach_the_engine() {
    let rig = Rig::new(Strategy::Workers, "");
    rig.set_gate(false);
    let busy = rig.submit(&[1], LONG);
    // Let the batcher hand input 1 to the (blocked) worker.
    while rig.metrics.inflight_batches.get() == 0 {
        tokio::task::yield_now().await;
    }
    let expiring = rig.submit(&[2], Duration::from_millis(20));
    let cancelled = rig.submit(&[3], LONG);
    drop(cancelled);
    let kept = rig.submit(&[4], LONG);
    let expired = expiring.into_iter().next().unwrap().await.unwrap();
    assert!(matches!(expired, Err(BatchError::Expired)), "{expired:?}");
    rig.set_gate(true);
    for r in busy.into_iter().chain(kept) {
        r.await.unwrap().unwrap();
    }
    assert_eq!(*rig.seen.lock().unwrap(), vec![1, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_the_whole_request() {
    let rig = Rig::new(
        Strategy::Workers,
        "[batching]\nqueue_capacity = 3\n[limits]\nmax_inputs = 3\n",
    );
    rig.set_gate(false);
    let held = rig.submit(&[1, 2, 3], LONG);
    let refused = rig
        .handle
        .submit(vec![vec![9], vec![9]], Instant::now() + LONG);
    assert!(matches!(refused, Err(AdmitError::Overloaded)));
    rig.set_gate(true);
    for r in held {
        r.await.unwrap().unwrap();
    }
    // Room again once the queue drained.
    let again = rig.submit(&[4, 5], LONG);
    for r in again {
        r.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batch_fails_alone_and_the_worker_is_replaced() {
    for strategy in Strategy::IN_PROCESS {
        let rig = Rig::new(strategy, "");
        let bad = rig.submit(&[999], LONG).remove(0).await.unwrap();
        assert!(
            matches!(bad, Err(BatchError::Engine(EngineError::Panicked))),
            "{strategy:?}: {bad:?}"
        );
        let good = rig.submit(&[1], LONG).remove(0).await.unwrap();
        assert!(good.is_ok(), "{strategy:?}: {good:?}");
        assert_eq!(rig.metrics.worker_restarts.get(), 1, "{strategy:?}");
        assert_eq!(rig.metrics.batch_failures.get(), 1, "{strategy:?}");
    }
}

// Real time below: engine threads run outside tokio, and paused time would jump past
// every deadline while they work.
fn width_of(reply: Reply) -> f32 {
    reply.unwrap().vector[2]
}

#[tokio::test]
async fn elastic_a_lone_batch_gets_every_core() {
    for strategy in Strategy::IN_PROCESS {
        let rig = Rig::with_ladder(strategy, "", Ladder::elastic(2));
        for id in 1..=3 {
            let reply = rig.submit(&[id], LONG).remove(0).await.unwrap();
            assert_eq!(width_of(reply), 2.0, "{strategy:?}: an idle machine");
        }
        assert_eq!(rig.metrics.cores.batches.with_label_values(&["2"]).get(), 3);
        assert_eq!(rig.metrics.cores.busy.get(), 0, "cores are given back");
    }
}

#[tokio::test]
async fn elastic_queued_batches_run_side_by_side_on_one_core_each() {
    let rig = Rig::with_ladder(
        Strategy::Workers,
        "[batching]\nmax_batch_size = 1\n",
        Ladder::elastic(2),
    );
    // Four inputs at once: four batches of one. Each of the first three has company
    // queued behind it, so none may take both cores; the last one finds one core idle.
    let replies = rig.submit(&[1, 2, 3, 4], LONG);
    let mut widths = Vec::new();
    for r in replies {
        widths.push(width_of(r.await.unwrap()));
    }
    assert_eq!(&widths[..3], &[1.0, 1.0, 1.0], "{widths:?}");
    assert_eq!(rig.metrics.cores.budget.get(), 2);
}

#[tokio::test]
async fn elastic_a_batch_beside_a_running_one_gets_the_idle_core_only() {
    let rig = Rig::with_ladder(Strategy::Workers, "", Ladder::elastic(4));
    rig.set_gate(false);
    // Alone on 4 idle cores: width 4, the whole budget, held while the gate is closed.
    let first = rig.submit(&[1], LONG);
    while rig.metrics.cores.busy.get() < 4 {
        tokio::task::yield_now().await;
    }
    // Nothing is left for a second batch: it waits for the first, then gets every core.
    let second = rig.submit(&[2], LONG);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(rig.metrics.inflight_batches.get(), 1, "the budget is spent");
    rig.set_gate(true);
    assert_eq!(
        width_of(first.into_iter().next().unwrap().await.unwrap()),
        4.0
    );
    assert_eq!(
        width_of(second.into_iter().next().unwrap().await.unwrap()),
        4.0
    );
}

#[tokio::test]
async fn fixed_parallelism_always_uses_intra_op_threads() {
    let config = crate::Config::parse(
        "[executor]\nparallelism = \"fixed\"\nsessions = 2\nintra_op_threads = 2\n",
    )
    .unwrap();
    let ladder = Ladder::from_config(&config.executor, 64);
    let rig = Rig::with_ladder(Strategy::Rayon, "[batching]\nmax_batch_size = 1\n", ladder);
    let lone = rig.submit(&[1], LONG).remove(0).await.unwrap();
    assert_eq!(width_of(lone), 2.0);
    for r in rig.submit(&[2, 3, 4], LONG) {
        assert_eq!(width_of(r.await.unwrap()), 2.0);
    }
    assert_eq!(rig.metrics.cores.budget.get(), 4);
}

/// Teaches the executor this machine's costs: a pass on one core 2 ms plus 0.17 ms per
/// padded token, on two 0.55 ms plus 0.1 ms (as measured on the 2-core machine), and that
/// `rate` rows a second arrive while batches run; with enough weight that the fake
/// engine's own microsecond passes since hardly move either.
fn teach(executor: &Executor, rate: f64) {
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    for _ in 0..200 {
        for tokens in [8, 32, 128, 256] {
            let t = tokens as f64;
            for (width, took) in [(1, ms(2.0 + 0.17 * t)), (2, ms(0.55 + 0.1 * t))] {
                let arrived = (rate * took.as_secs_f64()).round() as u64;
                executor.record_cost(width, tokens, took, arrived, Instant::now());
            }
        }
    }
}

// Paused time: the inline strategy runs the fake engine on the runtime's own thread, so
// the clock only moves when every task waits.
#[tokio::test(start_paused = true)]
async fn a_closed_loop_gets_both_cores_however_fast_it_sends() {
    let rig = Rig::with_ladder(Strategy::Inline, "", Ladder::elastic(2));
    teach(&rig.executor, 0.0);
    // One user sending the next message as soon as the answer came, a thousand a
    // second: nothing ever arrives while its batch runs, so even long rows get both.
    for id in 1..=300 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let tokens = if id % 10 == 0 { 256 } else { 14 };
        assert_eq!(rig.width_of_row(id, tokens).await, 2.0, "row {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn under_dense_arrivals_and_busy_cores_batches_stay_narrow_until_they_stop() {
    let rig = Rig::with_ladder(Strategy::Inline, "", Ladder::elastic(2));
    // 400 rows a second arrive while batches run, and the cores are busy.
    teach(&rig.executor, 400.0);
    // And by the clock: the rate the batcher counts.
    for id in 100..300 {
        tokio::time::sleep(Duration::from_micros(2500)).await;
        rig.width_of_row(id, 14).await;
    }
    assert_eq!(rig.width_of_row(1, 14).await, 1.0);
    assert_eq!(rig.width_of_row(2, 256).await, 1.0);
    // Two seconds without batches: rate and load have faded, the costs are kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.width_of_row(3, 14).await, 2.0);
    assert_eq!(rig.width_of_row(4, 256).await, 2.0);
}
