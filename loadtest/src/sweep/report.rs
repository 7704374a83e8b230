//! The sweep report: `report.md` with the comparison table, SVG charts,
//! and `results.json` with every figure for machines. It only renders the
//! sweep's results; the sweep calls it, never the other way round.

mod ipc;
mod light;
mod open;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::svg::{self, Chart, Series};
use crate::sweep::results::{PeerResult, PresetResult, Step, SweepReport};

pub use light::section as light_load_section;
pub use open::section as open_loop_section;

/// Writes every report file into `dir` and returns their paths.
pub fn write(report: &SweepReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let files = [
        ("results.json", serde_json::to_string_pretty(report)?),
        (
            "latency_vs_throughput.svg",
            svg::render(&latency_chart(report)),
        ),
        ("event_loop_lag.svg", svg::render(&lag_chart(report))),
        ("report.md", markdown(report)),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// The strategy named by `GET /info`, or the preset name if it says none.
pub fn strategy_of(p: &PresetResult) -> String {
    let info = p.info.as_ref();
    info.and_then(|i| {
        i.get("strategy")
            .or_else(|| i.get("executor")?.get("strategy"))
    })
    .and_then(|s| s.as_str())
    .map_or_else(|| p.name.clone(), str::to_string)
}

/// The steps that trace the latency curve: each fraction plus the highest
/// passing search step (fraction 1), in throughput order.
fn curve(p: &PresetResult) -> Vec<&Step> {
    let mut steps: Vec<&Step> = p.steps_of("fraction").collect();
    if let Some(top) = p
        .steps_of("search")
        .filter(|s| s.pass && s.client.target_rate == p.max_rate)
        .last()
    {
        steps.push(top);
    }
    steps.sort_by(|a, b| {
        a.client
            .totals
            .throughput_rps
            .total_cmp(&b.client.totals.throughput_rps)
    });
    steps
}

fn latency_chart(r: &SweepReport) -> Chart {
    let mut series = Vec::new();
    for (i, p) in r.presets.iter().enumerate() {
        let pts = |f: fn(&Step) -> f64| {
            curve(p)
                .iter()
                .map(|s| (s.client.totals.throughput_rps, f(s)))
                .collect()
        };
        series.push(Series {
            label: format!("{} p99", p.name),
            points: pts(|s| s.client.totals.latency.p99_ms),
            color: i,
            dashed: false,
        });
        series.push(Series {
            label: format!("{} p50", p.name),
            points: pts(|s| s.client.totals.latency.p50_ms),
            color: i,
            dashed: true,
        });
    }
    Chart {
        title: "Client latency vs throughput (open loop)".into(),
        x_label: "achieved throughput (requests/s)".into(),
        y_label: "latency (ms)".into(),
        series,
        hline: Some((
            r.options.slo_p99.as_secs_f64() * 1000.0,
            "p99 target".into(),
        )),
    }
}

fn lag_chart(r: &SweepReport) -> Chart {
    let series = r
        .presets
        .iter()
        .enumerate()
        .map(|(i, p)| Series {
            label: p.name.clone(),
            points: curve(p)
                .iter()
                .filter_map(|s| {
                    Some((
                        s.client.totals.throughput_rps,
                        s.server.as_ref()?.event_loop_lag_p99_ms?,
                    ))
                })
                .collect(),
            color: i,
            dashed: false,
        })
        .collect();
    Chart {
        title: "Event-loop lag p99 vs throughput".into(),
        x_label: "achieved throughput (requests/s)".into(),
        y_label: "event-loop lag p99 (ms, from buckets)".into(),
        series,
        hline: None,
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite())
        .map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn pct(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or_else(|| "–".into(), |v| format!("{:.0}%", v * 100.0))
}

fn fraction_step(p: &PresetResult, f: f64) -> Option<&Step> {
    p.steps_of("fraction")
        .find(|s| s.fraction.is_some_and(|x| (x - f).abs() < 1e-9))
}

fn summary_table(o: &mut String, r: &SweepReport) {
    let _ = writeln!(o, "| preset | strategy | max rate under SLO (req/s) | throughput at max rate (req/s) | max-rate throughput % of own bench | max-rate throughput % of engine ceiling | saturated (req/s) | saturated % of own bench | saturated % of engine ceiling | p50 / p99 at 0.5 (ms) | idle p99 (ms) | lag p99 at highest fraction (ms) | notes |");
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for p in &r.presets {
        let own = p.bench.as_ref().map(|b| b.sequences_per_second);
        let of = |x: Option<f64>, ceil: Option<f64>| pct(x.zip(ceil).map(|(t, c)| t / c));
        let half = fraction_step(p, 0.5).map(|s| &s.client.totals.latency);
        let idle = p
            .steps_of("idle")
            .next()
            .map(|s| s.client.totals.latency.p99_ms);
        let lag = p
            .steps_of("fraction")
            .last()
            .and_then(|s| s.server.as_ref()?.event_loop_lag_p99_ms);
        let mut notes = Vec::new();
        if r.best_preset.as_deref() == Some(p.name.as_str()) {
            notes.push("best");
        }
        if p.steps_of("saturation").any(|s| !s.pass) {
            notes.push("saturation step had errors");
        }
        if p.error.is_some() {
            notes.push("failed: see its section");
        }
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            p.name,
            strategy_of(p),
            opt(p.max_rate, 1),
            opt(p.max_throughput, 1),
            of(p.max_throughput, own),
            of(p.max_throughput, r.engine_ceiling_sps),
            opt(p.saturated_throughput, 1),
            of(p.saturated_throughput, own),
            of(p.saturated_throughput, r.engine_ceiling_sps),
            opt(half.map(|l| l.p50_ms), 1),
            opt(half.map(|l| l.p99_ms), 1),
            opt(idle, 1),
            opt(lag, 2),
            notes.join("; "),
        );
    }
    let slo = r.options.slo_p99.as_secs_f64() * 1000.0;
    let users = r.options.saturation_users;
    let saturated = if users > 0 {
        format!("*saturated* is the throughput of a closed loop of {users} users with no think time, whose deep queue lets the batcher form the batches `concur bench` forms, with no latency target (its latency is in the step tables)")
    } else {
        "*saturated* was not measured (saturation step disabled)".to_string()
    };
    let _ = writeln!(
        o,
        "\nTwo throughputs: *max rate* is the highest open-loop rate whose client p99 stays within {slo:.0} ms, what the server sustains at that latency; {saturated}. Both are compared with the preset's own `concur bench` and with the engine ceiling."
    );
}

fn step_table(o: &mut String, steps: &[Step]) {
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(o, "| step | target req/s | achieved req/s | p50 | p90 | p99 | p99.9 | max | late | errors | queue wait mean / p99 | tokenize mean | inference mean / p99 (per batch) | batch size | padding | lag p99 | rejections | verdict |");
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for s in steps {
        let t = &s.client.totals;
        let l = &t.latency;
        let b = s.server.clone().unwrap_or_default();
        let name = match (s.fraction, s.client.users) {
            (None, Some(1)) if s.kind == "users" => "light load (1 user)".into(),
            (None, Some(u)) if s.kind == "users" => format!("light load ({u} users)"),
            (Some(f), _) if s.kind == "ceiling" => format!("ceiling {f}"),
            (Some(f), _) => format!("{} {f}", s.kind),
            // Closed-loop load steps name their users; idle is always one.
            (None, Some(u)) if s.kind != "idle" => format!("{} ({u} users)", s.kind),
            (None, _) => s.kind.clone(),
        };
        let _ = writeln!(
            o,
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:?} | {} / {} | {} | {} / {} | {} | {} | {} | {:?} | {} |",
            opt(s.client.target_rate, 1),
            t.throughput_rps,
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms,
            t.late_sends + t.unsent,
            t.errors,
            opt(b.queue_wait_mean_ms, 2),
            opt(b.queue_wait_p99_ms, 2),
            opt(b.tokenization_mean_ms, 2),
            opt(b.inference_mean_ms, 2),
            opt(b.inference_p99_ms, 2),
            opt(b.batch_size_mean, 2),
            pct(b.padding_ratio_mean),
            opt(b.event_loop_lag_p99_ms, 2),
            b.rejections,
            s.verdict.replace('|', "/"),
        );
    }
}

fn idle_comparison(o: &mut String, r: &SweepReport) {
    let _ = writeln!(o, "## Idle single request vs half load\n");
    let _ = writeln!(o, "The corpus sent one request at a time to an idle server, against the open-loop p99 at half the preset's maximum rate. The gap is what sharing the machine with other requests costs a user.\n");
    let _ = writeln!(o, "| preset | idle requests | idle p50 (ms) | idle p99 (ms) | p99 at 0.5 × max (ms) | ratio |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    for p in &r.presets {
        let Some(idle) = p.steps_of("idle").next() else {
            continue;
        };
        let l = &idle.client.totals.latency;
        let half = fraction_step(p, 0.5).map(|s| s.client.totals.latency.p99_ms);
        let mark = if r.best_preset.as_deref() == Some(p.name.as_str()) {
            " (best)"
        } else {
            ""
        };
        let ratio = half.filter(|_| l.p99_ms > 0.0).map(|h| h / l.p99_ms);
        let _ = writeln!(
            o,
            "| {}{mark} | {} | {:.1} | {:.1} | {} | {} |",
            p.name,
            l.count,
            l.p50_ms,
            l.p99_ms,
            opt(half, 1),
            opt(ratio, 2)
        );
    }
    o.push('\n');
}

fn environment(o: &mut String, r: &SweepReport) {
    let m = &r.machine;
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(o, "- CPU: {}", m.cpu_model.as_deref().unwrap_or("unknown"));
    let _ = writeln!(
        o,
        "- logical CPUs: {}; affinity: {}; available parallelism: {}",
        m.logical_cpus,
        opt(m.affinity_cpus.map(|n| n as f64), 0),
        opt(m.available_parallelism.map(|n| n as f64), 0)
    );
    let _ = writeln!(
        o,
        "- cgroup cpu.max: {} ({} CPUs)",
        m.cgroup_cpu_max.as_deref().unwrap_or("absent"),
        opt(m.cgroup_cpus, 2)
    );
    let _ = writeln!(o, "- kernel: {}", m.kernel.as_deref().unwrap_or("unknown"));
    let _ = writeln!(
        o,
        "- the load generator runs on the same machine and competes with the server for CPU\n"
    );
    let v = &r.versions;
    let _ = writeln!(o, "## Versions\n");
    let _ = writeln!(o, "- concur: {}", v.concur.as_deref().unwrap_or("unknown"));
    let _ = writeln!(
        o,
        "- rustc: {}",
        v.rustc.as_deref().unwrap_or("not on PATH")
    );
    let _ = writeln!(o, "- loadtest: {}\n", v.loadtest);
    let _ = writeln!(o, "## Settings\n");
    let _ = writeln!(
        o,
        "Sweep options:\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(&r.options).unwrap_or_default()
    );
    for p in &r.presets {
        let _ = writeln!(o, "`{}` (`GET /info`):\n", p.config.display());
        let _ = writeln!(
            o,
            "```json\n{}\n```\n",
            p.info.as_ref().map_or_else(
                || "unavailable".into(),
                |i| serde_json::to_string_pretty(i).unwrap_or_default()
            )
        );
        if let Some(b) = &p.bench {
            let _ = writeln!(o, "`concur bench`: {:.1} sequences/s over {} sequences in {} batches, batch p50 {:.1} ms, p99 {:.1} ms, padding {:.0}%\n", b.sequences_per_second, b.sequences, b.batches, b.batch_latency_seconds.p50 * 1e3, b.batch_latency_seconds.p99 * 1e3, b.padding_ratio * 100.0);
        }
        if let Some(e) = &p.bench_error {
            let _ = writeln!(o, "`concur bench` failed: {e}\n");
        }
    }
}

/// The markdown report.
pub fn markdown(r: &SweepReport) -> String {
    let mut o = String::new();
    let slo = r.options.slo_p99.as_secs_f64() * 1000.0;
    let _ = writeln!(o, "# concur: dispatch strategy comparison\n");
    let _ = writeln!(o, "Max rate: the highest open-loop ({:?} arrivals) rate with client p99 ≤ {slo:.0} ms, no errors and ≤ {:.1}% late sends, over {:.0} s steps. Latency is measured from each request's scheduled send time, so queueing inside the client is not hidden. Engine ceiling: `concur bench`, the engine alone{}.\n",
        r.options.arrival, r.options.max_late_fraction * 100.0, r.options.step.as_secs_f64(),
        r.engine_ceiling_sps.map_or_else(|| ", not measured".into(), |c| format!(", at best {c:.1} sequences/s")));
    let argv = &r.options.invocation;
    if !argv.is_empty() {
        let words = argv.iter().map(String::as_str);
        // A word with a NUL byte cannot be quoted; the plain join still reads.
        let command = shlex::try_join(words).unwrap_or_else(|_| argv.join(" "));
        let _ = writeln!(o, "Command: `{command}`\n");
    }
    summary_table(&mut o, r);
    if let Some(section) = light::section(r) {
        let _ = writeln!(o, "\n{section}");
    }
    if let Some(section) = open::section(r) {
        let _ = writeln!(o, "\n{section}");
    }
    if let Some(section) = ipc::section(r) {
        let _ = writeln!(o, "\n{section}");
    }
    let _ = writeln!(o, "\n![latency vs throughput](latency_vs_throughput.svg)\n");
    let _ = writeln!(o, "![event-loop lag](event_loop_lag.svg)\n");
    idle_comparison(&mut o, r);
    for p in &r.presets {
        let _ = writeln!(o, "## {} ({})\n", p.name, strategy_of(p));
        if let Some(e) = &p.error {
            let _ = writeln!(o, "Stopped early:\n\n```\n{e}\n```\n");
        }
        step_table(&mut o, &p.steps);
        let _ = writeln!(o, "\nLatencies in ms (client, from scheduled send). Server columns are deltas of `/metrics` over the step; p99s there are estimated from histogram buckets. Server log: `{}`.\n", p.log.display());
    }
    for p in &r.peers {
        peer_section(&mut o, p);
    }
    environment(&mut o, r);
    o
}

fn peer_section(o: &mut String, p: &PeerResult) {
    let _ = writeln!(o, "## {} (peer)\n", p.name);
    let _ = writeln!(o, "Started with `sh -c` (`{{port}}` is a free port), in its own process group, stopped by {}:\n\n```sh\n{}\n```\n", p.stopped_by.as_deref().unwrap_or("–"), p.command);
    if let Some(h) = &p.health {
        let _ = writeln!(o, "`GET /health`: `{h}`\n");
    }
    if let Some(e) = &p.error {
        let _ = writeln!(o, "Stopped early:\n\n```\n{e}\n```\n");
    }
    step_table(o, &p.steps);
    let _ = writeln!(o, "\nLatencies in ms (client, from scheduled send). A peer has no `/metrics`, so the server columns are empty. Log: `{}`.\n", p.log.display());
}

#[cfg(test)]
mod tests;
