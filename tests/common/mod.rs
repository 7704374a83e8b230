//! Shared by the integration tests: start the real server (real model, real ONNX Runtime)
//! on 127.0.0.1:0 and talk HTTP to it over loopback.
#![allow(dead_code)]

use bytes::Bytes;
use concur::config::Config;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Config with absolute paths, so tests work from any directory, plus `extra` TOML.
pub fn config(extra: &str) -> Config {
    let text = config_text(extra);
    Config::parse(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// The TOML [`config`] parses: also a reload's source (`ConfigSource::text`).
pub fn config_text(extra: &str) -> String {
    let root = root();
    let model_dir = root.join("models/all-MiniLM-L6-v2");
    assert!(
        model_dir.join("model.onnx").is_file(),
        "{} is missing: run `make setup` (or `make test`) first",
        model_dir.display()
    );
    let base = format!(
        "[model]\ndir = {:?}\nort_library = {:?}\n[chat]\nknowledge_base = {:?}\n",
        model_dir,
        root.join("lib/libonnxruntime.so"),
        root.join("config/knowledge_base.toml"),
    );
    merge(&base, extra)
}

/// The generative model's name in the API.
pub const GEN_MODEL: &str = "SmolLM2-135M-Instruct";

/// A `[generation]` section that turns generation on with the exported model and little
/// memory (2 slots of 512 tokens, at most 64 new tokens); `keys` (TOML) add or override.
pub fn generation(keys: &str) -> String {
    let dir = root().join("models").join(GEN_MODEL);
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run `make setup` first",
        dir.display()
    );
    let base = format!(
        "[generation]\nenabled = true\ndir = {dir:?}\nslots = 2\nmax_context = 512\n\
         max_tokens_cap = 64\ndefault_max_tokens = 16\n"
    );
    merge(&base, &format!("[generation]\n{keys}"))
}

/// Merges two TOML documents (tables of `extra` win key by key).
fn merge(base: &str, extra: &str) -> String {
    let mut a: toml::Table = toml::from_str(base).unwrap();
    let b: toml::Table = toml::from_str(extra).expect("extra config is TOML");
    for (section, values) in b {
        match (a.get_mut(&section), values) {
            (Some(toml::Value::Table(t)), toml::Value::Table(v)) => t.extend(v),
            (_, v) => {
                a.insert(section, v);
            }
        }
    }
    toml::to_string(&a).unwrap()
}

/// A running server and a client for it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<Result<(), concur::ServeError>>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestServer {
    /// Starts a server with `extra` TOML on top of the test config, and waits until ready.
    pub async fn start(extra: &str) -> TestServer {
        Self::start_with(config(extra), |s| s).await
    }

    /// Starts a server, letting the test adjust the [`concur::Server`] first.
    pub async fn start_with(
        config: Config,
        adjust: impl FnOnce(concur::Server) -> concur::Server,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = adjust(concur::Server::new(config, listener));
        let task = tokio::spawn(server.run(shutdown.clone()));
        let s = TestServer {
            addr,
            shutdown,
            task: Some(task),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        s.wait_ready().await;
        s
    }

    async fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok((StatusCode::OK, _, _)) = self.try_get("/ready").await {
                return;
            }
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("server stopped while starting (see its error above)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server at {} did not become ready in 60 s", self.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request and returns status, headers and the raw body.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.client.request(req).await.expect("request failed");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, bytes)
    }

    async fn try_get(&self, path: &str) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let req = Request::get(self.url(path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Bytes) {
        let (s, _, b) = self.try_get(path).await.expect("GET failed");
        (s, b)
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let (s, b) = self.get(path).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// POSTs raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(Method::POST).uri(self.url(path));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req.body(Full::new(body.into())).unwrap()).await
    }

    /// POSTs JSON; returns status, headers and the parsed body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        let (s, h, b) = self
            .post_raw(path, Some("application/json"), body.to_string())
            .await;
        let v = serde_json::from_slice(&b)
            .unwrap_or_else(|_| panic!("non-JSON body ({s}): {}", String::from_utf8_lossy(&b)));
        (s, h, v)
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task panicked")
                .expect("server failed");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The golden set: texts and the vectors sentence-transformers computed for them.
pub struct Golden {
    pub items: Vec<(String, usize, Vec<f32>)>,
}

pub fn golden() -> Golden {
    let path = golden_path();
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    let items = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["text"].as_str().unwrap().to_string(),
                i["num_tokens"].as_u64().unwrap() as usize,
                i["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
            )
        })
        .collect();
    Golden { items }
}

/// `../shared/reference/minilm-golden.json` beside the checkout (or $CONCUR_GOLDEN).
pub fn golden_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCUR_GOLDEN") {
        return PathBuf::from(p);
    }
    let candidates = [
        root().join("../shared/reference/minilm-golden.json"),
        root().join("shared/reference/minilm-golden.json"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("golden file not found in {:?}", candidates))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    concur::engine::pooling::cosine(a, b)
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Runs a script from tests/python with the project's virtual environment.
pub fn run_python(script: &str, args: &[&str]) {
    let root = root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run `make setup`",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/python").join(script))
        .args(args)
        .output()
        .expect("cannot run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
}

/// Largest element-wise difference between two vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The value of the first sample of `name` whose labels include every `labels` pair.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

pub async fn scrape(server: &TestServer) -> String {
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}

/// Stops a server shared with client tasks, once they have all finished.
pub async fn stop_shared(server: std::sync::Arc<TestServer>) {
    std::sync::Arc::try_unwrap(server)
        .ok()
        .expect("no clients left")
        .stop()
        .await;
}

/// The real `concur` binary serving on a free loopback port, stopped with SIGTERM on drop.
pub struct Binary {
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl Binary {
    /// Starts `concur serve --config config/default.toml` with `--set` overrides and waits
    /// until it is ready.
    pub async fn start(overrides: &[&str]) -> Binary {
        Self::start_config(&root().join("config/default.toml"), overrides).await
    }

    /// Starts `concur serve --config <config>` with `--set` overrides and waits until ready.
    pub async fn start_config(config: &std::path::Path, overrides: &[&str]) -> Binary {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_concur"));
        cmd.current_dir(root())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", &addr.to_string()]);
        for o in overrides {
            cmd.args(["--set", o]);
        }
        let child = cmd.spawn().expect("cannot start concur");
        let mut server = Binary { addr, child };
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        for _ in 0..600 {
            let req = Request::get(format!("http://{addr}/ready"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(r) = client.request(req).await {
                if r.status() == StatusCode::OK {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("concur exited while starting: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("concur at {addr} did not become ready in 60 s");
    }
}

impl Binary {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's resident set size, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid())).unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
    }

    /// Waits up to `limit` for the server to exit (after a signal the test sent).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// The live child processes of `pid` (every thread's), from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    children.sort_unstable();
    children
}

/// Whether `pid` is still a process (not yet reaped; a zombie counts).
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Drop for Binary {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
