//! Drives `loadtest::run::run` against a tiny in-process HTTP server whose
//! behaviour each test chooses, so the accounting is checked end to end
//! without the real model. Assertions are about counts and ordering, not
//! about how fast this machine is.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{spawn, Reply};
use loadtest::client::{Endpoint, Mix};
use loadtest::run::{run, Load, RunOptions};
use loadtest::schedule::Arrival;

/// A server answering every POST with `status(n)` after `delay`.
async fn fake_server(
    behaviour: impl Fn(u64) -> (u16, Duration) + Send + Sync + 'static,
    serial: bool,
) -> String {
    let handler = move |_: &str, _: &str, n: u64| {
        let (status, delay) = behaviour(n);
        Reply {
            status,
            delay,
            body: "{}".into(),
        }
    };
    spawn(Arc::new(handler), serial).await
}

fn texts() -> Arc<Vec<String>> {
    Arc::new(vec!["hello".into(), "how do I reset my password?".into()])
}

fn options(url: String, load: Load, seconds: f64) -> RunOptions {
    let mut o = RunOptions::new(url, texts(), load);
    o.duration = Duration::from_secs_f64(seconds);
    o.request_timeout = Duration::from_secs(2);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_successes_and_errors_by_status() {
    // Every third request is rejected as overloaded.
    let url = fake_server(
        |n| (if n % 3 == 2 { 429 } else { 200 }, Duration::from_millis(2)),
        false,
    )
    .await;
    let mut o = options(
        url,
        Load::Closed {
            users: 2,
            think_time: Duration::ZERO,
        },
        5.0,
    );
    o.max_requests = Some(30);
    o.mix = "embeddings=1,chat=1".parse::<Mix>().unwrap();
    let s = run(&o).await.unwrap();
    assert_eq!(s.mode, "closed");
    assert_eq!(s.totals.requests, 30);
    assert_eq!(s.totals.successes, 20);
    assert_eq!(s.totals.errors["429"], 10);
    assert_eq!(s.totals.latency.count, 20);
    assert!(s.totals.latency.p50_ms >= 2.0);
    assert!(s.totals.by_endpoint.len() <= 2);
    assert!(s.window_s < 5.0, "stops early once max_requests is reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_refused_connections_are_errors() {
    let url = fake_server(|_| (200, Duration::from_secs(5)), false).await;
    let mut o = options(
        url,
        Load::Closed {
            users: 1,
            think_time: Duration::ZERO,
        },
        1.0,
    );
    o.request_timeout = Duration::from_millis(200);
    let s = run(&o).await.unwrap();
    assert!(s.totals.errors["timeout"] >= 1);
    assert_eq!(s.totals.successes, 0);

    // Nothing listens on a port we just released.
    let port = loadtest::server::free_port().unwrap();
    let mut o = options(
        format!("http://127.0.0.1:{port}"),
        Load::Closed {
            users: 1,
            think_time: Duration::ZERO,
        },
        1.0,
    );
    o.max_requests = Some(5);
    let s = run(&o).await.unwrap();
    assert_eq!(s.totals.errors["transport"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_on_schedule_to_a_fast_server() {
    let url = fake_server(|_| (200, Duration::ZERO), false).await;
    let mut o = options(
        url,
        Load::Open {
            rate: 50.0,
            arrival: Arrival::Constant,
        },
        1.0,
    );
    o.warmup = Duration::from_millis(200);
    o.mix = Mix::only(Endpoint::Chat);
    let s = run(&o).await.unwrap();
    assert_eq!(s.mode, "open");
    // Constant arrivals at 50/s: 50 sends land in a 1 s window (±1 at the edges).
    assert!(
        (49..=51).contains(&s.totals.requests),
        "{}",
        s.totals.requests
    );
    assert_eq!(s.totals.successes, s.totals.requests);
    assert!(s.offered_rps.unwrap() > 45.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_charges_queueing_to_latency_and_counts_late_sends() {
    // One request at a time, 50 ms each: capacity 20/s, offered 40/s.
    // With one connection allowed in flight, sends pile up in the client:
    // a closed-loop client would report ~50 ms; from the schedule the
    // latency grows with the backlog.
    let url = fake_server(|_| (200, Duration::from_millis(50)), true).await;
    let mut o = options(
        url,
        Load::Open {
            rate: 40.0,
            arrival: Arrival::Constant,
        },
        1.0,
    );
    o.max_inflight = 1;
    let s = run(&o).await.unwrap();
    let t = &s.totals;
    assert!(t.late_sends > 0, "{t:?}");
    assert!(
        t.unsent > 0,
        "a backlog remains when the window ends: {t:?}"
    );
    assert_eq!(t.requests, t.successes + t.error_count());
    assert!(
        t.latency.max_ms > 200.0,
        "queueing must show up in latency: {t:?}"
    );
    assert!(t.max_send_delay_ms > 100.0);
}

#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let o = options(
        "http://192.0.2.1:80".into(),
        Load::Closed {
            users: 1,
            think_time: Duration::ZERO,
        },
        0.1,
    );
    assert!(run(&o).await.is_err());
}
