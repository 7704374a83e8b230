//! The HTTP client: request bodies for each endpoint, the endpoint mix, a
//! guard that keeps all traffic on the loopback interface, and how one
//! request ended ([`Outcome`]), which `stats` accounts.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The model name the server expects in request bodies.
pub const MODEL: &str = "all-MiniLM-L6-v2";

/// An API the load tester can exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/embeddings` with one string.
    Embeddings,
    /// `POST /v1/chat/completions` with one user message.
    Chat,
}

impl Endpoint {
    /// Short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Embeddings => "embeddings",
            Endpoint::Chat => "chat",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }

    /// The JSON body for one message.
    pub fn body(self, text: &str) -> Vec<u8> {
        let v = match self {
            Endpoint::Embeddings => serde_json::json!({"model": MODEL, "input": text}),
            Endpoint::Chat => serde_json::json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": text}],
            }),
        };
        serde_json::to_vec(&v).expect("JSON of strings serialises")
    }
}

impl FromStr for Endpoint {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "embeddings" => Ok(Endpoint::Embeddings),
            "chat" => Ok(Endpoint::Chat),
            _ => bail!("unknown endpoint {s:?} (expected embeddings or chat)"),
        }
    }
}

/// Weighted choice of endpoint per request, e.g. `embeddings=3,chat=1`.
/// Serialised in that same text form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Mix(Vec<(Endpoint, f64)>);

impl From<Mix> for String {
    fn from(m: Mix) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Mix {
    type Error = anyhow::Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl Mix {
    /// Every request goes to `endpoint`.
    pub fn only(endpoint: Endpoint) -> Self {
        Mix(vec![(endpoint, 1.0)])
    }

    /// Picks an endpoint with probability proportional to its weight.
    pub fn pick(&self, rng: &mut impl Rng) -> Endpoint {
        if self.0.len() == 1 {
            return self.0[0].0;
        }
        let total: f64 = self.0.iter().map(|(_, w)| w).sum();
        let mut x = rng.random::<f64>() * total;
        for &(e, w) in &self.0 {
            if x < w {
                return e;
            }
            x -= w;
        }
        self.0[self.0.len() - 1].0
    }
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    /// Accepts `chat`, or `name=weight` pairs separated by commas.
    fn from_str(s: &str) -> Result<Self> {
        let mut parts = Vec::new();
        for item in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match item.split_once('=') {
                Some((n, w)) => (n, w.parse::<f64>().context("mix weight")?),
                None => (item, 1.0),
            };
            if !(weight.is_finite() && weight > 0.0) {
                bail!("mix weight for {name} must be positive");
            }
            parts.push((name.parse()?, weight));
        }
        if parts.is_empty() {
            bail!("empty endpoint mix");
        }
        Ok(Mix(parts))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(e, w)| format!("{}={w}", e.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Checks that `base` is an `http://` URL whose host is a loopback
/// address: the load tester must never send traffic off this machine.
pub fn check_loopback(base: &str) -> Result<Uri> {
    let uri: Uri = base.parse().with_context(|| format!("base URL {base:?}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("base URL {base:?} must use http://");
    }
    let host = uri.host().context("base URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing to send load to {host}: only loopback addresses are allowed");
    }
    Ok(uri)
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response with its body fully read.
    Ok,
    /// Any non-2xx status (429 overloaded, 503 deadline or draining, ...).
    Status(u16),
    /// No complete response within the request timeout.
    Timeout,
    /// Connection refused or reset, or a malformed response.
    Transport,
}

impl Outcome {
    /// The key under which errors are counted in summaries.
    pub fn error_key(self) -> Option<String> {
        match self {
            Outcome::Ok => None,
            Outcome::Status(code) => Some(code.to_string()),
            Outcome::Timeout => Some("timeout".into()),
            Outcome::Transport => Some("transport".into()),
        }
    }
}

/// A pooled HTTP/1 client bound to one loopback server.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`); fails for any
    /// non-loopback host.
    pub fn new(base: &str) -> Result<Self> {
        check_loopback(base)?;
        let mut connector = HttpConnector::new();
        // Small request/response pairs: Nagle's delay would dominate latency.
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            // Keep every connection an open loop may need: reconnecting
            // under load would add handshake time to the measurements.
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Ok(Client {
            inner,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    fn uri(&self, path: &str) -> Result<Uri> {
        Ok(format!("{}{path}", self.base).parse()?)
    }

    /// Sends one message and reads the whole response, within `timeout`.
    pub async fn send(&self, endpoint: Endpoint, text: &str, timeout: Duration) -> Outcome {
        let req = match self.uri(endpoint.path()).map(|uri| {
            Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(endpoint.body(text))))
        }) {
            Ok(Ok(req)) => req,
            _ => return Outcome::Transport,
        };
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|_| Outcome::Transport)?;
            let status = resp.status();
            // Read the body: latency ends at the last byte, not the headers.
            resp.into_body()
                .collect()
                .await
                .map_err(|_| Outcome::Transport)?;
            Ok::<StatusCode, Outcome>(status)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Outcome::Timeout,
            Ok(Err(o)) => o,
            Ok(Ok(s)) if s.is_success() => Outcome::Ok,
            Ok(Ok(s)) => Outcome::Status(s.as_u16()),
        }
    }

    /// `POST path` with a JSON body, returning as soon as the response's
    /// headers are in: the caller reads the body as it streams.
    ///
    /// On a connection of its own (`connection: close`): llama.cpp's server
    /// closes the connection after a streamed response although it announces
    /// keep-alive, so a pooled connection would fail the next stream now and
    /// then (a client-side race, not a server error). A fresh loopback
    /// connection per stream costs far less than one generated token.
    pub async fn post_json_streaming(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>> {
        let req = Request::post(self.uri(path)?)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .header("connection", "close")
            .body(Full::new(Bytes::from(body)))?;
        Ok(self.inner.request(req).await?)
    }

    /// `GET path`, returning the status and body text.
    pub async fn get(&self, path: &str, timeout: Duration) -> Result<(u16, String)> {
        let req = Request::get(self.uri(path)?).body(Full::new(Bytes::new()))?;
        self.text_exchange(req, timeout).await
    }

    /// `POST path` with a text body, returning the status and body text.
    pub async fn post(&self, path: &str, body: &str, timeout: Duration) -> Result<(u16, String)> {
        let req = Request::post(self.uri(path)?).body(Full::new(Bytes::from(body.to_string())))?;
        self.text_exchange(req, timeout).await
    }

    /// Sends `req` and reads the whole response as text, within `timeout`.
    async fn text_exchange(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(u16, String)> {
        let what = format!("{} {}", req.method(), req.uri().path());
        let exchange = async {
            let resp = self.inner.request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .with_context(|| format!("{what} timed out"))?
    }

    /// `GET path`, failing unless the status is 200.
    pub async fn get_ok(&self, path: &str, timeout: Duration) -> Result<String> {
        let (status, body) = self.get(path, timeout).await?;
        if status != 200 {
            bail!("GET {path} returned {status}: {body}");
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn only_loopback_is_allowed() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://[::1]:80").is_ok());
        assert!(check_loopback("http://10.0.0.1:8080").is_err());
        assert!(check_loopback("http://example.com").is_err());
        assert!(check_loopback("https://127.0.0.1").is_err());
    }

    #[test]
    fn mix_parses_and_picks_by_weight() {
        let mix: Mix = "embeddings=3,chat=1".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let chats = (0..10_000)
            .filter(|_| mix.pick(&mut rng) == Endpoint::Chat)
            .count();
        assert!((2_200..2_800).contains(&chats), "{chats}");
        assert_eq!("chat".parse::<Mix>().unwrap(), Mix::only(Endpoint::Chat));
        let json = serde_json::to_string(&mix).unwrap();
        assert_eq!(json, "\"embeddings=3,chat=1\"");
        assert_eq!(serde_json::from_str::<Mix>(&json).unwrap(), mix);
        assert!("chat=0".parse::<Mix>().is_err());
        assert!("bogus".parse::<Mix>().is_err());
    }

    #[test]
    fn bodies_have_the_openai_shape() {
        let chat: serde_json::Value = serde_json::from_slice(&Endpoint::Chat.body("hi")).unwrap();
        assert_eq!(chat["messages"][0]["content"], "hi");
        let emb: serde_json::Value =
            serde_json::from_slice(&Endpoint::Embeddings.body("hi")).unwrap();
        assert_eq!(emb["input"], "hi");
        assert_eq!(emb["model"], MODEL);
    }
}
