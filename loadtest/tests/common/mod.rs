//! A tiny HTTP/1.1 keep-alive server for tests: each test decides what a
//! request gets. Just enough of HTTP for the load tester's client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// What the server answers.
pub struct Reply {
    pub status: u16,
    /// Time spent "working" before answering.
    pub delay: Duration,
    pub body: String,
}

/// Decides the reply from the method, the path and the request's number.
pub type Handler = Arc<dyn Fn(&str, &str, u64) -> Reply + Send + Sync>;

/// Serves on `listener` forever. With `serial`, the delays of POST requests
/// run one at a time across all connections, like a single worker thread.
pub async fn serve(listener: TcpListener, handler: Handler, serial: bool) {
    let counter = Arc::new(AtomicU64::new(0));
    let worker = Arc::new(Mutex::new(()));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (handler, counter, worker) = (handler.clone(), counter.clone(), worker.clone());
        tokio::spawn(async move {
            let mut sock = BufReader::new(sock);
            loop {
                let mut request_line = String::new();
                if sock.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if sock.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if sock.read_exact(&mut body).await.is_err() {
                    return;
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let reply = handler(&method, &path, n);
                {
                    let _guard = if serial && method == "POST" {
                        Some(worker.lock().await)
                    } else {
                        None
                    };
                    tokio::time::sleep(reply.delay).await;
                }
                let resp = format!(
                    "HTTP/1.1 {} X\r\ncontent-length: {}\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
                if sock.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Starts a server on 127.0.0.1:0 in the background; returns its base URL.
// Each test crate compiles this module and uses only part of it.
#[allow(dead_code)]
pub async fn spawn(handler: Handler, serial: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, handler, serial));
    url
}
