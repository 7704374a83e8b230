//! `loadtest sweep`: for each config preset, start the server, find the
//! highest open-loop rate it sustains within the p99 target, measure at
//! fixed fractions of that rate with the server's own breakdown, measure
//! closed-loop saturation throughput with many users, measure idle
//! single-request latency, stop it; then write the report.

mod options;
mod results;

pub use options::SweepOptions;
pub use results::{saturation_verdict, verdict, PresetResult, Step, SweepReport, Versions};

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::breakdown::breakdown;
use crate::client::Client;
use crate::machine::Machine;
use crate::prom::Scrape;
use crate::run::{self, Load, RunOptions};
use crate::search::RateSearch;
use crate::server::{self, Server};
use crate::{corpus, report};

/// Runs the whole sweep and writes the report into `opts.out_dir`.
///
/// A preset that fails (server does not start, bench fails) is recorded
/// with its error and the sweep goes on; the call fails only if no preset
/// produced a result, or on I/O errors. Bounded: every step, the bench
/// and server start/stop have time limits.
pub async fn run(opts: &SweepOptions) -> Result<SweepReport> {
    if opts.configs.is_empty() {
        bail!("no config presets given");
    }
    if opts.fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
        bail!("fractions must lie in (0, 1]");
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let texts = Arc::new(corpus::load(&opts.corpus)?);
    let mut presets = Vec::new();
    for config in &opts.configs {
        let mut result = PresetResult {
            name: preset_name(config),
            config: config.clone(),
            ..PresetResult::default()
        };
        result.log = opts.out_dir.join(format!("server-{}.log", result.name));
        if let Err(e) = run_preset(opts, &texts, &mut result).await {
            result.error = Some(format!("{e:#}"));
        }
        presets.push(result);
    }
    let mut report = SweepReport {
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
        files: Vec::new(),
    };
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

/// The preset's name: the config file name without extension.
pub fn preset_name(config: &Path) -> String {
    config.file_stem().map_or_else(
        || config.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Measures one preset into `result`, stopping its server on every path.
async fn run_preset(
    opts: &SweepOptions,
    texts: &Arc<Vec<String>>,
    result: &mut PresetResult,
) -> Result<()> {
    // The bench runs before the server starts so the two never share cores.
    if opts.bench_seconds > 0 {
        match server::bench(
            &opts.concur_bin,
            &result.config,
            &opts.corpus,
            opts.bench_seconds,
        )
        .await
        {
            // A bench too short to finish one batch measured nothing.
            Ok(b) if b.sequences == 0 => {
                result.bench_error = Some("bench measured no sequences; raise bench_seconds".into())
            }
            Ok(b) => result.bench = Some(b),
            Err(e) => result.bench_error = Some(format!("{e:#}")),
        }
    }
    let server = Server::start(
        &opts.concur_bin,
        &result.config,
        &result.log,
        opts.ready_timeout,
    )
    .await?;
    let measured = measure(opts, texts, &server.base_url, result).await;
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

/// The load steps of one preset against its running server.
async fn measure(
    opts: &SweepOptions,
    texts: &Arc<Vec<String>>,
    base: &str,
    result: &mut PresetResult,
) -> Result<()> {
    let ctx = Ctx {
        opts,
        texts: texts.clone(),
        base: base.to_string(),
        client: Client::new(base)?,
    };
    let timeout = Duration::from_secs(5);
    result.info = serde_json::from_str(&ctx.client.get_ok("/info", timeout).await?).ok();

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

/// What every step of one preset shares.
struct Ctx<'a> {
    opts: &'a SweepOptions,
    texts: Arc<Vec<String>>,
    base: String,
    client: Client,
}

impl Ctx<'_> {
    fn open(&self, rate: f64) -> Load {
        Load::Open {
            rate,
            arrival: self.opts.arrival,
        }
    }

    async fn scrape(&self) -> Option<Scrape> {
        let text = self
            .client
            .get_ok("/metrics", Duration::from_secs(5))
            .await
            .ok()?;
        Scrape::parse(&text).ok()
    }

    async fn step(
        &self,
        kind: &str,
        fraction: Option<f64>,
        load: Load,
        warmup: Duration,
        max_requests: Option<u64>,
    ) -> Result<Step> {
        let o = self.opts;
        let mut run_opts = RunOptions::new(self.base.clone(), self.texts.clone(), load);
        run_opts.mix = o.mix.clone();
        run_opts.warmup = warmup;
        run_opts.duration = if kind == "idle" { o.idle_max } else { o.step };
        run_opts.request_timeout = o.request_timeout;
        run_opts.max_requests = max_requests;
        run_opts.max_inflight = o.max_inflight;
        run_opts.late_threshold = o.late_threshold;
        run_opts.seed = o.seed;
        run_opts.progress = o.progress;
        // Let the previous step's stragglers leave the server's queue.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = self.scrape().await;
        let client = run::run(&run_opts).await?;
        let after = self.scrape().await;
        let (checked, ok) = if kind == "saturation" {
            (saturation_verdict(&client.totals), "ok (no latency target)")
        } else {
            (
                verdict(&client.totals, o.slo_p99, o.max_late_fraction),
                "ok",
            )
        };
        Ok(Step {
            kind: kind.to_string(),
            fraction,
            pass: checked.is_ok(),
            verdict: checked.err().unwrap_or_else(|| ok.into()),
            client,
            server: before.zip(after).map(|(b, a)| breakdown(&b, &a)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_names_are_file_stems() {
        assert_eq!(
            preset_name(Path::new("config/spawn_blocking.toml")),
            "spawn_blocking"
        );
    }
}
