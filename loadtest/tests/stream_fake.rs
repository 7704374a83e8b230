//! Drives `loadtest::stream::run` against a fake OpenAI streaming server
//! that sends its chunks at known gaps, breaks streams on purpose and
//! refuses with 429, so the token counts, the TTFT/ITL accounting and the
//! handling of every ending are checked end to end. The figures asserted
//! are counts; times only get wide bounds (sleeps are never shorter than
//! asked, but a loaded machine can make anything longer).

#[path = "stream_fake/fake.rs"]
mod fake;

use std::sync::Arc;
use std::time::Duration;

use fake::{plain, spawn, Ending, Plan, Script};
use loadtest::run::Load;
use loadtest::schedule::Arrival;
use loadtest::stream::{run, ChatParams, MaxTokens, StreamOptions};

fn options(url: &str, load: Load) -> StreamOptions {
    let chat = ChatParams {
        model: "SmolLM2-135M-Instruct".into(),
        system: Some("Be brief.".into()),
        temperature: 0.0,
    };
    let prompts = Arc::new(vec!["hi".to_string(), "what is 2+2?".to_string()]);
    let mut o = StreamOptions::new(url, prompts, load, chat);
    o.duration = Duration::from_secs(20);
    o.request_timeout = Duration::from_secs(10);
    o.metrics_every = Duration::from_millis(100);
    o
}

fn closed(streams: usize) -> Load {
    Load::Closed {
        users: streams,
        think_time: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_tokens_ttft_and_itl_per_chunk() {
    let (url, seen) = spawn(Arc::new(|_| Script::Stream(plain(6, 40))), true).await;
    let mut o = options(&url, closed(2));
    o.max_requests = Some(6);
    o.max_tokens = "16-24".parse::<MaxTokens>().unwrap();
    let s = run(&o).await.unwrap();
    let t = &s.totals;
    assert_eq!((s.mode.as_str(), s.streams), ("closed", Some(2)));
    assert_eq!(
        (t.requests, t.successes, t.rejected_429, t.error_count()),
        (6, 6, 0, 0)
    );
    assert_eq!(t.output_tokens, 36.0, "usage: 6 tokens a stream");
    assert_eq!(t.prompt_tokens, 30);
    assert_eq!(t.token_counts.values().sum::<u64>(), 6);
    assert_eq!((t.ttft.count, t.e2e.count, t.tpot.count), (6, 6, 6));
    assert_eq!(t.itl.count, 30, "5 gaps in each of 6 streams");
    // Wide bounds: 60 ms to the first chunk, 40 ms gaps, 260 ms a stream.
    assert!(
        t.ttft.p50_ms >= 59.0 && t.ttft.p50_ms < 5000.0,
        "{:?}",
        t.ttft
    );
    assert!(t.itl.p50_ms >= 20.0 && t.itl.p50_ms < 1000.0, "{:?}", t.itl);
    assert!(t.e2e.p50_ms >= 259.0, "{:?}", t.e2e);
    assert!(t.output_tokens_per_s > 0.0 && t.requests_per_s > 0.0);
    // What the server was asked: streamed, greedy, usage, a drawn max_tokens.
    let bodies = seen.bodies.lock().unwrap();
    for b in bodies.iter() {
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["temperature"], 0.0);
        assert_eq!(b["model"], "SmolLM2-135M-Instruct");
        assert_eq!(b["messages"][0]["content"], "Be brief.");
        assert!(
            (16..=24).contains(&b["max_tokens"].as_u64().unwrap()),
            "{b}"
        );
    }
    // The server's counter went from 0 to 36 over the window.
    let server = &s.server;
    assert!(server.error.is_none(), "{:?}", server.error);
    assert_eq!(
        server.counters["concur_generation_tokens_total{kind=\"output\"}"],
        36.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_of_several_tokens_is_split_over_them() {
    let script = Script::Stream(Plan {
        first: Duration::from_millis(30),
        gap: Duration::from_millis(60),
        chunks: 3,
        per_chunk: 2,
        chunk_usage: true,
        ending: Ending::Done,
    });
    let (url, _) = spawn(Arc::new(move |_| script), true).await;
    let mut o = options(&url, closed(1));
    o.max_requests = Some(2);
    let s = run(&o).await.unwrap();
    let t = &s.totals;
    assert_eq!(t.successes, 2);
    assert_eq!(t.output_tokens, 12.0);
    assert_eq!(t.token_counts.len(), 1);
    assert_eq!(t.token_counts.keys().next().unwrap().name(), "chunk_usage");
    assert_eq!(t.itl.count, 8, "2 gaps x 2 tokens, in 2 streams");
    // Each 60 ms gap carries 2 tokens: about 30 ms a token, not 60.
    assert!(t.itl.p50_ms >= 15.0 && t.itl.p50_ms < 500.0, "{:?}", t.itl);
    assert!(t.tpot.p50_ms >= 15.0, "{:?}", t.tpot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_breaks_and_missing_done_are_counted_and_nothing_hangs() {
    let decide = |n: u64| match n % 4 {
        0 => Script::Stream(plain(3, 10)),
        1 => Script::Status(429),
        2 => Script::Stream(Plan {
            ending: Ending::Break(1),
            ..plain(3, 10)
        }),
        _ => Script::Stream(Plan {
            ending: Ending::NoDone,
            ..plain(3, 10)
        }),
    };
    // No /metrics on this server: reported, never fatal.
    let (url, _) = spawn(Arc::new(decide), false).await;
    let mut o = options(&url, closed(1));
    o.max_requests = Some(8);
    let s = tokio::time::timeout(Duration::from_secs(30), run(&o))
        .await
        .expect("bounded")
        .unwrap();
    let t = &s.totals;
    assert_eq!(t.requests, 8);
    assert_eq!(t.successes, 2);
    assert_eq!(t.rejected_429, 2, "429s are not errors");
    assert_eq!(t.errors["broken"], 2);
    assert_eq!(t.errors["no_done"], 2);
    assert_eq!(t.error_count(), 4);
    assert_eq!(t.ttft.count, 2, "only successful streams enter latencies");
    assert!(
        s.server.error.as_deref().is_some_and(|e| e.contains("404")),
        "{:?}",
        s.server
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_after_each_stream_costs_no_stream() {
    let close = Plan {
        ending: Ending::DoneThenClose,
        ..plain(2, 5)
    };
    let (url, _) = spawn(Arc::new(move |_| Script::Stream(close)), true).await;
    let mut o = options(&url, closed(2));
    o.max_requests = Some(12);
    let s = tokio::time::timeout(Duration::from_secs(30), run(&o))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!((s.totals.successes, s.totals.error_count()), (12, 0), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_times_out_within_its_bound() {
    let stall = Plan {
        ending: Ending::Stall(Duration::from_secs(30)),
        ..plain(3, 10)
    };
    let (url, _) = spawn(Arc::new(move |_| Script::Stream(stall)), true).await;
    let mut o = options(&url, closed(1));
    o.max_requests = Some(1);
    o.request_timeout = Duration::from_millis(400);
    let s = tokio::time::timeout(Duration::from_secs(20), run(&o))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(s.totals.errors["timeout"], 1);
    assert_eq!(s.totals.successes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_on_schedule_and_counts_from_it() {
    let (url, _) = spawn(Arc::new(|_| Script::Stream(plain(2, 5))), true).await;
    let load = Load::Open {
        rate: 10.0,
        arrival: Arrival::Constant,
    };
    let mut o = options(&url, load);
    o.duration = Duration::from_secs(1);
    o.late_threshold = Duration::from_secs(1);
    let s = tokio::time::timeout(Duration::from_secs(30), run(&o))
        .await
        .expect("bounded")
        .unwrap();
    let t = &s.totals;
    // Sends at 0.1, 0.2, ... 0.9 s: nine inside a one-second window.
    assert_eq!((s.mode.as_str(), t.requests, t.successes), ("open", 9, 9));
    assert_eq!(t.output_tokens, 18.0);
    assert_eq!(t.itl.count, 9);
    assert!(s.offered_rps.is_some_and(|r| r > 0.0));
    assert!(t.ttft.p50_ms >= 59.0, "{:?}", t.ttft);
}
