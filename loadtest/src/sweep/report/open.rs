//! The open-loop table: each preset and peer under Poisson arrivals at a
//! few fractions of the bench rate, p50 and p99 beside the one-user p50.
//! The latency targets are set at those fractions (p50 within a multiple of
//! one user's, p99 within a bound, no errors), so each can be read off a
//! row.

use std::fmt::Write;

use super::light::{note, rows, trouble};
use crate::sweep::results::{CeilingRate, Step, SweepReport};

/// The p50 a loaded step is compared with: one request at a time. The
/// 1-user light-load step when there is one (measured the same way as the
/// other rows' steps, after a warm-up); else the idle step.
fn one_user_p50(steps: &[Step]) -> Option<f64> {
    let one = |s: &&Step| s.kind == "users" && s.client.users == Some(1);
    steps
        .iter()
        .find(one)
        .or_else(|| steps.iter().find(|s| s.kind == "idle"))
        .filter(|s| s.client.totals.latency.count > 0)
        .map(|s| s.client.totals.latency.p50_ms)
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// One server's step at fraction `f` of the bench: p50 (and its multiple of
/// the one-user p50), p99, achieved throughput, and errors or late sends.
fn cell(steps: &[Step], f: f64, one_user: Option<f64>) -> String {
    let Some(s) = steps
        .iter()
        .find(|s| s.kind == "ceiling" && s.fraction.is_some_and(|x| same(x, f)))
    else {
        return "–".into();
    };
    let t = &s.client.totals;
    if t.latency.count == 0 {
        return format!("nothing served{}", trouble(s));
    }
    let (p50, p99) = (t.latency.p50_ms, t.latency.p99_ms);
    let ratio = one_user
        .filter(|u| *u > 0.0)
        .map_or_else(String::new, |u| format!(" ({:.2} × 1 user)", p50 / u));
    let rps = t.throughput_rps;
    format!(
        "p50 {p50:.1} ms{ratio}, p99 {p99:.1} ms, {rps:.1} req/s{}",
        trouble(s)
    )
}

fn header(f: f64, rate: Option<&CeilingRate>) -> String {
    rate.map_or_else(
        || format!("{f} × bench"),
        |c| format!("{f} × bench ({:.1} req/s)", c.rate),
    )
}

/// The "Open loop at fractions of the bench" section, or `None` when the
/// sweep was asked for no such step.
pub fn section(r: &SweepReport) -> Option<String> {
    let o = &r.options;
    let fractions = &o.open_fractions_of_ceiling;
    if fractions.is_empty() {
        return None;
    }
    let mut out = String::from("## Open loop at fractions of the bench\n\n");
    let Some(first) = r.ceiling_rates.first() else {
        out += "Skipped: the first preset's `concur bench` did not run or failed, so there was no rate to take fractions of.\n";
        return Some(out);
    };
    out += "| server | 1 user p50 (ms) |";
    for &f in fractions {
        let rate = r.ceiling_rates.iter().find(|c| same(c.fraction, f));
        let _ = write!(out, " {} |", header(f, rate));
    }
    out += " notes |\n|---|---:|";
    out += &"---:|".repeat(fractions.len());
    out += "---|\n";
    for row in rows(r) {
        let one_user = one_user_p50(row.steps);
        let one = one_user.map_or_else(|| "–".into(), |p| format!("{p:.1}"));
        let _ = write!(out, "| {} | {one} |", row.name);
        for &f in fractions {
            let _ = write!(out, " {} |", cell(row.steps, f, one_user));
        }
        let _ = writeln!(out, " {} |", note(&row));
    }
    let _ = writeln!(
        out,
        "\nEach column is an open loop of {:?} arrivals at that fraction of the `concur bench` of the first preset, `{}` ({:.1} sequences/s, measured in this run before any server started), the same rates for every row, measured for {} s after a {} s warm-up: client p50 and p99 from each request's scheduled send time, achieved throughput, and errors or late sends when there were any. *1 user p50* is the 1-user light-load step's (the idle step's where there is none); each cell's p50 is also given as a multiple of it.",
        o.arrival,
        first.preset,
        first.bench_sps,
        o.step.as_secs_f64(),
        o.users_warmup.as_secs_f64()
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::light::tests::light_report;
    use super::*;

    #[test]
    fn every_fraction_has_a_column_and_every_server_a_row() {
        let md = section(&light_report()).unwrap();
        assert!(
            md.starts_with("## Open loop at fractions of the bench\n"),
            "{md}"
        );
        assert!(md.contains("| server | 1 user p50 (ms) | 0.5 × bench (100.0 req/s) | 0.65 × bench (130.0 req/s) | 0.8 × bench (160.0 req/s) | notes |"), "{md}");
        // The workers fixture: 1 user p50 17.75 ms; p50 is half of p99.
        assert!(md.contains("| workers | 17.8 | p50 20.0 ms (1.13 × 1 user), p99 40.0 ms, 99.8 req/s | p50 30.0 ms (1.69 × 1 user), p99 60.0 ms, 129.5 req/s | p50 125.0 ms (7.04 × 1 user), p99 250.0 ms, 158.0 req/s |  |"), "{md}");
        // The peer: no 1-user step or idle step, so no ratio; errors shown;
        // the fraction it did not run is a dash.
        assert!(md.contains("| python (peer) | – | p50 2100.0 ms, p99 4200.0 ms, 90.0 req/s, 3 errors {\"timeout\": 3} | – | p50 4500.0 ms, p99 9000.0 ms, 140.0 req/s |  |"), "{md}");
        assert!(
            md.contains("`workers` (200.0 sequences/s, measured in this run"),
            "{md}"
        );
        let full = crate::sweep::report::markdown(&light_report());
        assert!(full.contains("## Open loop at fractions of the bench"));
    }

    #[test]
    fn the_idle_step_stands_in_for_a_missing_one_user_step() {
        let mut r = light_report();
        r.presets[0]
            .steps
            .retain(|s| s.client.users != Some(1) || s.kind == "idle");
        let md = section(&r).unwrap();
        // The fixture's idle step: p99 8 ms, so p50 4 ms.
        assert!(
            md.contains("| workers | 4.0 | p50 20.0 ms (5.00 × 1 user)"),
            "{md}"
        );
    }

    #[test]
    fn a_skipped_bench_and_no_fractions_are_stated() {
        let mut r = light_report();
        r.ceiling_rates.clear();
        let md = section(&r).unwrap();
        assert!(
            md.contains("Skipped: the first preset's `concur bench`"),
            "{md}"
        );
        assert!(!md.contains("| server |"), "{md}");
        r.options.open_fractions_of_ceiling.clear();
        assert_eq!(section(&r), None);
    }
}
