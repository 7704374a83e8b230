//! `loadtest gen-report` run as a command over sweep folders: the fixtures
//! (real runs of `results/2core-generation`, a few of them, plus runs made
//! missing, unreadable or added here) and a copy of the committed sweep.

use std::path::{Path, PathBuf};
use std::process::Command;

use loadtest::stream::StreamSummary;

const SERVERS: [&str; 4] = [
    "concur continuous",
    "concur static",
    "concur sequential",
    "llama-server",
];
const CHARTS: [&str; 3] = [
    "generation_tokens_per_s.svg",
    "generation_ttft.svg",
    "generation_itl.svg",
];

/// A fresh copy of the files of `from` (no subfolders) in the target's
/// scratch folder.
fn copy_of(from: &Path, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Runs `loadtest gen-report dir`; its stderr and the README it wrote.
fn gen_report(dir: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("gen-report")
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gen-report failed: {stderr}");
    (
        stderr,
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
    )
}

/// The lines of the README section headed `## {title}`.
fn section<'a>(readme: &'a str, title: &str) -> &'a str {
    let start = readme
        .find(&format!("## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title:?} in\n{readme}"));
    let rest = &readme[start + 3..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

fn assert_has(text: &str, line: &str) {
    assert!(text.contains(line), "{line:?} not in\n{text}");
}

/// Each chart exists, is embedded, and has one legend entry per server
/// (every server has a run in both folders).
fn assert_charts(dir: &Path, readme: &str) {
    for chart in CHARTS {
        assert_has(readme, &format!("]({chart})"));
        let svg = std::fs::read_to_string(dir.join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && !svg.contains("NaN"), "{chart}");
        for server in SERVERS {
            assert_eq!(svg.matches(server).count(), 1, "{server} in {chart}");
        }
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generation")
}

/// The fixtures, with a broken run file and a llama-server open loop at
/// 50% (the 70% one at a lower rate) that concur continuous lacks.
fn prepared_fixtures() -> PathBuf {
    let dir = copy_of(&fixtures(), "gen-report-fixtures");
    std::fs::write(dir.join("concur-static-4.json"), "{\"mode\": ").unwrap();
    let text = std::fs::read_to_string(dir.join("llama-open70.json")).unwrap();
    let mut half: StreamSummary = serde_json::from_str(&text).unwrap();
    half.target_rate = Some(1.234);
    let json = serde_json::to_string_pretty(&half).unwrap();
    std::fs::write(dir.join("llama-open50.json"), json).unwrap();
    dir
}

#[test]
fn tables_carry_the_runs_figures_and_say_what_was_not_run() {
    let dir = prepared_fixtures();
    let (stderr, readme) = gen_report(&dir);
    assert_has(&stderr, "concur-static-4.json: unreadable");

    let s16 = section(&readme, "16 concurrent streams (closed loop)");
    assert_has(
        s16,
        "| concur continuous | 270.0 | 2.47 | 168 | 1,248 | 45.6 | 161 | 37 / 0 / 0 |",
    );
    assert_has(
        s16,
        "| concur static | 192.7 | 1.60 | 4,121 | 5,911 | 32.8 | 55.6 | 24 / 0 / 0 |",
    );
    assert_has(
        s16,
        "| concur sequential | 14.1 | 0.07 | 58,360 | 58,360 | 64.5 | 224 | 1 / 1 / 0 |",
    );
    assert_has(
        s16,
        "| llama-server | 148.0 | 1.27 | 762 | 2,245 | 79.2 | 747 | 19 / 0 / 0 |",
    );

    let s4 = section(&readme, "4 concurrent streams (closed loop)");
    assert_has(s4, "| concur continuous | (not run) |||||||");
    assert_has(s4, "| concur static | (unreadable: ");
    let s32 = section(&readme, "32 concurrent streams (closed loop)");
    for server in SERVERS {
        assert_has(s32, &format!("| {server} | (not run) |||||||"));
    }
    let mixed = section(&readme, "16 streams, max_tokens drawn from 16-256");
    assert_has(mixed, "| llama-server | (not run) |||||||");

    let across = section(&readme, "Across concurrency (closed loop, max_tokens 128)");
    assert_has(
        across,
        "| server | 1 stream | 4 streams | 16 streams | 32 streams |",
    );
    assert_has(
        across,
        "| concur continuous | 12.1 | not run | 270.0 | not run |",
    );
    assert_has(
        across,
        "| concur static | not run | unreadable | 192.7 | not run |",
    );
    assert_has(
        across,
        "(not run, or unreadable): 1 stream (concur static, concur sequential, llama-server); \
         4 streams (every server); 32 streams (every server).",
    );

    let open = section(
        &readme,
        "Open loop (Poisson) at fractions of the continuous scheduler's capacity",
    );
    assert_has(open, "16 streams (closed loop), 2.47 streams/s");
    assert_has(open, "| 50% | concur continuous | (not run) |||||||||");
    assert_has(open, "| 50% | llama-server -np 16 | 1.234 | 108.2 |");
    assert_has(open, "| 70% | concur continuous | 1.727 | 188.5 | 1.89 | 94.1 | 450 | 28.5 | 151 | 85 / 0 / 0 | 0 |");
    assert_has(open, "| 70% | llama-server -np 16 | 1.727 | 108.2 | 1.89 | 16,810 | 20,414 | 81.9 | 668 | 85 / 0 / 0 | 5 |");
    assert!(open.find("| 50%").unwrap() < open.find("| 70%").unwrap());

    let memory = section(&readme, "Resident memory after the runs");
    assert_has(
        memory,
        "- concur continuous: 822 MiB (32 slots of 2,048 tokens, steps on 2 threads)",
    );
    assert!(!memory.contains("concur static"), "no note, no line");
    assert_charts(&dir, &readme);
}

#[test]
fn a_folder_without_runs_gives_a_report_of_runs_not_made() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gen-report-empty");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_, readme) = gen_report(&dir);
    assert_has(&readme, "| concur continuous | (not run) |||||||");
    assert_has(
        &readme,
        "capacity\n\nCapacity: concur continuous' streams/s at 16 streams (closed loop), not run.",
    );
    assert_has(
        section(&readme, "Resident memory after the runs"),
        "Not recorded.",
    );
    for chart in CHARTS {
        let svg = std::fs::read_to_string(dir.join(chart)).unwrap();
        assert!(SERVERS.iter().all(|s| !svg.contains(s)), "no run, no line");
    }
}

#[test]
fn the_committed_generation_sweep_renders() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/2core-generation");
    let dir = copy_of(&committed, "gen-report-2core-generation");
    std::fs::remove_file(dir.join("README.md")).unwrap();
    let (stderr, readme) = gen_report(&dir);
    assert!(!stderr.contains("unreadable"), "{stderr}");
    for title in [
        "1 concurrent stream (closed loop)",
        "16 streams, max_tokens drawn from 16-256",
        "Time to first token of a ~200-token prompt (one stream, max_tokens 8)",
    ] {
        let s = section(&readme, title);
        for server in SERVERS {
            assert_has(s, &format!("| {server} | "));
        }
    }
    let open = section(
        &readme,
        "Open loop (Poisson) at fractions of the continuous scheduler's capacity",
    );
    // The script's rate: 70% of the continuous scheduler's streams/s at 16 streams.
    let capacity: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(committed.join("concur-continuous-16.json")).unwrap(),
    )
    .unwrap();
    let rate = 0.7 * capacity["requests_per_s"].as_f64().unwrap();
    assert_has(open, &format!("| 70% | concur continuous | {rate:.3} |"));
    assert_has(open, &format!("| 70% | llama-server -np 16 | {rate:.3} |"));
    assert_charts(&dir, &readme);
}
