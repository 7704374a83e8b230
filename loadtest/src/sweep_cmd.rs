//! `loadtest sweep`, the binary's side: the command-line options and the
//! call into the library's sweep. Part of the binary (`main.rs`), not of
//! the library.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use loadtest::peer::PeerSpec;
use loadtest::sweep::SweepOptions;

use crate::secs;

#[derive(Args)]
pub struct SweepArgs {
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
    /// Warm-up seconds of each light-load step and of each ceiling step.
    #[arg(long, default_value_t = 2.0)]
    users_warmup: f64,
    /// Open-loop steps (--arrival, Poisson by default) for every preset and
    /// peer, one at each of these fractions of the first preset's `concur
    /// bench`; "" skips them. Needs --bench-seconds > 0. The older
    /// --open-fraction-of-ceiling X still works (one step at X).
    #[arg(
        long,
        alias = "open-fraction-of-ceiling",
        default_value = "0.5,0.65,0.8",
        value_parser = parse_fractions
    )]
    open_fractions_of_ceiling: Fractions,
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
    common: crate::Common,
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

/// The parsed `--open-fractions-of-ceiling` list (a newtype, so clap takes
/// it as one value).
#[derive(Clone, Debug)]
struct Fractions(Vec<f64>);

fn parse_fractions(s: &str) -> Result<Fractions> {
    let fractions = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(f),
            _ => bail!("fraction {p:?}: expected a positive number"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Fractions(fractions))
}

fn default_concur() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("concur"))
}

/// Runs the sweep the arguments describe and prints its outcome.
pub async fn run(a: SweepArgs) -> Result<()> {
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
    o.open_fractions_of_ceiling = a.open_fractions_of_ceiling.0.clone();
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
        signal = crate::interrupted() => bail!("{signal}: sweep stopped, its servers and peers killed"),
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
    if let Some(table) = loadtest::sweep::report::open_loop_section(&report) {
        println!("\n{table}");
    }
    println!("report: {}", a.out.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    fn open_fractions(args: &[&str]) -> Vec<f64> {
        let argv = ["loadtest", "sweep", "c.toml", "--out", "o"];
        let cli = Cli::try_parse_from(argv.iter().chain(args)).expect("parses");
        match cli.command {
            Command::Sweep(a) => a.open_fractions_of_ceiling.0,
            _ => unreachable!("a sweep"),
        }
    }

    #[test]
    fn open_fractions_default_to_the_targets_and_the_old_flag_still_works() {
        assert_eq!(open_fractions(&[]), [0.5, 0.65, 0.8]);
        let list = ["--open-fractions-of-ceiling", "0.3, 0.9"];
        assert_eq!(open_fractions(&list), [0.3, 0.9]);
        assert_eq!(
            open_fractions(&["--open-fraction-of-ceiling", "0.8"]),
            [0.8]
        );
        assert!(open_fractions(&["--open-fractions-of-ceiling", ""]).is_empty());
        let bad = ["loadtest", "sweep", "c.toml", "--out", "o"]
            .into_iter()
            .chain(["--open-fractions-of-ceiling", "0.5,-1"]);
        assert!(Cli::try_parse_from(bad).is_err());
    }
}
