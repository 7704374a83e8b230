//! The generation sweep's `README.md`: one Markdown table per part of the
//! sweep, with every figure taken from the runs' JSON files, and the charts
//! embedded.

use std::fmt::Write;

use super::charts::CHARTS;
use super::runs::{open_stem, Loaded};
use super::{stream_counts, Runs, CAPACITY_RUN, CONTINUOUS, LLAMA, SERVERS};
use crate::stats::LatencySummary;
use crate::stream::StreamSummary;

/// The columns of every closed-loop table.
const HEAD: &str = "| server | output tokens/s | streams/s | TTFT p50 ms | TTFT p99 ms \
                    | ITL p50 ms | ITL p99 ms | done / errors / 429 |\n\
                    |---|---:|---:|---:|---:|---:|---:|---|";
/// Cells of [`figures`].
const FIGURES: usize = 7;

/// `58,360` for 58360.4: whole numbers grouped by thousands.
fn grouped(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A latency in ms: whole from 100 up, one decimal below; `-` when no
/// stream finished (its percentiles are zeros, not measurements).
fn ms(l: &LatencySummary, q: fn(&LatencySummary) -> f64) -> String {
    match q(l) {
        _ if l.count == 0 => "-".into(),
        v if v >= 100.0 => grouped(v),
        v => format!("{v:.1}"),
    }
}

/// The figure cells of a run, in [`HEAD`]'s order after the server.
fn figures(s: &StreamSummary) -> Vec<String> {
    let t = &s.totals;
    vec![
        format!("{:.1}", t.output_tokens_per_s),
        format!("{:.2}", t.requests_per_s),
        ms(&t.ttft, |l| l.p50_ms),
        ms(&t.ttft, |l| l.p99_ms),
        ms(&t.itl, |l| l.p50_ms),
        ms(&t.itl, |l| l.p99_ms),
        format!("{} / {} / {}", t.successes, t.error_count(), t.rejected_429),
    ]
}

/// A table row: the `lead` cells, then `cells` of the run, or one cell
/// saying it was not run (or could not be read) and `n_cells - 1` empty.
fn row(
    lead: &[&str],
    run: Option<&Loaded>,
    cells: impl Fn(&StreamSummary) -> Vec<String>,
    n_cells: usize,
) -> String {
    let lead = lead.join(" | ");
    let note = match run {
        Some(Ok(s)) => return format!("| {lead} | {} |", cells(s).join(" | ")),
        None => "(not run)".to_string(),
        Some(Err(e)) => format!("(unreadable: {})", e.replace('|', "\\|")),
    };
    format!("| {lead} | {note} {}", "|".repeat(n_cells))
}

/// A closed-loop table over every server for runs named `{prefix}-{part}`.
fn servers_table(o: &mut String, runs: &Runs, title: &str, part: &str) {
    let _ = writeln!(o, "## {title}\n\n{HEAD}");
    for s in SERVERS {
        let stem = format!("{}-{part}", s.prefix);
        let _ = writeln!(o, "{}", row(&[s.label], runs.get(&stem), figures, FIGURES));
    }
    o.push('\n');
}

fn streams(n: usize) -> String {
    format!("{n} stream{}", if n == 1 { "" } else { "s" })
}

/// Output tokens/s per server and stream count, the charts, and which
/// points they lack.
fn across_concurrency(o: &mut String, runs: &Runs) {
    let counts = stream_counts(runs);
    let _ = writeln!(
        o,
        "## Across concurrency (closed loop, max_tokens 128)\n\nOutput tokens/s:\n"
    );
    let names: Vec<String> = counts.iter().map(|n| streams(*n)).collect();
    let _ = writeln!(o, "| server | {} |", names.join(" | "));
    let _ = writeln!(o, "|---|{}", "---:|".repeat(counts.len()));
    for s in SERVERS {
        let cells: Vec<String> = counts
            .iter()
            .map(|n| match runs.get(&format!("{}-{n}", s.prefix)) {
                Some(Ok(r)) => format!("{:.1}", r.totals.output_tokens_per_s),
                Some(Err(_)) => "unreadable".into(),
                None => "not run".into(),
            })
            .collect();
        let _ = writeln!(o, "| {} | {} |", s.label, cells.join(" | "));
    }
    o.push('\n');
    for c in &CHARTS {
        let _ = writeln!(o, "![{}]({})\n", c.alt, c.file);
    }
    let gaps: Vec<String> = counts
        .iter()
        .filter_map(|n| {
            let missing: Vec<&str> = SERVERS
                .iter()
                .filter(|s| runs.ok(&format!("{}-{n}", s.prefix)).is_none())
                .map(|s| s.label)
                .collect();
            match missing.len() {
                0 => None,
                m if m == SERVERS.len() => Some(format!("{} (every server)", streams(*n))),
                _ => Some(format!("{} ({})", streams(*n), missing.join(", "))),
            }
        })
        .collect();
    if !gaps.is_empty() {
        let _ = writeln!(
            o,
            "No point drawn (not run, or unreadable): {}.\n",
            gaps.join("; ")
        );
    }
}

/// The open loops, each fraction for concur continuous and llama-server.
fn open_loops(o: &mut String, runs: &Runs) {
    let _ = writeln!(
        o,
        "## Open loop (Poisson) at fractions of the continuous scheduler's capacity\n"
    );
    let capacity = runs.ok(CAPACITY_RUN).map(|r| r.totals.requests_per_s);
    let capacity = capacity.map_or_else(|| "not run".into(), |c| format!("{c:.2} streams/s"));
    let _ = writeln!(
        o,
        "Capacity: concur continuous' streams/s at 16 streams (closed loop), {capacity}. \
         Both servers get the same rate (`OPEN_FRACTIONS` of it in the sweep script); \
         llama-server runs with -np 16.\n"
    );
    let pcts = runs.open_percents(&[CONTINUOUS.prefix, LLAMA.prefix]);
    if pcts.is_empty() {
        let _ = writeln!(o, "Not run.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| share of capacity | server | target streams/s | output tokens/s | streams/s \
         | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | done / errors / 429 | late sends |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    );
    let cells = |r: &StreamSummary| {
        let target = r
            .target_rate
            .map_or_else(|| "-".into(), |t| format!("{t:.3}"));
        let mut c = vec![target];
        c.extend(figures(r));
        c.push(r.totals.late_sends.to_string());
        c
    };
    for pct in pcts {
        let share = format!("{pct}%");
        for (s, label) in [
            (CONTINUOUS, CONTINUOUS.label),
            (LLAMA, "llama-server -np 16"),
        ] {
            let run = runs.get(&open_stem(s.prefix, pct));
            let _ = writeln!(o, "{}", row(&[&share, label], run, cells, FIGURES + 2));
        }
    }
    o.push('\n');
}

/// Each scheduler's resident memory after its runs, with its KV cache's
/// size from `/info` when the sweep saved it.
fn memory(o: &mut String, runs: &Runs) {
    let _ = writeln!(o, "## Resident memory after the runs\n");
    if runs.rss_kib.is_empty() {
        let _ = writeln!(o, "Not recorded.");
    }
    for sched in ["continuous", "static", "sequential"] {
        let Some(kib) = runs.rss_kib.get(sched) else {
            continue;
        };
        let g = runs.info.get(sched).and_then(|i| i.get("generative"));
        let num = |k: &str| g.and_then(|g| g.get(k)).and_then(|v| v.as_f64());
        let setting = match (num("slots"), num("max_context"), num("threads")) {
            (Some(s), Some(c), Some(t)) => {
                format!(
                    " ({} slots of {} tokens, steps on {t} threads)",
                    s,
                    grouped(c)
                )
            }
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "- concur {sched}: {:.0} MiB{setting}",
            *kib as f64 / 1024.0
        );
    }
}

/// The whole README of the sweep folder shown as `dir`.
pub fn markdown(dir: &str, runs: &Runs) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Generation sweep: `{dir}`\n\n\
         Made by `scripts/generation-sweep.sh` (commands and settings at its top); each JSON here \
         is one `loadtest stream` run, each `.txt` its printed summary; this file and the charts \
         by `loadtest gen-report` from the JSON files. Greedy, max_tokens 128 unless said.\n"
    );
    across_concurrency(&mut o, runs);
    for n in stream_counts(runs) {
        let noun = if n == 1 { "stream" } else { "streams" };
        let title = format!("{n} concurrent {noun} (closed loop)");
        servers_table(&mut o, runs, &title, &n.to_string());
    }
    servers_table(
        &mut o,
        runs,
        "16 streams, max_tokens drawn from 16-256",
        "16-mixed",
    );
    let ttft = "Time to first token of a ~200-token prompt (one stream, max_tokens 8)";
    servers_table(&mut o, runs, ttft, "ttft200");
    open_loops(&mut o, runs);
    memory(&mut o, runs);
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run with the given tokens/s and p99s; p50s are half the p99s.
    pub(crate) fn run(tokens_per_s: f64, ttft_p99: f64, itl_p99: f64) -> StreamSummary {
        let lat = |p99: f64| LatencySummary {
            count: 10,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            ..LatencySummary::default()
        };
        let mut s = StreamSummary::default();
        s.totals.output_tokens_per_s = tokens_per_s;
        s.totals.requests_per_s = tokens_per_s / 100.0;
        s.totals.successes = 10;
        s.totals.ttft = lat(ttft_p99);
        s.totals.itl = lat(itl_p99);
        s
    }

    pub(crate) fn runs(list: Vec<(&str, StreamSummary)>) -> Runs {
        let mut r = Runs::default();
        for (stem, s) in list {
            r.runs.insert(stem.into(), Ok(s));
        }
        r
    }

    #[test]
    fn numbers_read_as_the_tables_print_them() {
        assert_eq!(grouped(58360.4), "58,360");
        assert_eq!(grouped(999.6), "1,000");
        assert_eq!(grouped(100.0), "100");
        assert_eq!(grouped(1234567.0), "1,234,567");
        let l = run(0.0, 1248.255, 9.87).totals;
        assert_eq!(ms(&l.ttft, |l| l.p99_ms), "1,248");
        assert_eq!(ms(&l.itl, |l| l.p99_ms), "9.9");
        assert_eq!(ms(&LatencySummary::default(), |l| l.p50_ms), "-");
    }

    #[test]
    fn rows_show_figures_or_why_there_are_none() {
        let mut r = run(270.0, 1248.3, 161.4);
        r.totals.errors.insert("timeout".into(), 2);
        r.totals.rejected_429 = 3;
        let ok = row(&["concur continuous"], Some(&Ok(r)), figures, FIGURES);
        assert_eq!(
            ok,
            "| concur continuous | 270.0 | 2.70 | 624 | 1,248 | 80.7 | 161 | 10 / 2 / 3 |"
        );
        let missing = row(&["llama-server"], None, figures, FIGURES);
        assert_eq!(missing, "| llama-server | (not run) |||||||");
        let bad = row(&["x"], Some(&Err("a | b".into())), figures, FIGURES);
        assert_eq!(bad, "| x | (unreadable: a \\| b) |||||||");
        // Every row has as many cells as the header.
        let cols = |s: &str| s.matches('|').count();
        assert_eq!(cols(&ok), cols(HEAD.lines().next().unwrap()));
        assert_eq!(cols(&missing), cols(&ok));
    }
}
