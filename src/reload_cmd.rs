//! `concur reload`: asks a running server to reload its configuration (`POST
//! /admin/reload`) and prints what changed. A convenience over curl; the server does the work.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the server is and what to send.
#[derive(clap::Args)]
pub struct ReloadArgs {
    /// The listener serving /admin/reload: the admin listener when one is set.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Drop the overrides of earlier reloads first (back to the file and `--set`s).
    #[arg(long)]
    reset: bool,
    /// Bearer token, when the server has API keys.
    #[arg(long, env = "CONCUR_API_KEY")]
    key: Option<String>,
    /// Overrides as TOML, e.g. 'executor.strategy = "rayon"' (none: re-read the file).
    toml: Vec<String>,
}

pub fn run(args: ReloadArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(post(&args))?;
    println!("{body}");
    if !(200..300).contains(&status) {
        bail!("the server refused the reload ({status})");
    }
    Ok(())
}

async fn post(args: &ReloadArgs) -> Result<(u16, String)> {
    let stream = TcpStream::connect(&args.addr)
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let path = if args.reset {
        "/admin/reload?reset"
    } else {
        "/admin/reload"
    };
    let mut req = Request::post(path)
        .header("host", &args.addr)
        .header("content-type", "application/toml");
    if let Some(key) = &args.key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let body = Full::new(Bytes::from(args.toml.join("\n")));
    let resp = sender.send_request(req.body(body)?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
