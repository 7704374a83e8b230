//! `loadtest` command line: `run` for one load test, `stream` for one
//! streaming chat run, `sweep` for the strategy comparison, `gen-report`
//! for the generation sweep's report. All logic lives in the library.

mod stream_cmd;
mod sweep_cmd;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use loadtest::client::{Endpoint, Mix};
use loadtest::run::{Load, RunOptions};
use loadtest::schedule::Arrival;
use loadtest::switch::{Switch, SwitchPlan};

#[derive(Parser)]
#[command(version, about = "Load generator and strategy sweep for concur")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One closed-loop (--users) or open-loop (--rate) run against a running server.
    Run(RunArgs),
    /// One streaming chat run (OpenAI server-sent events) against any
    /// OpenAI-compatible server: TTFT, inter-token latency, tokens/s.
    Stream(stream_cmd::StreamArgs),
    /// Start the server once per config preset, find its sustainable rate, write a report.
    Sweep(sweep_cmd::SweepArgs),
    /// Write the report of a generation sweep (scripts/generation-sweep.sh):
    /// DIR/README.md and SVG charts from the `stream --json` files in DIR.
    GenReport(GenReportArgs),
}

#[derive(Args)]
struct GenReportArgs {
    /// The sweep's folder, holding its run JSON files; the report is written there.
    dir: PathBuf,
}

/// Options shared by `run` and `sweep`.
#[derive(Args)]
struct Common {
    /// Corpus of chat messages, JSON lines of {"text": "..."}.
    #[arg(long, default_value_os_t = loadtest::corpus::default_path())]
    corpus: PathBuf,
    /// Send every request to this endpoint.
    #[arg(long, value_parser = ["embeddings", "chat"], conflicts_with = "mix")]
    endpoint: Option<String>,
    /// Weighted endpoint mix, e.g. embeddings=3,chat=1.
    #[arg(long)]
    mix: Option<Mix>,
    /// Open-loop gap distribution.
    #[arg(long, value_enum, default_value_t = Arrival::Poisson)]
    arrival: Arrival,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// A send later than this many ms after its schedule counts as late.
    #[arg(long, default_value_t = 10.0)]
    late_ms: f64,
    /// Open-loop cap on requests in flight.
    #[arg(long, default_value_t = 1024)]
    max_inflight: usize,
    /// Seed for arrivals and the endpoint mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Never draw a progress bar (it is already hidden when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

impl Common {
    fn mix(&self) -> Result<Mix> {
        Ok(match (&self.endpoint, &self.mix) {
            (Some(e), _) => Mix::only(e.parse::<Endpoint>()?),
            (None, Some(m)) => m.clone(),
            (None, None) => Mix::only(Endpoint::Embeddings),
        })
    }
}

#[derive(Args)]
struct RunArgs {
    /// Server base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Closed loop: number of concurrent users.
    #[arg(long, conflicts_with = "rate")]
    users: Option<usize>,
    /// Closed loop: think time between an answer and the next message, ms.
    #[arg(long, default_value_t = 0.0, requires = "users")]
    think_ms: f64,
    /// Open loop: target requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Warm-up seconds (load applied, not recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Write the summary as JSON to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Hold this many idle keep-alive connections open for the whole run (each after one
    /// GET /health); raises this process's open-file limit as needed.
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// The server's process id: report its memory before and with the idle connections.
    #[arg(long, requires = "idle_connections")]
    server_pid: Option<u32>,
    /// Switch the server's configuration live every this many seconds (POST
    /// /admin/reload), the first at the start of the measured window; the report
    /// shows each segment. Needs --strategies or --switch.
    #[arg(long)]
    switch_every: Option<f64>,
    /// Strategies to switch through in turn, e.g. inline,rayon,workers.
    #[arg(long, value_delimiter = ',', requires = "switch_every")]
    strategies: Vec<String>,
    /// Any configuration to switch to, as reload TOML (repeatable), e.g.
    /// 'model.variant = "int8"'; after the --strategies.
    #[arg(long = "switch", requires = "switch_every")]
    switches: Vec<String>,
    /// Base URL of the listener serving /admin/reload (default: --url).
    #[arg(long)]
    admin_url: Option<String>,
    #[command(flatten)]
    common: Common,
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("invalid duration {s}"))
}

async fn run_cmd(a: RunArgs) -> Result<()> {
    let c = &a.common;
    let load = match (a.users, a.rate) {
        (Some(users), None) => Load::Closed {
            users,
            think_time: secs(a.think_ms / 1000.0)?,
        },
        (None, Some(rate)) if rate > 0.0 && rate.is_finite() => Load::Open {
            rate,
            arrival: c.arrival,
        },
        (None, Some(_)) => bail!("--rate must be positive"),
        _ => bail!("give --users N (closed loop) or --rate R (open loop)"),
    };
    let texts = Arc::new(loadtest::corpus::load(&c.corpus)?);
    let mut opts = RunOptions::new(a.url.clone(), texts, load);
    opts.mix = c.mix()?;
    opts.warmup = secs(a.warmup)?;
    opts.duration = secs(a.duration)?;
    opts.request_timeout = secs(c.timeout)?;
    opts.max_requests = a.max_requests;
    opts.max_inflight = c.max_inflight;
    opts.late_threshold = secs(c.late_ms / 1000.0)?;
    opts.seed = c.seed;
    opts.progress = !c.no_progress;
    opts.idle_connections = a.idle_connections;
    opts.server_pid = a.server_pid;
    opts.switches = switch_plan(&a)?;
    let summary = loadtest::run::run(&opts).await?;
    let json = serde_json::to_string_pretty(&summary)?;
    match a.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            print!("{summary}");
            std::fs::write(p, json + "\n").with_context(|| format!("writing {}", p.display()))?;
        }
        None => print!("{summary}"),
    }
    Ok(())
}

/// The live switches asked for on the command line, if any.
fn switch_plan(a: &RunArgs) -> Result<Option<SwitchPlan>> {
    let Some(every) = a.switch_every else {
        return Ok(None);
    };
    let mut steps = Switch::strategies(&a.strategies);
    steps.extend(a.switches.iter().map(|t| Switch {
        label: t.clone(),
        toml: t.clone(),
    }));
    if steps.is_empty() {
        bail!("--switch-every needs --strategies or --switch");
    }
    Ok(Some(SwitchPlan {
        admin_url: a.admin_url.clone().unwrap_or_else(|| a.url.clone()),
        every: secs(every)?,
        steps,
    }))
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP (the terminal closed),
/// naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut int), Ok(mut term), Ok(mut hup)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        },
        // Without handlers the default dispositions stay: never resolve.
        _ => std::future::pending().await,
    }
}

fn gen_report_cmd(a: GenReportArgs) -> Result<()> {
    let written = loadtest::genreport::write(&a.dir)?;
    for (run, error) in &written.unreadable {
        eprintln!("{run}.json: unreadable, shown as such: {error}");
    }
    for p in written.files {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Two worker threads: enough to keep sends on schedule without taking
    // more CPU than needed from the server sharing this machine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Run(a) => run_cmd(a).await,
            Command::Stream(a) => stream_cmd::run(a).await,
            Command::Sweep(a) => sweep_cmd::run(a).await,
            Command::GenReport(a) => gen_report_cmd(a),
        }
    })
}
