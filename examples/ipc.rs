//! What the `processes` strategy's IPC adds to one batch, alone: a 16-item batch of
//! chat-sized inputs framed and written to a Unix socketpair, read back on the other side,
//! answered with 16 vectors of 384 floats, and decoded, with no model in between. The peer
//! is a thread rather than a child process: the same syscalls, copies and wake-ups.
//!
//!   cargo run --release --example ipc -- [ROUNDS] [ROWS] [TOKENS]   # default 20000 16 48
//!
//! Prints the round trip's percentiles in microseconds and the bytes each way.

use concur::engine::Batch;
use concur::executor::processes::ipc::{write_batch, Reply, Request};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (rounds, rows, tokens) = (
        args.first().copied().unwrap_or(20_000),
        args.get(1).copied().unwrap_or(16),
        args.get(2).copied().unwrap_or(48),
    );
    let (mut parent, mut child) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Ok(Request::Batch { batch, .. }) = Request::read(&mut child, &mut buf) {
            let vectors = vec![vec![0.5f32; 384]; batch.rows.len()];
            let reply = Reply::Vectors {
                compute: Duration::ZERO,
                vectors,
            };
            reply.write(&mut child, &mut out)?;
        }
        Ok(())
    });
    let batch = Batch {
        rows: (0..rows)
            .map(|r| (0..tokens as u32).map(|t| 1000 + t + r as u32).collect())
            .collect(),
    };
    let (mut out, mut back) = (Vec::new(), Vec::new());
    let mut times = Vec::with_capacity(rounds);
    let (mut sent, mut received) = (0, 0);
    for i in 0..rounds + 1000 {
        let start = Instant::now();
        sent = write_batch(&mut parent, &mut out, 1, &batch)?;
        let (reply, bytes) = Reply::read(&mut parent, &mut back)?;
        let elapsed = start.elapsed();
        received = bytes;
        assert!(matches!(reply, Reply::Vectors { ref vectors, .. } if vectors.len() == rows));
        if i >= 1000 {
            times.push(elapsed);
        }
    }
    drop(parent);
    echo.join().expect("echo thread")?;
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
    println!(
        "ipc round trip, {rows} x {tokens} tokens out, {rows} x 384 f32 back, {rounds} rounds: \
         p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  mean {mean:.1} us; {sent} bytes out, {received} bytes back",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    Ok(())
}
