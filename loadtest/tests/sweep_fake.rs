//! End-to-end check of `loadtest::sweep::run` against a fake `concur` and
//! fake peers.
//!
//! This test has its own `main` (harness = false) so that its binary can
//! also *be* the fake servers: the sweep execs it as `concur serve ...`,
//! `concur bench ...` and `concur --version`, and it answers like concur
//! with canned metrics; a peer command execs it as `peer ...`. The real
//! server is exercised by the server crate's own integration tests.

mod common;
#[path = "sweep_fake/fakes.rs"]
mod fakes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loadtest::peer::{live_group_members, Peer, PeerSpec};
use loadtest::sweep::{self, SweepOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") => println!("concur 0.0.0-fake"),
        Some("bench") => println!("{}", fakes::BENCH_JSON),
        Some("serve") => fakes::fake_serve(&args),
        Some("peer") => fakes::fake_peer(&args),
        _ => {
            let dir = std::env::temp_dir().join(format!("loadtest-sweep-{}", std::process::id()));
            // The two sweeps wait on their step clocks far more than they
            // use CPU, so they run side by side to keep the test short.
            std::thread::scope(|s| {
                s.spawn(|| full_sweep(&dir.join("full")));
                s.spawn(|| light_sweep_with_peers(&dir.join("light")));
            });
            peers_stop_whatever_they_do(&dir.join("stop"));
            if std::env::var_os("KEEP_SWEEP_OUT").is_none() {
                std::fs::remove_dir_all(&dir).ok();
            }
            // The plain closing line CI and people read.
            println!("3 passed, 0 failed");
        }
    }
}

/// Fake presets (empty config files named after the strategy) and a
/// two-message corpus in `dir`; options sized for a test.
fn options(dir: &Path, presets: &[&str]) -> SweepOptions {
    std::fs::create_dir_all(dir).unwrap();
    let configs: Vec<PathBuf> = presets
        .iter()
        .map(|name| {
            let p = dir.join(format!("{name}.toml"));
            std::fs::write(&p, "# fake preset\n").unwrap();
            p
        })
        .collect();
    let corpus = dir.join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"text\": \"hello\"}\n{\"text\": \"where is my order?\"}\n",
    )
    .unwrap();
    let me = std::env::current_exe().unwrap();
    let mut o = SweepOptions::new(me, configs, dir.join("out"), corpus);
    o.step = Duration::from_millis(800);
    o.warmup = Duration::from_millis(300);
    o.users_warmup = Duration::from_millis(200);
    o.bench_seconds = 1;
    o.idle_max_requests = 10;
    o.idle_max = Duration::from_secs(2);
    o.ready_timeout = Duration::from_secs(10);
    o.peer_ready_timeout = Duration::from_secs(10);
    // Generous targets: this checks the flow, not this machine's speed.
    o.slo_p99 = Duration::from_secs(1);
    o.max_late_fraction = 1.0;
    o
}

/// Whether process `pid` still runs (a zombie does not).
fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
    state.is_some_and(|s| !s.starts_with('Z') && !s.starts_with('X'))
}

/// The pid a fake peer (or its shell) wrote to `file`.
fn pid_in(file: &Path) -> i32 {
    let text = std::fs::read_to_string(file).unwrap();
    text.trim().parse().unwrap()
}

/// Waits up to 5 s for `pids` and the group `pgid` to be gone.
fn assert_gone(pgid: i32, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while (!live_group_members(pgid).is_empty() || pids.iter().any(|&p| running(p)))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        live_group_members(pgid).is_empty(),
        "group {pgid} left running"
    );
    for &p in pids {
        assert!(!running(p), "process {p} left running");
    }
}

/// A peer command: a background `sleep` (a second member of the group,
/// which must not outlive the peer) and the fake peer itself.
fn peer_command(dir: &Path, name: &str, extra: &str) -> String {
    let me = std::env::current_exe().unwrap();
    let d = dir.display();
    format!(
        "sleep 300 & echo $! > '{d}/{name}-bg.pid'; exec '{}' peer 127.0.0.1:{{port}} '{d}/{name}.pid' {extra}",
        me.display()
    )
}

/// Every step kind on a preset that works and one that fails at start.
fn full_sweep(dir: &Path) {
    let mut o = options(dir, &["fast", "broken"]);
    o.max_steps = 3;
    o.fractions = vec![0.5, 0.9];
    o.users = vec![2];
    // Enough users for a deep queue, few enough for a shared test machine.
    o.saturation_users = 32;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(sweep::run(&o)).expect("sweep runs");

    let fast = &report.presets[0];
    assert!(fast.error.is_none(), "{:?}", fast.error);
    assert!(fast.max_rate.is_some());
    assert_eq!(fast.info.as_ref().unwrap()["strategy"], "fast");
    assert_eq!(fast.steps_of("probe").count(), 1);
    assert_eq!(fast.steps_of("search").count(), 3);
    assert_eq!(fast.steps_of("fraction").count(), 2);
    let kinds: Vec<&str> = fast.steps.iter().map(|s| s.kind.as_str()).collect();
    let n = kinds.len();
    assert_eq!(
        kinds[n - 5..],
        ["fraction", "fraction", "users", "saturation", "idle"],
        "light load, then saturation, after the fractions, before idle: {kinds:?}"
    );
    assert!(report.ceiling_rates.is_empty(), "not asked for");
    let sat = fast.steps_of("saturation").next().unwrap();
    assert_eq!(sat.client.users, Some(32));
    assert_eq!(sat.client.target_rate, None, "closed loop");
    assert!(sat.pass, "{}", sat.verdict);
    assert!(sat.client.totals.successes > 0);
    assert!(sat.server.is_some(), "metrics scraped around saturation");
    assert_eq!(
        fast.saturated_throughput,
        Some(sat.client.totals.throughput_rps)
    );
    assert!(fast.saturated_throughput.unwrap() > 0.0);
    let idle = fast.steps_of("idle").next().unwrap();
    assert_eq!(
        idle.client.totals.requests, 2,
        "idle run is one pass over the corpus"
    );
    let half = fast.steps_of("fraction").next().unwrap();
    let server = half.server.as_ref().expect("metrics scraped");
    assert_eq!(server.batch_size_mean, Some(2.0));
    assert!(server.event_loop_lag_p99_ms.unwrap() <= 1.0);
    assert_eq!(report.engine_ceiling_sps, Some(400.0));
    assert_eq!(report.best_preset.as_deref(), Some("fast"));
    assert_eq!(report.versions.concur.as_deref(), Some("concur 0.0.0-fake"));

    let broken = &report.presets[1];
    let err = broken.error.as_deref().expect("broken preset fails");
    assert!(err.contains("models/missing"), "log tail in error: {err}");

    let md = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(md.contains("| fast | fast |"), "{md}");
    assert!(md.contains("broken"));
    for column in [
        "| max rate under SLO (req/s) |",
        "| max-rate throughput % of engine ceiling |",
        "| saturated (req/s) | saturated % of own bench | saturated % of engine ceiling |",
    ] {
        assert!(md.contains(column), "missing {column}: {md}");
    }
    // The fast row's saturated figures are filled in, as a share of the
    // fake bench's 400 seq/s (own bench and engine ceiling alike).
    let row = md
        .lines()
        .find(|l| l.starts_with("| fast | fast |"))
        .unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let sat_rps = fast.saturated_throughput.unwrap();
    assert_eq!(cells[7], format!("{sat_rps:.1}"), "{row}");
    let sat_pct = format!("{:.0}%", sat_rps / 400.0 * 100.0);
    assert_eq!(cells[8], sat_pct, "{row}");
    assert_eq!(cells[9], sat_pct, "{row}");
    assert!(md.contains("closed loop of 32 users"), "{md}");
    assert!(md.contains("| saturation (32 users) |"), "{md}");
    for f in ["latency_vs_throughput.svg", "event_loop_lag.svg"] {
        let svg = std::fs::read_to_string(dir.join("out").join(f)).unwrap();
        assert!(svg.contains("<polyline") && svg.contains("fast"), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
    assert_eq!(json["presets"][0]["name"], "fast");
    assert_eq!(json["presets"][0]["saturated_throughput"], sat_rps);
    assert_eq!(json["options"]["saturation_users"], 32);
}

/// `max_steps = 0`: a preset gets its bench, the light load, a ceiling
/// step per open fraction, saturation and idle, nothing else; peers get the
/// light load and the ceiling steps. One peer works (its background child
/// must go with it), one exits at once.
fn light_sweep_with_peers(dir: &Path) {
    let mut o = options(dir, &["fast"]);
    o.max_steps = 0;
    o.users = vec![1, 4];
    o.open_fractions_of_ceiling = vec![0.25, 0.5];
    o.saturation_users = 8;
    o.step = Duration::from_millis(500);
    o.peers = vec![
        format!("good={}", peer_command(dir, "good", ""))
            .parse()
            .unwrap(),
        "broken=echo no model for port {port} >&2; exit 3"
            .parse()
            .unwrap(),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(sweep::run(&o)).expect("sweep runs");

    let fast = &report.presets[0];
    assert!(fast.error.is_none(), "{:?}", fast.error);
    let kinds: Vec<&str> = fast.steps.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["users", "users", "ceiling", "ceiling", "saturation", "idle"],
        "no probe, search or fractions"
    );
    assert_eq!(fast.max_rate, None);
    let rates: Vec<_> = report
        .ceiling_rates
        .iter()
        .map(|c| (c.preset.as_str(), c.bench_sps, c.fraction, c.rate))
        .collect();
    assert_eq!(
        rates,
        [("fast", 400.0, 0.25, 100.0), ("fast", 400.0, 0.5, 200.0)],
        "one rate per fraction, from the first preset's bench"
    );
    let users: Vec<Option<usize>> = fast.steps_of("users").map(|s| s.client.users).collect();
    assert_eq!(users, [Some(1), Some(4)]);
    for s in fast.steps_of("users") {
        assert!(s.pass, "{}", s.verdict);
        assert!(s.client.totals.successes > 0);
        assert_eq!(s.client.target_rate, None, "closed loop");
        assert!(s.server.is_some(), "metrics scraped around light load");
    }
    let ceilings: Vec<_> = fast.steps_of("ceiling").collect();
    let asked: Vec<_> = ceilings
        .iter()
        .map(|s| (s.fraction, s.client.target_rate))
        .collect();
    assert_eq!(asked, [(Some(0.25), Some(100.0)), (Some(0.5), Some(200.0))]);
    assert!(ceilings.iter().all(|s| s.client.totals.successes > 0));

    let good = &report.peers[0];
    assert!(good.error.is_none(), "{:?}", good.error);
    assert_eq!(good.stopped_by.as_deref(), Some("SIGTERM"));
    assert_eq!(good.health.as_ref().unwrap()["mode"], "fake");
    let kinds: Vec<&str> = good.steps.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["users", "users", "ceiling", "ceiling"]);
    for s in &good.steps {
        assert!(s.client.totals.successes > 0, "{}", s.kind);
        assert_eq!(s.client.totals.error_count(), 0, "{}", s.kind);
        assert!(s.server.is_none(), "a peer has no /metrics");
    }
    let rates: Vec<_> = good.steps[2..]
        .iter()
        .map(|s| s.client.target_rate)
        .collect();
    assert_eq!(rates, [Some(100.0), Some(200.0)], "the presets' rates");
    let log = std::fs::read_to_string(&good.log).unwrap();
    assert!(!log.contains("unexpected"), "no /metrics, no /info: {log}");
    assert_gone(
        pid_in(&dir.join("good.pid")),
        &[pid_in(&dir.join("good-bg.pid"))],
    );
    let broken = &report.peers[1];
    let err = broken.error.as_deref().expect("broken peer fails");
    assert!(
        err.contains("exited") && err.contains("no model for port"),
        "{err}"
    );
    assert!(broken.steps.is_empty());

    let md = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    light_and_open_tables(&md);
    assert!(
        md.contains("## good (peer)") && md.contains("stopped by SIGTERM"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
    assert_eq!(json["peers"][0]["name"], "good");
    assert_eq!(json["peers"][0]["steps"].as_array().unwrap().len(), 4);
    assert_eq!(json["ceiling_rates"][1]["rate"], 200.0);
    assert_eq!(json["options"]["open_fractions_of_ceiling"][0], 0.25);
    assert_eq!(json["presets"][0]["steps"][0]["kind"], "users");
}

/// The light sweep's two tables: a row per server (the broken peer's all
/// dashes), closed-loop cells per user count, and per open fraction the
/// p50 (with its multiple of the 1-user p50) and p99.
fn light_and_open_tables(md: &str) {
    assert!(md.contains("## Light load (closed loop)"), "{md}");
    assert!(md.contains("| server | 1 user | 4 users | notes |"), "{md}");
    let light = md.split("## Light load (closed loop)").nth(1).unwrap();
    let (light, open) = light
        .split_once("## Open loop at fractions of the bench")
        .expect("an open-loop section after the light-load one");
    assert!(
        open.contains("| server | 1 user p50 (ms) | 0.25 × bench (100.0 req/s) | 0.5 × bench (200.0 req/s) | notes |"),
        "{md}"
    );
    for name in ["fast", "good (peer)"] {
        let row = |table: &str| {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| {name} | ")));
            let row = row.unwrap_or_else(|| panic!("no {name} row: {md}"));
            row.split('|')
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let cells = row(light);
        assert!(cells[2].contains(" req/s, p99 "), "{cells:?}");
        assert!(cells[3].contains(" req/s, p99 "), "{cells:?}");
        // The open loop: the 1-user p50, then p50 (as a multiple of it)
        // and p99 at each fraction.
        let cells = row(open);
        assert!(cells[2].parse::<f64>().is_ok(), "{cells:?}");
        for cell in &cells[3..5] {
            assert!(
                cell.starts_with("p50 ") && cell.contains(" × 1 user), p99 "),
                "{cells:?}"
            );
        }
    }
    // The broken peer: a dash per user count, then per column of the open
    // table (its 1-user p50 and each fraction).
    assert!(
        light.contains("| broken (peer) | – | – | failed: see its section |"),
        "{md}"
    );
    assert!(
        open.contains("| broken (peer) | – | – | – | failed: see its section |"),
        "{md}"
    );
}

/// A peer that ignores SIGTERM gets SIGKILL after the grace; a peer that
/// never answers `/health` is killed when the bounded wait ends. Neither
/// leaves a process behind.
fn peers_stop_whatever_they_do(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let stubborn = peer_command(dir, "stubborn", "ignore-term");
        let spec: PeerSpec = format!("stubborn={stubborn}").parse().unwrap();
        let log = dir.join("stubborn.log");
        let peer = Peer::start(&spec, &log, Duration::from_secs(10))
            .await
            .expect("stubborn peer starts");
        let pgid = peer.pgid();
        let how = peer.stop(Duration::from_millis(500)).await.expect("stops");
        assert!(how.starts_with("SIGKILL after"), "{how}");
        let pids = [dir.join("stubborn.pid"), dir.join("stubborn-bg.pid")].map(|p| pid_in(&p));
        assert_gone(pgid, &pids);

        let mute = format!(
            "mute=sleep 300 & echo $! > '{d}/mute-bg.pid'; echo $$ > '{d}/mute.pid'; exec sleep 301 # {{port}}"
        );
        let spec: PeerSpec = mute.parse().unwrap();
        let log = dir.join("mute.log");
        let err = Peer::start(&spec, &log, Duration::from_millis(700))
            .await
            .err()
            .expect("never healthy");
        assert!(err.to_string().contains("not healthy"), "{err:#}");
        let pgid = pid_in(&dir.join("mute.pid"));
        assert_gone(pgid, &[pgid, pid_in(&dir.join("mute-bg.pid"))]);
    });
}
