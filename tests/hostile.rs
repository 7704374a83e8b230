//! Misbehaving clients: slow headers, silent and idle connections, bodies over the limit
//! sent without a length, and the HTTP/2 stream limit; in [`cap`], more connections than
//! the cap, up to a flood of idle ones against the real binary.

#[path = "hostile/cap.rs"]
mod cap;
mod common;

use common::TestServer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

pub const LIMITS: &str = "[server]\nheader_read_timeout_ms = 300\nidle_timeout_ms = 400\nmax_connections = 3\nhttp2_max_streams = 8\n[limits]\nmax_body_bytes = 2048\n[chat]\nenabled = false\n";

/// Reads until the server closes the connection; returns what it sent. Bounded.
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed() {
    let server = TestServer::start(LIMITS).await;
    // Slowloris: half a request line, then nothing.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Idle keep-alive: one request, then silence.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // The server still answers everyone else.
    assert_eq!(server.get("/health").await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    // The idle timeout is long: only the header-read timeout can close these.
    let server =
        TestServer::start(&LIMITS.replace("idle_timeout_ms = 400", "idle_timeout_ms = 30000"))
            .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Part of the HTTP/2 preface: hyper-util is still choosing the protocol.
    let mut half_preface = TcpStream::connect(server.addr).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(read_until_closed(&mut silent).await.is_empty());
    assert!(read_until_closed(&mut half_preface).await.is_empty());
    // A new connection is served. (Not the test client's pooled one: with a 300 ms header
    // timeout, hyper closes it about now, and reusing it would race with that.)
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut s).await.starts_with(b"HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_while_reading() {
    let server = TestServer::start(LIMITS).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // Send 4 KiB in chunks (limit 2 KiB) and never the final chunk: the answer must come
    // anyway, because the limit is enforced while reading, not after.
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    for _ in 0..4 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"too_large\""), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_advertises_its_stream_limit() {
    let server = TestServer::start(LIMITS).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let mut connection = std::pin::pin!(connection);
    let request = hyper::Request::get(format!("http://{}/health", server.addr))
        .body(())
        .unwrap();
    let exchange = async move {
        let mut client = client.ready().await.unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        response.await.unwrap()
    };
    // Drive the connection while the request runs; it must not end first.
    let response = tokio::select! {
        r = exchange => r,
        r = &mut connection => panic!("connection ended: {r:?}"),
    };
    assert_eq!(response.status(), 200);
    // After the server's SETTINGS frame, the client may open at most 8 streams at once.
    assert_eq!(
        connection.as_ref().get_ref().max_concurrent_send_streams(),
        8
    );
    server.stop().await;
}
