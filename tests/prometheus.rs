//! The metrics as a Prometheus user meets them: a real Prometheus (Debian's package, installed
//! by `make test-setup`) scrapes the real server every second during a bounded load, then
//! every expression of the Grafana dashboard, and an SLO query on `le="0.3"`, must return
//! numbers through Prometheus' HTTP API.

mod common;

use bytes::Bytes;
use common::TestServer;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

const DASHBOARD: &str = "deploy/grafana/concur-dashboard.json";
const INFERENCE_200: &str =
    r#"sum(concur_requests_total{route=~"embeddings|embed|chat", status="200"})"#;

/// A Prometheus server in a fresh temporary directory, on a loopback port; killed on drop,
/// and with the test process (PR_SET_PDEATHSIG) should that be killed instead.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second and waits until it is ready.
    async fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: concur\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = free_port();
        let mut prom = Prometheus {
            child: spawn(dir.path(), addr),
            dir,
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        // The free port could be taken between our probe and Prometheus' bind: try a few.
        for _ in 0..3 {
            if prom.wait_ready().await {
                return prom;
            }
            eprintln!("prometheus did not start; retrying:\n{}", prom.log());
            let _ = prom.child.kill();
            let _ = prom.child.wait();
            prom.addr = free_port();
            prom.child = spawn(prom.dir.path(), prom.addr);
        }
        panic!("prometheus did not start:\n{}", prom.log());
    }

    /// True once `/-/ready` answers 200; false if Prometheus exits or 30 s pass.
    async fn wait_ready(&mut self) -> bool {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok((200, _)) = self.get("/-/ready").await {
                return true;
            }
            sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn get(&self, path_and_query: &str) -> Result<(u16, Value), String> {
        let uri = format!("http://{}{}", self.addr, path_and_query);
        let req = hyper::Request::get(uri).body(Empty::new()).unwrap();
        let response = timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// `/api/v1/<api>?<key>=<value>`: the `data` of a successful answer.
    async fn api(&self, api: &str, key: &str, value: &str) -> Result<Value, String> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(key, value)
            .finish();
        let (status, body) = self.get(&format!("/api/v1/{api}?{query}")).await?;
        if status != 200 || body["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// An instant query: the value of each series it returns.
    async fn query(&self, expr: &str) -> Result<Vec<f64>, String> {
        let data = self.api("query", "query", expr).await?;
        let values = match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["value"][1].clone())
                .collect(),
            Some("scalar") => vec![data["result"][1].clone()],
            other => return Err(format!("unexpected result type {other:?}")),
        };
        Ok(values
            .iter()
            .map(|v| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN))
            .collect())
    }

    /// Polls `expr` until its first value satisfies `done` (30 s at most).
    async fn wait_for(&self, expr: &str, done: impl Fn(f64) -> bool) -> f64 {
        let end = Instant::now() + Duration::from_secs(30);
        let mut last = Ok(vec![]);
        while Instant::now() < end {
            last = self.query(expr).await;
            if let Some(&v) = last.as_ref().ok().and_then(|v| v.first()) {
                if done(v) {
                    return v;
                }
            }
            sleep(Duration::from_millis(250)).await;
        }
        panic!("{expr}: last answer {last:?}\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus log:\n{}", self.log());
        }
    }
}

/// Runs `prometheus` with the configuration in `dir`, its data and log there too.
fn spawn(dir: &Path, addr: SocketAddr) -> Child {
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ))
    .arg(format!("--web.listen-address={addr}"))
    .arg("--log.level=warn")
    .stdin(Stdio::null())
    .stdout(log.try_clone().unwrap())
    .stderr(log);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run `prometheus` ({e}): run `make test-setup` (Debian package prometheus)")
    })
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One client of the bounded load: valid requests on every inference route, mixed with bad
/// input (422), an unknown route (404) and a wrong method (405), so every dashboard panel
/// (errors and rejections included) has something to show. Returns its inference 200s.
async fn client(server: Arc<TestServer>, id: usize, end: Instant) -> u64 {
    let text = format!("client {id}: my parcel arrived damaged, can I get a refund?");
    let chat = json!({"messages": [{"role": "user", "content": text}]});
    let mut ok = 0;
    for i in 0..300 {
        if Instant::now() >= end {
            break;
        }
        let status = match i % 6 {
            0 => server.post("/embed", &json!({"inputs": text})).await.0,
            1 => {
                let body = json!({"input": [text, "a second input"]});
                server.post("/v1/embeddings", &body).await.0
            }
            2 => server.post("/v1/chat/completions", &chat).await.0,
            3 => server.post("/embed", &json!({"inputs": []})).await.0,
            4 => server.get("/no/such/route").await.0,
            _ => server.get("/v1/embeddings").await.0,
        };
        let expected = [200, 200, 200, 422, 404, 405][i % 6];
        assert_eq!(status, expected, "request {i} of client {id}");
        ok += u64::from(i % 6 < 3);
        sleep(Duration::from_millis(10)).await;
    }
    ok
}

/// The dashboard's template variables resolved the way Grafana would, through the same
/// Prometheus: each `label_values(selector, label)` becomes the regex of every value found.
async fn resolve_variables(prom: &Prometheus, dashboard: &Value) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap().to_string();
        let query = var["query"]["query"].as_str().unwrap();
        let (selector, label) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .unwrap_or_else(|| panic!("variable {name}: unsupported query {query}"));
        let selector = substitute(selector, &vars);
        let series = prom.api("series", "match[]", &selector).await.unwrap();
        let mut values: Vec<String> = series
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[label.trim()].as_str().map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        assert!(!values.is_empty(), "variable {name}: {query} found nothing");
        vars.push((name, values.join("|")));
    }
    vars
}

/// Grafana's substitutions: the variables, and a one-minute window for the range macros
/// (the whole load fits in it, and 1 s scrapes give it dozens of samples).
fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1m")
        .replace("$__interval", "1m");
    for (name, value) in vars {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "unsubstituted variable in {out}");
    out
}

/// Every `(panel title, expr)` of the dashboard, collapsed rows included.
fn dashboard_exprs(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?").to_string();
                out.push((title, expr.to_string()));
            }
        }
        dashboard_exprs(&panel["panels"], out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_answers_every_dashboard_query() {
    let server = Arc::new(TestServer::start("").await);
    // Spawned from the test's own thread, which outlives it (PR_SET_PDEATHSIG follows the
    // thread that forked).
    let prom = Prometheus::start(server.addr).await;
    prom.wait_for(r#"up{job="concur"}"#, |v| v == 1.0).await;

    let end = Instant::now() + Duration::from_secs(5);
    let clients: Vec<_> = (0..3)
        .map(|id| tokio::spawn(client(server.clone(), id, end)))
        .collect();
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    // Prometheus has scraped the end of the load once it counts every answer the clients got.
    let seen = prom.wait_for(INFERENCE_200, |v| v >= sent as f64).await;
    assert_eq!(seen, sent as f64, "Prometheus counts what the clients got");

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(common::root().join(DASHBOARD)).unwrap())
            .unwrap();
    let vars = resolve_variables(&prom, &dashboard).await;
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() > 30, "only {} expressions", exprs.len());
    let mut failed = Vec::new();
    for (title, expr) in &exprs {
        let expr = substitute(expr, &vars);
        match prom.query(&expr).await {
            Ok(values) if values.iter().any(|v| v.is_finite()) => {}
            other => failed.push(format!("{title}: {expr}\n  -> {other:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} dashboard queries returned no number:\n{}",
        failed.len(),
        exprs.len(),
        failed.join("\n")
    );

    // The README's SLO (300 ms) as a Prometheus user writes it.
    let slo = r#"sum(rate(concur_request_duration_seconds_bucket{le="0.3"}[1m]))"#;
    assert!(prom.query(slo).await.unwrap()[0] > 0.0, "{slo}");
    let build = prom.query("concur_build_info").await.unwrap();
    assert_eq!(build, vec![1.0]);
    println!(
        "{} dashboard queries answered; {sent} inference requests counted by both sides",
        exprs.len()
    );
    drop(prom);
    common::stop_shared(server).await;
}
