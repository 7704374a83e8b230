//! The light-load table: each preset and peer at a few closed-loop user
//! counts and at one open-loop rate, side by side.

use std::fmt::Write;

use crate::sweep::results::{CeilingRate, Step, SweepReport};

/// One row's name and steps.
struct Row<'a> {
    name: String,
    steps: &'a [Step],
    failed: bool,
}

fn rows(r: &SweepReport) -> Vec<Row<'_>> {
    let presets = r.presets.iter().map(|p| Row {
        name: p.name.clone(),
        steps: &p.steps,
        failed: p.error.is_some(),
    });
    let peers = r.peers.iter().map(|p| Row {
        name: format!("{} (peer)", p.name),
        steps: &p.steps,
        failed: p.error.is_some(),
    });
    presets.chain(peers).collect()
}

/// Errors and late or unsent sends of a step, e.g. `, 3 errors`.
fn trouble(s: &Step) -> String {
    let t = &s.client.totals;
    let mut out = String::new();
    if t.error_count() > 0 {
        let _ = write!(out, ", {} errors {:?}", t.error_count(), t.errors);
    }
    if t.late_sends + t.unsent > 0 {
        let _ = write!(out, ", {} late", t.late_sends + t.unsent);
    }
    out.replace('|', "/")
}

fn users_cell(steps: &[Step], users: usize) -> String {
    steps
        .iter()
        .find(|s| s.kind == "users" && s.client.users == Some(users.max(1)))
        .map_or_else(
            || "–".into(),
            |s| {
                let t = &s.client.totals;
                let (rps, p99) = (t.throughput_rps, t.latency.p99_ms);
                format!("{rps:.1} req/s, p99 {p99:.1} ms{}", trouble(s))
            },
        )
}

fn ceiling_cell(steps: &[Step]) -> String {
    steps.iter().find(|s| s.kind == "ceiling").map_or_else(
        || "–".into(),
        |s| {
            let t = &s.client.totals;
            let (p99, rps) = (t.latency.p99_ms, t.throughput_rps);
            format!("p99 {p99:.1} ms, {rps:.1} req/s{}", trouble(s))
        },
    )
}

fn ceiling_header(c: Option<&CeilingRate>) -> String {
    c.map_or_else(
        || "open loop at a fraction of the ceiling".into(),
        |c| format!("open loop {:.1} req/s ({} × ceiling)", c.rate, c.fraction),
    )
}

/// The "Light load (closed loop)" section, or `None` when the sweep ran
/// neither light-load steps nor a ceiling step.
pub fn section(r: &SweepReport) -> Option<String> {
    let o = &r.options;
    if o.users.is_empty() && o.open_fraction_of_ceiling.is_none() {
        return None;
    }
    let with_ceiling = o.open_fraction_of_ceiling.is_some();
    let mut out = String::from("## Light load (closed loop)\n\n| server |");
    for &u in &o.users {
        let _ = write!(out, " {u} {} |", if u == 1 { "user" } else { "users" });
    }
    if with_ceiling {
        let _ = write!(out, " {} |", ceiling_header(r.ceiling_rate.as_ref()));
    }
    out += " notes |\n|---|";
    out += &"---:|".repeat(o.users.len() + usize::from(with_ceiling));
    out += "---|\n";
    for row in rows(r) {
        let _ = write!(out, "| {} |", row.name);
        for &u in &o.users {
            let _ = write!(out, " {} |", users_cell(row.steps, u));
        }
        if with_ceiling {
            let _ = write!(out, " {} |", ceiling_cell(row.steps));
        }
        let note = if row.failed {
            "failed: see its section"
        } else {
            ""
        };
        let _ = writeln!(out, " {note} |");
    }
    let _ = write!(
        out,
        "\nEach user count is a closed loop with no think time, measured for {:.0} s after a {:.0} s warm-up: achieved throughput and client p99. Peers are external servers started by the sweep (see their sections) and measured with the same steps and corpus, one server at a time.",
        o.step.as_secs_f64(),
        o.users_warmup.as_secs_f64()
    );
    match (&r.ceiling_rate, o.open_fraction_of_ceiling) {
        (Some(c), _) => {
            let _ = write!(out, " The open-loop column: {:?} arrivals at {} × the `concur bench` of the first preset, `{}` ({:.1} sequences/s, measured in this run before any server started), the same rate for every row.", o.arrival, c.fraction, c.preset, c.bench_sps);
        }
        (None, Some(_)) => {
            out += " The open-loop step was skipped: the first preset's `concur bench` did not run or failed, so there was no ceiling to take a fraction of.";
        }
        (None, None) => {}
    }
    out += "\n";
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{report, step};
    use super::*;
    use crate::sweep::results::PeerResult;

    /// The fixture report with light-load steps at 1 and 4 users, a
    /// ceiling step at 0.8 × 190 seq/s, and one peer.
    fn light_report() -> SweepReport {
        let mut r = report(256);
        r.options.users = vec![1, 4];
        r.options.open_fraction_of_ceiling = Some(0.8);
        r.ceiling_rate = Some(CeilingRate {
            preset: "workers".into(),
            bench_sps: 190.0,
            fraction: 0.8,
            rate: 152.0,
        });
        let steps = &mut r.presets[0].steps;
        steps.push(step("users", None, Some(1), 120.0, 35.5));
        steps.push(step("users", None, Some(4), 238.0, 65.0));
        steps.push(step("ceiling", Some(0.8), None, 151.9, 80.2));
        let mut errors = step("users", None, Some(4), 150.0, 97.0);
        errors.client.totals.errors.insert("503".into(), 2);
        r.peers.push(PeerResult {
            name: "python".into(),
            command: "python -m uvicorn --port {port}".into(),
            // No 1-user step: the cell shows a dash.
            steps: vec![errors, step("ceiling", Some(0.8), None, 140.0, 4200.0)],
            ..PeerResult::default()
        });
        r
    }

    #[test]
    fn rows_are_presets_then_peers_and_columns_are_user_counts() {
        let md = section(&light_report()).unwrap();
        assert!(md.starts_with("## Light load (closed loop)\n"), "{md}");
        assert!(
            md.contains(
                "| server | 1 user | 4 users | open loop 152.0 req/s (0.8 × ceiling) | notes |"
            ),
            "{md}"
        );
        assert!(md.contains("| workers | 120.0 req/s, p99 35.5 ms | 238.0 req/s, p99 65.0 ms | p99 80.2 ms, 151.9 req/s |  |"), "{md}");
        assert!(md.contains("| python (peer) | – | 150.0 req/s, p99 97.0 ms, 2 errors {\"503\": 2} | p99 4200.0 ms, 140.0 req/s |  |"), "{md}");
        assert!(md.contains("`workers` (190.0 sequences/s"), "{md}");
        // The whole report carries the section, the peer's own section and
        // the command line, quoted for a shell.
        let mut r = light_report();
        r.options.invocation = [
            "loadtest",
            "sweep",
            "--peer",
            "py=python -m x --port {port}",
        ]
        .map(String::from)
        .to_vec();
        let full = crate::sweep::report::markdown(&r);
        assert!(
            full.contains("Command: `loadtest sweep --peer 'py=python -m x --port {port}'`"),
            "{full}"
        );
        assert!(full.contains("## Light load (closed loop)"), "{full}");
        assert!(full.contains("## python (peer)"), "{full}");
        assert!(full.contains("| light load (1 user) |"), "{full}");
        assert!(full.contains("| light load (4 users) |"), "{full}");
        assert!(full.contains("| ceiling 0.8 | 151.9 |"), "{full}");
    }

    #[test]
    fn skipped_ceiling_and_disabled_view_are_stated() {
        let mut r = light_report();
        r.ceiling_rate = None;
        r.presets[0].error = Some("server exited".into());
        let md = section(&r).unwrap();
        assert!(md.contains("open-loop step was skipped"), "{md}");
        assert!(md.contains("| failed: see its section |"), "{md}");
        r.options.users.clear();
        r.options.open_fraction_of_ceiling = None;
        assert_eq!(section(&r), None);
    }
}
