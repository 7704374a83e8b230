//! `loadtest sweep`: for each config preset, start the server, find the
//! highest open-loop rate it sustains within the p99 target, measure at
//! fixed fractions of that rate with the server's own breakdown, measure
//! the light-load view (closed loops at a few user counts, open loops at a
//! few fractions of the engine ceiling), closed-loop saturation throughput
//! with many users and idle single-request latency, stop it. Then the same
//! light-load view for each peer (an external server, e.g. the Python one
//! in `../shared/peers/`), and write the report.
//!
//! Inside, too, imports only go down: this file runs the sweep with
//! `steps` (measuring) and `report` (writing), and both of those read the
//! data types of `results` and `options`, which import no sibling above them.

mod options;
pub mod report;
mod results;
mod steps;

pub use options::SweepOptions;
pub use results::{
    closed_loop_verdict, verdict, CeilingRate, PeerResult, PresetResult, Step, SweepReport,
    Versions,
};

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::corpus;
use crate::machine::Machine;
use crate::peer::{Peer, PeerSpec};
use crate::run::Load;
use crate::search::RateSearch;
use crate::server::{self, Server};
use steps::Ctx;

/// Runs the whole sweep and writes the report into `opts.out_dir`.
///
/// A preset or peer that fails (server does not start, bench fails) is
/// recorded with its error and the sweep goes on; the call fails only if
/// no preset produced a result, or on I/O errors. Bounded: every step, the
/// bench and server start/stop have time limits.
pub async fn run(opts: &SweepOptions) -> Result<SweepReport> {
    check(opts)?;
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let texts = Arc::new(corpus::load(&opts.corpus)?);
    let mut presets = Vec::new();
    let mut ceilings = Vec::new();
    for (i, config) in opts.configs.iter().enumerate() {
        let mut result = PresetResult {
            name: preset_name(config),
            config: config.clone(),
            ..PresetResult::default()
        };
        result.log = opts.out_dir.join(format!("server-{}.log", result.name));
        // The bench runs before the server starts so the two never share cores.
        bench_preset(opts, &mut result).await;
        if i == 0 {
            ceilings = ceiling_rates(opts, &result);
        }
        if let Err(e) = run_preset(opts, &texts, &ceilings, &mut result).await {
            result.error = Some(format!("{e:#}"));
        }
        presets.push(result);
    }
    let mut peers = Vec::new();
    for spec in &opts.peers {
        let mut result = PeerResult {
            name: spec.name.clone(),
            command: spec.command.clone(),
            log: opts.out_dir.join(format!("server-{}.log", spec.name)),
            ..PeerResult::default()
        };
        if let Err(e) = run_peer(opts, &texts, &ceilings, spec, &mut result).await {
            result.error = Some(format!("{e:#}"));
        }
        peers.push(result);
    }
    let mut report = assemble(opts, presets, peers, ceilings);
    report.files = report::write(&report, &opts.out_dir)?;
    if report.presets.iter().all(|p| p.error.is_some()) {
        let errors: Vec<String> = report
            .presets
            .iter()
            .map(|p| format!("{}: {}", p.name, p.error.as_deref().unwrap_or("")))
            .collect();
        bail!("every preset failed:\n{}", errors.join("\n"));
    }
    Ok(report)
}

/// Refuses options that would make the sweep meaningless or its files collide.
fn check(opts: &SweepOptions) -> Result<()> {
    if opts.configs.is_empty() {
        bail!("no config presets given");
    }
    let fractions_ok = |f: &f64| *f > 0.0 && *f <= 1.0;
    if !opts.fractions.iter().all(fractions_ok) {
        bail!("fractions must lie in (0, 1]");
    }
    // Above 1 is allowed: an overload step is a fair question to ask.
    if let Some(f) = opts
        .open_fractions_of_ceiling
        .iter()
        .find(|f| !(**f > 0.0 && f.is_finite()))
    {
        bail!("each fraction of the ceiling must be positive, got {f}");
    }
    // Each server's log is server-NAME.log: names must not collide.
    let mut names: Vec<String> = opts.configs.iter().map(|c| preset_name(c)).collect();
    for peer in &opts.peers {
        if names.contains(&peer.name) {
            bail!("peer name {:?} is already a preset or peer name", peer.name);
        }
        names.push(peer.name.clone());
    }
    Ok(())
}

/// The report's figures from the measured presets and peers.
fn assemble(
    opts: &SweepOptions,
    presets: Vec<PresetResult>,
    peers: Vec<PeerResult>,
    ceiling_rates: Vec<CeilingRate>,
) -> SweepReport {
    SweepReport {
        machine: Machine::detect(),
        versions: Versions {
            concur: server::command_line(&opts.concur_bin, &["--version"]),
            rustc: server::command_line(Path::new("rustc"), &["-V"]),
            loadtest: env!("CARGO_PKG_VERSION").to_string(),
        },
        options: opts.clone(),
        engine_ceiling_sps: presets
            .iter()
            .filter_map(|p| p.bench.as_ref().map(|b| b.sequences_per_second))
            .reduce(f64::max),
        best_preset: presets
            .iter()
            .filter(|p| p.max_rate.is_some())
            .max_by(|a, b| {
                a.max_rate
                    .partial_cmp(&b.max_rate)
                    .expect("rates are finite")
            })
            .map(|p| p.name.clone()),
        presets,
        peers,
        ceiling_rates,
        files: Vec::new(),
    }
}

/// The preset's name: the config file name without extension.
pub fn preset_name(config: &Path) -> String {
    config.file_stem().map_or_else(
        || config.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// The rates of the `ceiling` steps, one per open fraction, from the first
/// preset's bench. The same rates for every server, so their latencies
/// compare; the first preset is the one the caller chose to list first (the
/// default config in the documented command), measured before any server
/// ran. Empty when that bench did not run.
fn ceiling_rates(opts: &SweepOptions, first: &PresetResult) -> Vec<CeilingRate> {
    let Some(bench_sps) = first.bench.as_ref().map(|b| b.sequences_per_second) else {
        return Vec::new();
    };
    opts.open_fractions_of_ceiling
        .iter()
        .map(|&fraction| CeilingRate {
            preset: first.name.clone(),
            bench_sps,
            fraction,
            rate: bench_sps * fraction,
        })
        .collect()
}

/// `concur bench` with the preset's config, if asked for.
async fn bench_preset(opts: &SweepOptions, result: &mut PresetResult) {
    if opts.bench_seconds == 0 {
        return;
    }
    let corpus = &opts.corpus;
    match server::bench(&opts.concur_bin, &result.config, corpus, opts.bench_seconds).await {
        // A bench too short to finish one batch measured nothing.
        Ok(b) if b.sequences == 0 => {
            result.bench_error = Some("bench measured no sequences; raise bench_seconds".into())
        }
        Ok(b) => result.bench = Some(b),
        Err(e) => result.bench_error = Some(format!("{e:#}")),
    }
}

/// Serves one preset and measures it into `result`, stopping its server
/// on every path.
async fn run_preset(
    opts: &SweepOptions,
    texts: &Arc<Vec<String>>,
    ceilings: &[CeilingRate],
    result: &mut PresetResult,
) -> Result<()> {
    let server = Server::start(
        &opts.concur_bin,
        &result.config,
        &result.log,
        opts.ready_timeout,
    )
    .await?;
    let measured = measure(opts, texts, &server.base_url, ceilings, result).await;
    let stopped = server.stop(Duration::from_secs(30)).await;
    measured?;
    let status = stopped?;
    // Dying of the SIGTERM itself (no handler installed) is still a stop;
    // any other failure (a panic, a crash while draining) is reported.
    if !status.success() && status.signal() != Some(libc::SIGTERM) {
        bail!(
            "server exited with {status} after SIGTERM; log:\n{}",
            server::log_tail(&result.log, 30)
        );
    }
    Ok(())
}

/// Starts one peer, measures its light-load view into `result` and stops
/// its process group on every path.
async fn run_peer(
    opts: &SweepOptions,
    texts: &Arc<Vec<String>>,
    ceilings: &[CeilingRate],
    spec: &PeerSpec,
    result: &mut PeerResult,
) -> Result<()> {
    let peer = Peer::start(spec, &result.log, opts.peer_ready_timeout).await?;
    let measured = async {
        let ctx = Ctx::new(opts, texts, &peer.base_url, false)?;
        let body = ctx.client.get_ok("/health", Duration::from_secs(5)).await?;
        result.health =
            Some(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)));
        ctx.light_load(ceilings, &mut result.steps).await
    }
    .await;
    let stopped = peer.stop(opts.peer_stop_grace).await;
    measured?;
    result.stopped_by = Some(stopped?);
    Ok(())
}

/// The load steps of one preset against its running server.
async fn measure(
    opts: &SweepOptions,
    texts: &Arc<Vec<String>>,
    base: &str,
    ceilings: &[CeilingRate],
    result: &mut PresetResult,
) -> Result<()> {
    let ctx = Ctx::new(opts, texts, base, true)?;
    let timeout = Duration::from_secs(5);
    result.info = serde_json::from_str(&ctx.client.get_ok("/info", timeout).await?).ok();
    // The probe only seeds the search: with no search steps it is skipped.
    if opts.max_steps > 0 {
        search(&ctx, result).await?;
    }
    ctx.light_load(ceilings, &mut result.steps).await?;
    // Many users, no think time: the queue stays deep, so the batcher can
    // form the batches `concur bench` forms. Informational, no latency target.
    if opts.saturation_users > 0 {
        let many = Load::Closed {
            users: opts.saturation_users,
            think_time: Duration::ZERO,
        };
        let step = ctx
            .step("saturation", None, many, opts.warmup, None)
            .await?;
        result.saturated_throughput = Some(step.client.totals.throughput_rps);
        result.steps.push(step);
    }
    // One request at a time to an idle server: the floor the loaded p99s
    // are compared with.
    let single = Load::Closed {
        users: 1,
        think_time: Duration::ZERO,
    };
    let limit = opts.idle_max_requests.min(texts.len() as u64);
    result.steps.push(
        ctx.step("idle", None, single, Duration::ZERO, Some(limit))
            .await?,
    );
    Ok(())
}

/// The probe, the search for the highest rate within the p99 target, and
/// the steps at fractions of that rate.
async fn search(ctx: &Ctx<'_>, result: &mut PresetResult) -> Result<()> {
    let opts = ctx.opts;
    let closed = Load::Closed {
        users: opts.probe_users.max(1),
        think_time: Duration::ZERO,
    };
    let probe = ctx.step("probe", None, closed, opts.warmup, None).await?;
    let capacity = probe.client.totals.throughput_rps;
    result.steps.push(probe);

    let mut search = RateSearch::new(
        capacity * opts.start_fraction,
        opts.ramp,
        opts.precision,
        opts.max_steps,
    );
    while let Some(rate) = search.next_rate() {
        let step = ctx
            .step("search", None, ctx.open(rate), Duration::ZERO, None)
            .await?;
        search.report(rate, step.pass);
        if search.best() == Some(rate) {
            result.max_throughput = Some(step.client.totals.throughput_rps);
        }
        result.steps.push(step);
    }
    result.max_rate = search.best();

    if let Some(max) = result.max_rate {
        for &f in &opts.fractions {
            result.steps.push(
                ctx.step("fraction", Some(f), ctx.open(max * f), Duration::ZERO, None)
                    .await?,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_not_collide_and_the_ceiling_fractions_are_positive() {
        let mut o = SweepOptions::new(
            "concur".into(),
            vec!["config/workers.toml".into()],
            "out".into(),
            "corpus.jsonl".into(),
        );
        assert!(check(&o).is_ok());
        o.peers = vec!["workers=x {port}".parse().unwrap()];
        assert!(check(&o).unwrap_err().to_string().contains("workers"));
        o.peers = vec![
            "py=a {port}".parse().unwrap(),
            "py=b {port}".parse().unwrap(),
        ];
        assert!(check(&o).is_err());
        o.peers.pop();
        assert!(check(&o).is_ok());
        o.open_fractions_of_ceiling = vec![0.5, 1.2];
        assert!(check(&o).is_ok());
        o.open_fractions_of_ceiling = vec![0.5, 0.0];
        assert!(check(&o).unwrap_err().to_string().contains("got 0"));
        o.open_fractions_of_ceiling = vec![f64::NAN];
        assert!(check(&o).is_err());
    }

    #[test]
    fn preset_names_are_file_stems() {
        assert_eq!(
            preset_name(Path::new("config/spawn_blocking.toml")),
            "spawn_blocking"
        );
    }
}
