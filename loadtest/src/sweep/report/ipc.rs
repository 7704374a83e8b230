//! The IPC table: for presets whose batches ran in child processes (`processes`), what
//! feeding a child cost per batch at each step, next to the forward pass it fed.

use std::fmt::Write;

use crate::sweep::results::SweepReport;

/// The section, or `None` when no preset ran batches in child processes.
pub fn section(r: &SweepReport) -> Option<String> {
    let mut rows = String::new();
    for p in &r.presets {
        for s in &p.steps {
            let Some(b) = s.server.as_ref().filter(|b| b.ipc_mean_us.is_some()) else {
                continue;
            };
            let users = s
                .client
                .users
                .map_or_else(String::new, |u| format!(" ({u} users)"));
            let f = |x: Option<f64>, d: usize| x.map_or_else(|| "–".into(), |v| format!("{v:.d$}"));
            let _ = writeln!(
                rows,
                "| {} | {}{users} | {} | {} | {} | {} | {} | {} | {} |",
                p.name,
                s.kind,
                f(b.batches, 0),
                f(b.batch_size_mean, 1),
                f(b.ipc_mean_us, 0),
                f(b.ipc_p99_us, 0),
                f(b.ipc_bytes_to_child_mean, 0),
                f(b.ipc_bytes_from_child_mean, 0),
                f(b.inference_mean_ms, 2),
            );
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut o = String::from("## IPC per batch (child processes)\n\n");
    o.push_str("What a batch's trip to a child and back cost (the round trip minus the child's forward pass: encoding, two socket transfers, decoding, wake-ups), from the server's `concur_ipc_seconds` and `concur_ipc_bytes`; the last column is the whole round trip.\n\n");
    o.push_str("| preset | step | batches | mean batch | IPC mean (µs) | IPC p99 (µs) | bytes to child | bytes back | round trip mean (ms) |\n");
    o.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    o.push_str(&rows);
    Some(o)
}
