//! `loadtest` command line: `run` for one load test, `stream` for one
//! streaming chat run, `sweep` for the strategy comparison. All logic lives
//! in the library.

mod stream_cmd;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use loadtest::client::{Endpoint, Mix};
use loadtest::peer::PeerSpec;
use loadtest::run::{Load, RunOptions};
use loadtest::schedule::Arrival;
use loadtest::sweep::SweepOptions;
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
    Sweep(SweepArgs),
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

#[derive(Args)]
struct SweepArgs {
    /// Config presets, e.g. config/inline.toml config/rayon.toml.
    #[arg(required = true)]
    configs: Vec<PathBuf>,
    /// Output directory for report.md, charts, results.json and server logs.
    #[arg(long)]
    out: PathBuf,
    /// The concur binary (default: next to this executable).
    #[arg(long)]
    concur: Option<PathBuf>,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 10.0)]
    step_seconds: f64,
    /// Warm-up seconds of the closed-loop probe that opens each preset.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Most search steps per preset; 0 skips the probe, the search and the fractions.
    #[arg(long, default_value_t = 8)]
    max_steps: usize,
    /// Light load: user counts of the closed-loop steps (no think time) run
    /// for every preset and peer; "" skips them.
    #[arg(long, default_value = "1,4,16,64", value_parser = parse_users)]
    users: UserCounts,
    /// Warm-up seconds of each light-load step and of the ceiling step.
    #[arg(long, default_value_t = 2.0)]
    users_warmup: f64,
    /// One open-loop step per preset and peer at this fraction of the first
    /// preset's `concur bench` (e.g. 0.8); needs --bench-seconds > 0.
    #[arg(long)]
    open_fraction_of_ceiling: Option<f64>,
    /// An external server measured with the light-load and ceiling steps:
    /// NAME=COMMAND, run with `sh -c`, `{port}` replaced by a free port,
    /// ready when GET /health answers 200. Repeatable.
    #[arg(long = "peer")]
    peers: Vec<PeerSpec>,
    /// Seconds a peer may take to answer GET /health.
    #[arg(long, default_value_t = 120.0)]
    peer_ready_seconds: f64,
    /// Latency target: client p99 in ms.
    #[arg(long, default_value_t = 100.0)]
    slo_p99_ms: f64,
    /// Largest fraction of late or unsent sends a passing step may have.
    #[arg(long, default_value_t = 0.01)]
    max_late_fraction: f64,
    /// Fractions of the found rate to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [0.25, 0.5, 0.75, 0.9])]
    fractions: Vec<f64>,
    /// Users of the closed-loop probe.
    #[arg(long, default_value_t = 8)]
    probe_users: usize,
    /// Users of the closed-loop saturation step after the fractions (zero
    /// think time, no latency target); 0 skips it.
    #[arg(long, default_value_t = 256)]
    saturation_users: usize,
    /// Seconds of `concur bench` per preset (0 skips the engine ceiling).
    #[arg(long, default_value_t = 10)]
    bench_seconds: u64,
    /// Idle single-request run: at most this many requests.
    #[arg(long, default_value_t = 1000)]
    idle_requests: u64,
    /// Idle single-request run: at most this many seconds.
    #[arg(long, default_value_t = 60.0)]
    idle_seconds: f64,
    #[command(flatten)]
    common: Common,
}

/// The parsed `--users` list (a newtype, so clap takes it as one value).
#[derive(Clone, Debug)]
struct UserCounts(Vec<usize>);

fn parse_users(s: &str) -> Result<UserCounts> {
    let counts = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("user count {p:?}: expected a positive integer"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(UserCounts(counts))
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

fn default_concur() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("concur"))
}

async fn sweep_cmd(a: SweepArgs) -> Result<()> {
    let c = &a.common;
    let concur = match a.concur.clone() {
        Some(p) => p,
        None => default_concur()?,
    };
    if !concur.exists() {
        bail!(
            "{} not found; build it (cargo build --release) or pass --concur",
            concur.display()
        );
    }
    let mut o = SweepOptions::new(concur, a.configs.clone(), a.out.clone(), c.corpus.clone());
    o.mix = c.mix()?;
    o.arrival = c.arrival;
    o.step = secs(a.step_seconds)?;
    o.warmup = secs(a.warmup)?;
    o.max_steps = a.max_steps;
    o.slo_p99 = secs(a.slo_p99_ms / 1000.0)?;
    o.max_late_fraction = a.max_late_fraction;
    o.late_threshold = secs(c.late_ms / 1000.0)?;
    o.request_timeout = secs(c.timeout)?;
    o.max_inflight = c.max_inflight;
    o.fractions = a.fractions.clone();
    o.probe_users = a.probe_users;
    o.saturation_users = a.saturation_users;
    o.bench_seconds = a.bench_seconds;
    o.users = a.users.0.clone();
    o.users_warmup = secs(a.users_warmup)?;
    o.open_fraction_of_ceiling = a.open_fraction_of_ceiling;
    o.peers = a.peers.clone();
    o.peer_ready_timeout = secs(a.peer_ready_seconds)?;
    o.invocation = std::env::args().collect();
    o.idle_max_requests = a.idle_requests;
    o.idle_max = secs(a.idle_seconds)?;
    o.seed = c.seed;
    o.progress = !c.no_progress;
    // Peers run in process groups of their own, so a Ctrl-C at the terminal
    // does not reach them: on SIGINT or SIGTERM the sweep is dropped
    // instead, and dropping a running peer or server kills it.
    let report = tokio::select! {
        report = loadtest::sweep::run(&o) => report?,
        signal = interrupted() => bail!("{signal}: sweep stopped, its servers and peers killed"),
    };
    for p in &report.presets {
        let saturated = p.saturated_throughput.map_or_else(String::new, |t| {
            format!("; saturated {t:.1} req/s with {} users", o.saturation_users)
        });
        match (&p.error, p.max_rate) {
            (Some(e), _) => eprintln!("{}: error: {e}", p.name),
            (None, Some(r)) => println!("{}: max {r:.1} req/s{saturated}", p.name),
            (None, None) if o.max_steps == 0 => println!("{}: search skipped{saturated}", p.name),
            (None, None) => println!("{}: no rate met the target{saturated}", p.name),
        }
    }
    for p in &report.peers {
        match (&p.error, &p.stopped_by) {
            (Some(e), _) => eprintln!("{} (peer): error: {e}", p.name),
            (None, stop) => println!(
                "{} (peer): {} steps, stopped by {}",
                p.name,
                p.steps.len(),
                stop.as_deref().unwrap_or("–")
            ),
        }
    }
    if let Some(table) = loadtest::sweep::report::light_load_section(&report) {
        println!("\n{table}");
    }
    println!("report: {}", a.out.join("report.md").display());
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
            Command::Sweep(a) => sweep_cmd(a).await,
        }
    })
}
