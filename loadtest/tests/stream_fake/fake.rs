//! The fake OpenAI streaming server of `stream_fake.rs`: answers each chat
//! request by a script (chunks at known gaps, a break mid-body, a missing
//! `[DONE]`, a stall, or a plain error status) and `GET /metrics` with a
//! counter of the tokens it finished sending.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How one fake stream ends.
#[derive(Clone, Copy)]
pub enum Ending {
    /// Usage chunk, then `data: [DONE]`.
    Done,
    /// The same, then the connection closes although nothing said so
    /// (as llama.cpp's server does after a stream).
    DoneThenClose,
    /// The connection closes after this many text chunks, mid-body.
    Break(usize),
    /// The body ends properly, without `[DONE]`.
    NoDone,
    /// After the first text chunk, nothing more for this long.
    Stall(Duration),
}

/// A stream of `chunks` text chunks, the first after `first`, the rest
/// `gap` apart, each of `per_chunk` tokens; with `chunk_usage` every text
/// chunk carries the cumulative usage.
#[derive(Clone, Copy)]
pub struct Plan {
    pub first: Duration,
    pub gap: Duration,
    pub chunks: usize,
    pub per_chunk: u64,
    pub chunk_usage: bool,
    pub ending: Ending,
}

/// What the fake answers to one chat request.
#[derive(Clone, Copy)]
pub enum Script {
    Stream(Plan),
    /// A plain error answer with this status.
    Status(u16),
}

/// One token per chunk, the first after 60 ms, ending with `[DONE]`.
pub fn plain(chunks: usize, gap_ms: u64) -> Plan {
    Plan {
        first: Duration::from_millis(60),
        gap: Duration::from_millis(gap_ms),
        chunks,
        per_chunk: 1,
        chunk_usage: false,
        ending: Ending::Done,
    }
}

/// What the fake saw and did, shared with the test.
#[derive(Default)]
pub struct Seen {
    pub bodies: Mutex<Vec<serde_json::Value>>,
    pub tokens_done: AtomicU64,
}

pub type Decide = Arc<dyn Fn(u64) -> Script + Send + Sync>;

/// Starts the fake on a free loopback port; `metrics` says whether it
/// answers `GET /metrics` (else 404).
pub async fn spawn(decide: Decide, metrics: bool) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let (s, counter) = (seen.clone(), Arc::new(AtomicU64::new(0)));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (decide, seen, counter) = (decide.clone(), s.clone(), counter.clone());
            tokio::spawn(connection(sock, decide, seen, counter, metrics));
        }
    });
    (url, seen)
}

/// Serves requests on one keep-alive connection until it closes.
async fn connection(
    sock: TcpStream,
    decide: Decide,
    seen: Arc<Seen>,
    counter: Arc<AtomicU64>,
    metrics: bool,
) {
    let mut sock = BufReader::new(sock);
    loop {
        let Some((method, path, body)) = read_request(&mut sock).await else {
            return;
        };
        let out = sock.get_mut();
        if method == "GET" {
            let text = format!(
                "concur_generation_tokens_total{{kind=\"output\"}} {}\n",
                seen.tokens_done.load(Ordering::SeqCst)
            );
            let (status, text) = if metrics && path == "/metrics" {
                (200, text)
            } else {
                (404, String::new())
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n",
                text.len()
            );
            if out.write_all((head + &text).as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        seen.bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        let script = decide(counter.fetch_add(1, Ordering::SeqCst));
        if !answer(out, script, &seen).await {
            return;
        }
    }
}

/// The request line's method and path, and the body.
async fn read_request(sock: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if sock.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if sock.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    sock.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

/// One `data:` event as an HTTP chunk.
fn event(data: &str) -> String {
    let e = format!("data: {data}\n\n");
    format!("{:x}\r\n{e}\r\n", e.len())
}

fn chunk_json(text: Option<&str>, usage: Option<u64>) -> String {
    let delta = match text {
        Some(t) => serde_json::json!({"content": t}),
        None => serde_json::json!({"role": "assistant", "content": null}),
    };
    let mut v = serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]});
    if let Some(n) = usage {
        v["usage"] =
            serde_json::json!({"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n});
    }
    v.to_string()
}

/// An error answer with a JSON body.
async fn refuse(out: &mut TcpStream, code: u16) -> bool {
    let body = r#"{"error":{"message":"busy","type":"overloaded"}}"#;
    let head = format!(
        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    out.write_all((head + body).as_bytes()).await.is_ok()
}

/// Writes the answer; false when the connection must close.
async fn answer(out: &mut TcpStream, script: Script, seen: &Seen) -> bool {
    let plan = match script {
        Script::Stream(plan) => plan,
        Script::Status(code) => return refuse(out, code).await,
    };
    let Plan {
        first,
        gap,
        chunks,
        per_chunk,
        chunk_usage,
        ending,
    } = plan;
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let role = event(&chunk_json(None, None));
    if out
        .write_all(format!("{head}{role}").as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    for i in 0..chunks {
        tokio::time::sleep(if i == 0 { first } else { gap }).await;
        if let Ending::Break(after) = ending {
            if i == after {
                return false; // dropped mid-body: no terminating chunk
            }
        }
        let text = "ab".repeat(per_chunk as usize);
        let usage = chunk_usage.then_some((i as u64 + 1) * per_chunk);
        if out
            .write_all(event(&chunk_json(Some(&text), usage)).as_bytes())
            .await
            .is_err()
        {
            return false;
        }
        if let (Ending::Stall(d), 0) = (ending, i) {
            tokio::time::sleep(d).await;
            return false;
        }
    }
    let total = chunks as u64 * per_chunk;
    let mut tail = String::new();
    if matches!(ending, Ending::Done | Ending::DoneThenClose) {
        tail += &event(&serde_json::json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": total}}).to_string());
        tail += &event("[DONE]");
        seen.tokens_done.fetch_add(total, Ordering::SeqCst);
    }
    tail += "0\r\n\r\n";
    out.write_all(tail.as_bytes()).await.is_ok() && !matches!(ending, Ending::DoneThenClose)
}
