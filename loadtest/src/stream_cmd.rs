//! `loadtest stream`, the binary's side: the command-line options and the
//! run against a server (or a llama-server started for it). Part of the
//! binary (`main.rs`), not of the library.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use loadtest::llama_server::{self, LlamaServer};
use loadtest::run::Load;
use loadtest::schedule::Arrival;
use loadtest::stream::{ChatParams, MaxTokens, StreamOptions, StreamSummary};

#[derive(Args)]
pub struct StreamArgs {
    /// Server base URL (loopback only); not used with --llama-server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The `model` of each request.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model: String,
    /// Closed loop: concurrent conversations, each sending its next message
    /// when its stream ended.
    #[arg(long, conflicts_with = "rate")]
    streams: Option<usize>,
    /// Open loop: streams started per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open-loop gap distribution.
    #[arg(long, value_enum, default_value_t = Arrival::Poisson)]
    arrival: Arrival,
    /// Closed loop: pause after each stream, ms.
    #[arg(long, default_value_t = 0.0, requires = "streams")]
    think_ms: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Warm-up seconds (load applied, streams not counted).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Stop after this many measured streams.
    #[arg(long)]
    requests: Option<u64>,
    /// `max_tokens` of each request: N, or LO-HI drawn uniformly (seeded).
    #[arg(long, default_value = "128")]
    max_tokens: MaxTokens,
    /// Sampling temperature; 0 is greedy, so runs repeat.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// A system message sent before each user message.
    #[arg(long)]
    system: Option<String>,
    /// Prompt corpus, JSON lines of {"text": "..."} (user messages).
    #[arg(long, default_value_os_t = loadtest::corpus::chat_prompts_path())]
    corpus: PathBuf,
    /// Per-stream timeout in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// A send later than this many ms after its schedule counts as late.
    #[arg(long, default_value_t = 10.0)]
    late_ms: f64,
    /// Open-loop cap on streams in flight.
    #[arg(long, default_value_t = 256)]
    max_inflight: usize,
    /// Seed for arrivals and max_tokens draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `/metrics` series to report, by name prefix (repeatable; default
    /// concur_generation_ and llamacpp:).
    #[arg(long = "metrics-prefix")]
    metrics_prefixes: Vec<String>,
    /// Scrape `/metrics` this often during the window, seconds (0: only at
    /// its start and after the run).
    #[arg(long, default_value_t = 1.0)]
    metrics_every: f64,
    /// Write the summary as JSON to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Never draw a progress bar (already hidden when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Start llama.cpp's llama-server (built by `make peer-setup`) on a free
    /// port, measure it, and stop it.
    #[arg(long)]
    llama_server: bool,
    /// The llama-server binary.
    #[arg(long, default_value_os_t = llama_server::default_binary(), requires = "llama_server")]
    llama_bin: PathBuf,
    /// The GGUF model llama-server serves.
    #[arg(long, default_value_os_t = llama_server::default_gguf(), requires = "llama_server")]
    gguf: PathBuf,
    /// llama-server's slots (-np); default --streams, or 4 in the open loop.
    #[arg(long, requires = "llama_server")]
    slots: Option<usize>,
    /// llama-server's CPU threads (-t).
    #[arg(long, default_value_t = 2, requires = "llama_server")]
    llama_threads: usize,
    /// llama-server's log file.
    #[arg(long, default_value = "llama-server.log", requires = "llama_server")]
    llama_log: PathBuf,
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("invalid duration {s}"))
}

impl StreamArgs {
    fn load(&self) -> Result<Load> {
        Ok(match (self.streams, self.rate) {
            (Some(0), _) => bail!("--streams must be at least 1"),
            (Some(users), None) => Load::Closed {
                users,
                think_time: secs(self.think_ms / 1000.0)?,
            },
            (None, Some(rate)) if rate > 0.0 && rate.is_finite() => Load::Open {
                rate,
                arrival: self.arrival,
            },
            (None, Some(_)) => bail!("--rate must be positive"),
            _ => bail!("give --streams N (closed loop) or --rate R (open loop)"),
        })
    }

    fn options(&self, url: &str) -> Result<StreamOptions> {
        let prompts = Arc::new(loadtest::corpus::load(&self.corpus)?);
        let chat = ChatParams {
            model: self.model.clone(),
            system: self.system.clone(),
            temperature: self.temperature,
        };
        let mut o = StreamOptions::new(url, prompts, self.load()?, chat);
        o.max_tokens = self.max_tokens;
        o.warmup = secs(self.warmup)?;
        o.duration = secs(self.duration)?;
        o.max_requests = self.requests;
        o.request_timeout = secs(self.timeout)?;
        o.late_threshold = secs(self.late_ms / 1000.0)?;
        o.max_inflight = self.max_inflight;
        o.seed = self.seed;
        o.progress = !self.no_progress;
        o.metrics_every = secs(self.metrics_every)?;
        if !self.metrics_prefixes.is_empty() {
            o.metrics_prefixes = self.metrics_prefixes.clone();
        }
        Ok(o)
    }
}

/// Runs `loadtest stream`: against `--url`, or against a llama-server
/// started for the run and stopped after it, on every path.
pub async fn run(a: StreamArgs) -> Result<()> {
    // llama-server runs in a process group of its own, out of reach of the
    // terminal's signals: on SIGINT, SIGTERM or SIGHUP the run is dropped
    // instead, and dropping a running peer kills its group.
    let summary = tokio::select! {
        summary = measure(&a) => summary?,
        signal = crate::interrupted() => bail!("{signal}: run stopped, its llama-server (if any) killed"),
    };
    write(&summary, a.json.as_deref())
}

async fn measure(a: &StreamArgs) -> Result<StreamSummary> {
    Ok(if a.llama_server {
        let slots = a.slots.or(a.streams).unwrap_or(4);
        let mut server = LlamaServer::new(a.llama_bin.clone(), a.gguf.clone(), slots);
        server.threads = a.llama_threads.max(1);
        eprintln!(
            "starting llama-server with {slots} slots (log: {})",
            a.llama_log.display()
        );
        let peer = server.start(&a.llama_log, Duration::from_secs(120)).await?;
        let measured = async { loadtest::stream::run(&a.options(&peer.base_url)?).await }.await;
        let stopped = peer.stop(Duration::from_secs(10)).await;
        let summary = measured?;
        eprintln!("llama-server stopped ({})", stopped?);
        summary
    } else {
        loadtest::stream::run(&a.options(&a.url)?).await?
    })
}

fn write(summary: &StreamSummary, json: Option<&std::path::Path>) -> Result<()> {
    let text = serde_json::to_string_pretty(summary)?;
    match json {
        Some(p) if p.as_os_str() == "-" => println!("{text}"),
        Some(p) => {
            print!("{summary}");
            std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
        }
        None => print!("{summary}"),
    }
    Ok(())
}
