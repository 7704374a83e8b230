//! The light-load table: each preset and peer at a few closed-loop user
//! counts, side by side. (The open-loop steps at fractions of the bench
//! have their own table, in `open`.)

use std::fmt::Write;

use crate::sweep::results::{Step, SweepReport};

/// One row's name and steps: a preset or a peer.
pub(super) struct Row<'a> {
    pub name: String,
    pub steps: &'a [Step],
    pub failed: bool,
}

/// The rows of a light-load table: presets, then peers.
pub(super) fn rows(r: &SweepReport) -> Vec<Row<'_>> {
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
pub(super) fn trouble(s: &Step) -> String {
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

/// A row's note: empty, or where to look when its server failed.
pub(super) fn note(row: &Row) -> &'static str {
    if row.failed {
        "failed: see its section"
    } else {
        ""
    }
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

/// The "Light load (closed loop)" section, or `None` when the sweep ran no
/// light-load steps.
pub fn section(r: &SweepReport) -> Option<String> {
    let o = &r.options;
    if o.users.is_empty() {
        return None;
    }
    let mut out = String::from("## Light load (closed loop)\n\n| server |");
    for &u in &o.users {
        let _ = write!(out, " {u} {} |", if u == 1 { "user" } else { "users" });
    }
    out += " notes |\n|---|";
    out += &"---:|".repeat(o.users.len());
    out += "---|\n";
    for row in rows(r) {
        let _ = write!(out, "| {} |", row.name);
        for &u in &o.users {
            let _ = write!(out, " {} |", users_cell(row.steps, u));
        }
        let _ = writeln!(out, " {} |", note(&row));
    }
    let _ = writeln!(
        out,
        "\nEach user count is a closed loop with no think time, measured for {} s after a {} s warm-up: achieved throughput and client p99. Peers are external servers started by the sweep (see their sections) and measured with the same steps and corpus, one server at a time.",
        o.step.as_secs_f64(),
        o.users_warmup.as_secs_f64()
    );
    Some(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::{report, step};
    use super::*;
    use crate::sweep::results::{CeilingRate, PeerResult};

    /// The fixture report with light-load steps at 1 and 4 users, open-loop
    /// steps at 0.5, 0.65 and 0.8 × a 200 seq/s bench, and one peer that
    /// has neither a 1-user step nor a 0.65 step.
    pub(in crate::sweep::report) fn light_report() -> SweepReport {
        let mut r = report(256);
        r.options.users = vec![1, 4];
        r.options.open_fractions_of_ceiling = vec![0.5, 0.65, 0.8];
        r.ceiling_rates = [0.5, 0.65, 0.8]
            .map(|fraction| CeilingRate {
                preset: "workers".into(),
                bench_sps: 200.0,
                fraction,
                rate: 200.0 * fraction,
            })
            .to_vec();
        let steps = &mut r.presets[0].steps;
        steps.push(step("users", None, Some(1), 120.0, 35.5));
        steps.push(step("users", None, Some(4), 238.0, 65.0));
        steps.push(step("ceiling", Some(0.5), None, 99.8, 40.0));
        steps.push(step("ceiling", Some(0.65), None, 129.5, 60.0));
        steps.push(step("ceiling", Some(0.8), None, 158.0, 250.0));
        let mut errors = step("users", None, Some(4), 150.0, 97.0);
        errors.client.totals.errors.insert("503".into(), 2);
        let mut overloaded = step("ceiling", Some(0.5), None, 90.0, 4200.0);
        overloaded.client.totals.errors.insert("timeout".into(), 3);
        r.peers.push(PeerResult {
            name: "python".into(),
            command: "python -m uvicorn --port {port}".into(),
            steps: vec![
                errors,
                overloaded,
                step("ceiling", Some(0.8), None, 140.0, 9000.0),
            ],
            ..PeerResult::default()
        });
        r
    }

    #[test]
    fn rows_are_presets_then_peers_and_columns_are_user_counts() {
        let md = section(&light_report()).unwrap();
        assert!(md.starts_with("## Light load (closed loop)\n"), "{md}");
        assert!(md.contains("| server | 1 user | 4 users | notes |"), "{md}");
        assert!(
            md.contains("| workers | 120.0 req/s, p99 35.5 ms | 238.0 req/s, p99 65.0 ms |  |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| python (peer) | – | 150.0 req/s, p99 97.0 ms, 2 errors {\"503\": 2} |  |"
            ),
            "{md}"
        );
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
        assert!(full.contains("| ceiling 0.65 | 129.5 | 129.5 |"), "{full}");
    }

    #[test]
    fn a_failed_server_is_noted_and_no_users_means_no_section() {
        let mut r = light_report();
        r.presets[0].error = Some("server exited".into());
        let md = section(&r).unwrap();
        assert!(md.contains("| failed: see its section |"), "{md}");
        r.options.users.clear();
        assert_eq!(section(&r), None);
    }
}
