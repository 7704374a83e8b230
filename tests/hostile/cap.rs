//! More connections than the cap: the idle ones make room, busy ones never do, the
//! per-client cap, and a flood of idle connections against the real binary while
//! well-behaved clients are served.

use super::{read_until_closed, LIMITS};
use crate::common::{self, Binary, TestServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// LIMITS with timeouts long enough that only the cap closes connections during a test.
fn long_timeouts(extra: &str) -> String {
    LIMITS
        .replace(
            "header_read_timeout_ms = 300",
            "header_read_timeout_ms = 30000",
        )
        .replace("idle_timeout_ms = 400", "idle_timeout_ms = 30000")
        + extra
}

/// Whether the server closed `stream` (EOF or reset) within `wait`; reads and drops
/// anything it sends first.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A connection that has sent `GET /health` `requests` times and read each answer: idle,
/// kept alive.
async fn idle_keep_alive(addr: std::net::SocketAddr, requests: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..requests {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_connection_idle_longest_makes_room() {
    let server = TestServer::start(&long_timeouts("")).await;
    // The cap is 3. Each newcomer is answered; the server closes the ones idle longest:
    // the test client's pooled connection from the readiness poll first (if still open),
    // then the earliest of these. Two requests each put them in the same shedding tier as
    // the pooled one, however many requests that made.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(idle_keep_alive(server.addr, 2).await);
    }
    for (i, s) in held.iter_mut().enumerate() {
        let closed =
            closed_within(s, Duration::from_millis(if i < 3 { 10_000 } else { 300 })).await;
        assert_eq!(closed, i < 3, "connection {i}: closed {closed}");
    }
    let metrics = common::scrape(&server).await;
    assert!(
        common::sample(
            &metrics,
            "concur_connections_shed_total",
            &[("reason", "idle")]
        ) >= 3.0
    );
    assert_eq!(
        common::sample(
            &metrics,
            "concur_connections_refused_total",
            &[("reason", "busy")]
        ),
        0.0
    );
    server.stop().await;
}

/// A connection with a request in flight: `POST /embed` whose body has not all arrived.
/// Returns once the handler is reading it (hyper answers `100 Continue` then).
async fn in_flight(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n{\"inputs\"")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_the_newcomer_is_refused() {
    let server = TestServer::start(&long_timeouts("")).await;
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(in_flight(server.addr).await);
    }
    let mut newcomer = TcpStream::connect(server.addr).await.unwrap();
    let _ = newcomer
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        read_until_closed(&mut newcomer).await.is_empty(),
        "a connection over a cap of busy ones was served"
    );
    for s in busy.iter_mut() {
        assert!(
            !closed_within(s, Duration::from_millis(200)).await,
            "a busy connection was shed"
        );
    }
    // One request ends (its client goes away): once the server has noticed, its place is
    // free again.
    drop(busy.pop());
    let mut answer = String::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let _ = s
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        answer = String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned();
        if !answer.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        common::sample(
            &answer,
            "concur_connections_refused_total",
            &[("reason", "busy")]
        ) >= 1.0
    );
    server.stop().await;
}

/// A connection from `source` (any 127.x.y.z address: all are loopback on Linux).
async fn connect_from(source: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_client_cap_refuses_only_that_address() {
    let server = TestServer::start(&long_timeouts("").replace(
        "max_connections = 3",
        "max_connections = 50\nmax_connections_per_client = 2",
    ))
    .await;
    let (_, info) = server.get_json("/info").await;
    assert_eq!(info["connections"]["max"], 50);
    assert_eq!(info["connections"]["derived_from_open_file_limit"], false);
    assert_eq!(info["connections"]["max_per_client"], 2);
    let mut first = connect_from([127, 0, 0, 2], server.addr).await;
    let mut second = connect_from([127, 0, 0, 2], server.addr).await;
    let mut third = connect_from([127, 0, 0, 2], server.addr).await;
    assert!(closed_within(&mut third, Duration::from_secs(10)).await);
    assert!(!closed_within(&mut first, Duration::from_millis(200)).await);
    assert!(!closed_within(&mut second, Duration::from_millis(50)).await);
    let mut other = connect_from([127, 0, 0, 3], server.addr).await;
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut other).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let metrics = common::scrape(&server).await;
    assert_eq!(
        common::sample(
            &metrics,
            "concur_connections_refused_total",
            &[("reason", "per_client")]
        ),
        1.0
    );
    server.stop().await;
}

/// One hostile client slot: connect, make one request if `request` (else send nothing),
/// then stay silent until the server closes the connection; count it and start over.
async fn hostile_slot(
    addr: std::net::SocketAddr,
    request: bool,
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if request {
            let _ = s
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
        }
        while !stop.load(Ordering::Relaxed) {
            if closed_within(&mut s, Duration::from_millis(100)).await {
                closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// One well-behaved client's requests: what the last try got, and how many tries it took.
struct Outcome {
    status: String,
    tries: usize,
}

/// Whether `e` says the connection closed under a request before any answer came: shedding
/// an idle keep-alive connection races with the client's next request (RFC 9112 9.3.1), and
/// clients retry such a request on a fresh connection.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<hyper::Error>())
        .is_some_and(|h| h.is_incomplete_message() || h.is_canceled() || h.is_closed())
}

/// One well-behaved client: `n` embeddings requests in a row on a pooled keep-alive
/// client, each retried (at most twice) when its connection closed before the answer.
async fn well_behaved(addr: std::net::SocketAddr, who: usize, n: usize) -> Vec<Outcome> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut outcomes = Vec::new();
    for i in 0..n {
        let body = json!({"model": "all-MiniLM-L6-v2", "input": format!("client {who}, question {i}: where is my parcel?")});
        let mut tries = 0;
        let status = loop {
            tries += 1;
            let req = hyper::Request::post(format!("http://{addr}/v1/embeddings"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            match timeout(Duration::from_secs(30), client.request(req)).await {
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    break match resp.into_body().collect().await {
                        Ok(_) => status.as_str().to_string(),
                        Err(e) => format!("{status}, body cut off: {e}"),
                    };
                }
                Ok(Err(e)) if closed_before_answer(&e) && tries < 3 => continue,
                Ok(Err(e)) => break format!("error: {e:?}"),
                Err(_) => break "no answer in 30 s".into(),
            }
        };
        outcomes.push(Outcome { status, tries });
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_lock_out_real_clients() {
    const CAP: usize = 64;
    let cap = format!("server.max_connections={CAP}");
    // Timeouts longer than the test: only the cap can close the hostile connections.
    let server = Binary::start(&[
        &cap,
        "server.header_read_timeout_ms=60000",
        "server.idle_timeout_ms=60000",
        "chat.enabled=false",
    ])
    .await;
    // Three times the cap: half silent, half idle after one request; each re-opened as soon
    // as the server closes it.
    let (stop, closed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    // The hostile client runs on its own thread, as another process would: it must not
    // starve the well-behaved client of this test's runtime.
    let hostile = {
        let (addr, stop, closed) = (server.addr, stop.clone(), closed.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let slots: Vec<_> = (0..3 * CAP)
                    .map(|i| {
                        tokio::spawn(hostile_slot(addr, i % 2 == 1, stop.clone(), closed.clone()))
                    })
                    .collect();
                for s in slots {
                    s.await.unwrap();
                }
            })
        })
    };
    let started = tokio::time::Instant::now();
    while closed.load(Ordering::Relaxed) < 3 * CAP {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the cap was never reached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clients: Vec<_> = (0..2)
        .map(|who| tokio::spawn(well_behaved(server.addr, who, 20)))
        .collect();
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.extend(c.await.unwrap());
    }
    let churn = closed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || hostile.join().unwrap())
        .await
        .unwrap();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.status != "200")
        .map(|o| &o.status)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} well-behaved requests failed: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    // Shedding prefers silent and once-used connections, so a pooled client's connection is
    // rarely the one closed: a retry now and then, never a client that mostly retries.
    let retried = outcomes.iter().filter(|o| o.tries > 1).count();
    assert!(
        retried <= outcomes.len() / 10,
        "{retried} of {} well-behaved requests needed a retry",
        outcomes.len()
    );
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned();
    let value = |name: &str, labels: &[(&str, &str)]| common::sample(&metrics, name, labels);
    assert!(value("concur_connections_shed_total", &[("reason", "header")]) > 0.0);
    assert!(value("concur_connections_shed_total", &[("reason", "idle")]) > 0.0);
    assert_eq!(
        value("concur_connections_refused_total", &[("reason", "busy")]),
        0.0
    );
    assert!(value("concur_connections_open", &[]) <= CAP as f64);
    println!(
        "{} well-behaved requests answered ({retried} retried) while the server closed {churn} hostile connections",
        outcomes.len()
    );
}
