//! Graceful shutdown of the real binary: SIGTERM in the middle of a load.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_answers_every_accepted_request() {
    let root = common::root();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_concur"))
        .current_dir(&root)
        .args([
            "serve",
            "--config",
            "config/workers.toml",
            "--listen",
            &addr.to_string(),
        ])
        .args([
            "--set",
            "server.shutdown_grace_ms=1000",
            "--set",
            "server.drain_timeout_ms=10000",
        ])
        .args(["--set", "chat.enabled=false"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start concur");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = |p: &str| format!("http://{addr}{p}");
    let get = |p: String| {
        let client = client.clone();
        async move {
            let req = hyper::Request::get(p)
                .body(Full::new(Bytes::new()))
                .unwrap();
            client.request(req).await.map(|r| r.status().as_u16())
        }
    };
    let started = Instant::now();
    while get(url("/ready")).await.ok() != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Clients behave like a load balancer's users: they stop sending new requests once
    // readiness turns 503, and count every answer.
    let draining = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|c| {
            let (client, draining, target) = (client.clone(), draining.clone(), url("/embed"));
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                let mut i = 0;
                while !draining.load(Ordering::SeqCst) && i < 2000 {
                    let body = json!({"inputs": format!("client {c} request {i}: is my order on its way?")}).to_string();
                    let req = hyper::Request::post(&target)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    match client.request(req).await {
                        Ok(resp) if resp.status() == 200 => {
                            resp.into_body().collect().await.expect("body cut off");
                            ok += 1;
                        }
                        Ok(resp) => failed.push(format!("status {}", resp.status())),
                        Err(e) => failed.push(format!("error {e:?}")),
                    }
                    i += 1;
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let sent = Instant::now();
    loop {
        match get(url("/ready")).await {
            Ok(503) => break,
            Ok(200) => assert!(
                sent.elapsed() < Duration::from_secs(2),
                "still ready after SIGTERM"
            ),
            other => panic!("readiness during the grace period: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    draining.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 0, "no request was served");
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // The process drains and exits cleanly, well within its drain deadline.
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("concur did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    // After it stopped, new connections are refused.
    let refused = get(url("/health")).await;
    assert!(refused.is_err(), "still answering after exit: {refused:?}");
    println!("{ok} requests answered during the shutdown test");
}
