//! Measures the ways ONNX Runtime can spread forward passes over cores, to choose how
//! `executor.parallelism = "elastic"` is built (see docs/performance.md, "Parallelism").
//!
//!   cargo run --release --example parallelism -- sessions   # per-session thread pools
//!   cargo run --release --example parallelism -- global     # one shared ORT thread pool
//!
//! Each prints, for a lone batch (one thread calling) and for two threads calling at once:
//! batches per second and the median batch latency. ONNX Runtime allows one environment per
//! process, so each mode runs in its own process. Input: synthetic token ids (timing does
//! not depend on their values), 1 x 32 tokens (one chat message) and 8 x 48 tokens.

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use std::time::{Duration, Instant};

const MODEL: &str = "models/all-MiniLM-L6-v2/model.onnx";
const LIB: &str = "lib/libonnxruntime.so";
const SECONDS: f64 = 3.0;

fn session(env: &Environment, intra: Option<usize>) -> Session {
    let mut b = Session::builder(env)
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::All)
        .unwrap()
        .with_intra_op_spinning(false)
        .unwrap();
    if let Some(n) = intra {
        b = b
            .with_intra_threads(n)
            .unwrap()
            .with_independent_thread_pool()
            .unwrap();
    }
    b.commit_from_file(MODEL).unwrap()
}

fn run(session: &mut Session, rows: usize, len: usize) {
    let ids: Vec<i64> = (0..rows * len).map(|i| 1000 + (i % 500) as i64).collect();
    let tensor = |d: Vec<i64>| Tensor::from_array(([rows, len], d)).unwrap();
    let inputs = ort::inputs![
        "input_ids" => tensor(ids),
        "attention_mask" => tensor(vec![1; rows * len]),
        "token_type_ids" => tensor(vec![0; rows * len]),
    ];
    session.run(inputs).unwrap();
}

/// Runs batches on `sessions`, one thread each, for SECONDS: (batches/s, median latency).
fn measure(sessions: Vec<Session>, rows: usize, len: usize) -> (f64, Duration) {
    let end = Instant::now() + Duration::from_secs_f64(SECONDS);
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|mut session| {
                s.spawn(move || {
                    run(&mut session, rows, len); // warm-up
                    let mut l = Vec::new();
                    while Instant::now() < end {
                        let t = Instant::now();
                        run(&mut session, rows, len);
                        l.push(t.elapsed());
                    }
                    l
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    latencies.sort();
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    (rate, latencies[latencies.len() / 2])
}

fn report(label: &str, (rate, median): (f64, Duration)) {
    println!(
        "{label:<52} {rate:>7.1} batches/s  median {:>6.2} ms",
        median.as_secs_f64() * 1e3
    );
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "sessions".into());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut builder = ort::init_from(LIB).unwrap().with_name("parallelism");
    if mode == "global" {
        let pool = GlobalThreadPoolOptions::default()
            .with_intra_threads(cores)
            .unwrap()
            .with_spin_control(false)
            .unwrap();
        builder = builder.with_global_thread_pool(pool);
    }
    let env = builder.build().unwrap();
    for (rows, len) in [(1, 32), (8, 48)] {
        println!("-- batch {rows} x {len} tokens, {cores} cores, mode {mode}");
        if mode == "global" {
            report(
                "global pool, lone batch (1 caller)",
                measure(vec![session(&env, None)], rows, len),
            );
            let two = (0..2).map(|_| session(&env, None)).collect();
            report("global pool, 2 callers at once", measure(two, rows, len));
        } else {
            for intra in [1, cores] {
                report(
                    &format!("own pool of {intra}, lone batch (1 caller)"),
                    measure(vec![session(&env, Some(intra))], rows, len),
                );
            }
            let narrow = (0..cores).map(|_| session(&env, Some(1))).collect();
            report(
                &format!("{cores} sessions of 1 thread, {cores} callers at once"),
                measure(narrow, rows, len),
            );
            let wide = (0..2).map(|_| session(&env, Some(cores))).collect();
            report(
                &format!("2 sessions of {cores} threads, 2 callers (oversubscribed)"),
                measure(wide, rows, len),
            );
        }
    }
}
