//! One load run against a running server: closed or open loop, a warm-up
//! whose requests are discarded, then a measured window.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::client::{Client, Endpoint, Mix};
use crate::idle::{Held, IdleReport};
use crate::progress::Progress;
use crate::schedule::{remaining_in, Arrival, Quota, Schedule};
use crate::stats::{Recorder, Sample, Totals};
use crate::switch::{SegmentSummary, SegmentTable, Segments, SwitchPlan};

/// The load model.
#[derive(Clone, Debug, PartialEq)]
pub enum Load {
    /// `users` simulated users, each sending its next message when the
    /// previous answer arrived plus `think_time`. The offered load adapts
    /// to the server, so this measures capacity, not latency under a rate.
    Closed {
        /// Concurrent users.
        users: usize,
        /// Pause between an answer and the user's next message.
        think_time: Duration,
    },
    /// Requests sent at `rate` per second whatever the server does; latency
    /// is measured from each request's scheduled send time.
    Open {
        /// Target requests per second.
        rate: f64,
        /// Gap distribution.
        arrival: Arrival,
    },
}

/// Everything one run needs. Build with [`RunOptions::new`] and adjust.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Server base URL; must be a loopback address, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Messages to send, cycled in order.
    pub texts: Arc<Vec<String>>,
    /// Closed or open loop.
    pub load: Load,
    /// Which endpoint each request goes to.
    pub mix: Mix,
    /// Load applied before measuring, whose requests are not recorded.
    pub warmup: Duration,
    /// Length of the measured window.
    pub duration: Duration,
    /// A request without a complete response by then counts as `timeout`.
    pub request_timeout: Duration,
    /// Stop after this many measured requests (e.g. one pass over the corpus).
    pub max_requests: Option<u64>,
    /// Open loop only: cap on requests in flight. A send that finds the cap
    /// reached waits, so it becomes late and its latency grows: nothing is hidden.
    pub max_inflight: usize,
    /// A send leaving later than this after its schedule counts as late.
    pub late_threshold: Duration,
    /// Seed for arrival gaps and the endpoint mix.
    pub seed: u64,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Idle keep-alive connections to hold open for the whole run (see [`crate::idle`]).
    pub idle_connections: usize,
    /// The server's process id, to measure what the idle connections cost it in memory.
    pub server_pid: Option<u32>,
    /// Reconfigure the server live on a schedule during the measured window.
    pub switches: Option<SwitchPlan>,
}

impl RunOptions {
    /// Defaults: embeddings only, no warm-up, 10 s window, 10 s timeout,
    /// 1024 in flight, 10 ms late threshold, seed 1, no progress bar, no idle connections.
    pub fn new(base_url: impl Into<String>, texts: Arc<Vec<String>>, load: Load) -> Self {
        RunOptions {
            base_url: base_url.into(),
            texts,
            load,
            mix: Mix::only(Endpoint::Embeddings),
            warmup: Duration::ZERO,
            duration: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_requests: None,
            max_inflight: 1024,
            late_threshold: Duration::from_millis(10),
            seed: 1,
            progress: false,
            idle_connections: 0,
            server_pid: None,
            switches: None,
        }
    }
}

/// The result of one run, ready for JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `closed` or `open`.
    pub mode: String,
    /// Closed loop: number of users.
    pub users: Option<usize>,
    /// Closed loop: think time in ms.
    pub think_time_ms: Option<f64>,
    /// Open loop: target rate in requests per second.
    pub target_rate: Option<f64>,
    /// Open loop: gap distribution.
    pub arrival: Option<Arrival>,
    /// Endpoint mix, e.g. `embeddings=1`.
    pub mix: String,
    /// Warm-up length in seconds.
    pub warmup_s: f64,
    /// Measured window in seconds (shorter than asked if `max_requests` hit).
    pub window_s: f64,
    /// Open loop: requests scheduled in the window per second.
    pub offered_rps: Option<f64>,
    /// Counts, throughput and latency percentiles.
    #[serde(flatten)]
    pub totals: Totals,
    /// The idle connections held during the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    /// With live switches: the window split at each reload, one segment per config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentSummary>,
}

impl fmt::Display for RunSummary {
    /// The human-readable summary printed by `loadtest run`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        match (self.users, self.target_rate) {
            (Some(u), _) => writeln!(
                f,
                "closed loop, {u} users, think {:.0} ms, mix {}",
                self.think_time_ms.unwrap_or(0.0),
                self.mix
            )?,
            (_, Some(r)) => writeln!(
                f,
                "open loop, target {r:.1} req/s ({:?}), offered {:.1} req/s, mix {}",
                self.arrival.unwrap_or(Arrival::Poisson),
                self.offered_rps.unwrap_or(0.0),
                self.mix
            )?,
            _ => writeln!(f, "{} loop", self.mode)?,
        }
        writeln!(
            f,
            "window {:.1} s after {:.1} s warm-up",
            self.window_s, self.warmup_s
        )?;
        writeln!(
            f,
            "requests {}  ok {}  throughput {:.1} req/s",
            t.requests, t.successes, t.throughput_rps
        )?;
        let errors: Vec<String> = t.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        writeln!(
            f,
            "errors {}{}",
            t.error_count(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join(", "))
            }
        )?;
        writeln!(
            f,
            "late sends {}  unsent {}  max send delay {:.1} ms",
            t.late_sends, t.unsent, t.max_send_delay_ms
        )?;
        let l = &t.latency;
        writeln!(f, "latency ms (from scheduled send)  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}", l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms)?;
        if let Some(i) = &self.idle {
            let kib =
                |v: Option<u64>| v.map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0));
            writeln!(
                f,
                "idle connections held {} of {} (closed by the server during the run: {}); server RSS {} -> {}, {} per connection",
                i.opened,
                i.requested,
                i.closed_by_server,
                kib(i.server_rss_before_kib),
                kib(i.server_rss_held_kib),
                i.rss_per_connection_bytes
                    .map_or("?".into(), |b| format!("{:.2} KiB", b / 1024.0)),
            )?;
        }
        if !self.segments.is_empty() {
            writeln!(f, "segments (each starts when its reload finished):")?;
            write!(f, "{}", SegmentTable(&self.segments))?;
        }
        if t.by_endpoint.len() > 1 {
            for (name, l) in &t.by_endpoint {
                writeln!(
                    f,
                    "  {name:<10} n {:>6}  p50 {:.2}  p99 {:.2}  max {:.2}",
                    l.count, l.p50_ms, l.p99_ms, l.max_ms
                )?;
            }
        }
        Ok(())
    }
}

/// State shared by every request task of a run.
struct Shared {
    client: Client,
    opts: RunOptions,
    recorder: Arc<Mutex<Recorder>>,
    /// With live switches: every measured sample, split into segments at the end.
    segments: Option<Arc<Segments>>,
    /// Measured sends left to start (`max_requests`).
    quota: Quota,
    warm_end: Instant,
    end: Instant,
}

impl Shared {
    fn text(&self, i: usize) -> &str {
        &self.opts.texts[i % self.opts.texts.len()]
    }

    fn record(&self, s: &Sample) {
        if s.scheduled >= self.warm_end {
            self.recorder.lock().expect("recorder lock").record(s);
            if let Some(seg) = &self.segments {
                seg.record(s);
            }
        }
    }
}

/// Runs one load test against `opts.base_url` and summarises it.
///
/// Bounded in time: it returns at most `warmup + duration + request_timeout`
/// (plus a second of slack) after it starts. Must be called inside a tokio
/// runtime; a current-thread one is enough.
pub async fn run(opts: &RunOptions) -> Result<RunSummary> {
    if opts.texts.is_empty() {
        bail!("no messages to send");
    }
    let client = Client::new(&opts.base_url)?;
    let held = match opts.idle_connections {
        0 => None,
        n => Some(Held::open(&opts.base_url, n, opts.server_pid).await?),
    };
    let start = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(opts.late_threshold)));
    let segments = opts
        .switches
        .as_ref()
        .map(|_| Arc::new(Segments::default()));
    let shared = Arc::new(Shared {
        client,
        opts: opts.clone(),
        recorder: recorder.clone(),
        segments: segments.clone(),
        quota: Quota::new(opts.max_requests),
        warm_end: start + opts.warmup,
        end: start + opts.warmup + opts.duration,
    });
    let label = match &opts.load {
        Load::Closed { users, .. } => format!("closed {users} users"),
        Load::Open { rate, .. } => format!("open {rate:.1} rps"),
    };
    let counts = recorder.clone();
    let progress = Progress::start(
        opts.progress,
        label,
        start,
        opts.warmup + opts.duration,
        move || {
            let r = counts.lock().expect("recorder lock");
            format!(
                "ok {} err {} late {}",
                r.successes(),
                r.error_count(),
                r.late_sends()
            )
        },
    );
    let mut summary = RunSummary {
        mix: opts.mix.to_string(),
        warmup_s: opts.warmup.as_secs_f64(),
        ..RunSummary::default()
    };
    let switcher = match (&opts.switches, &segments) {
        (Some(plan), Some(seg)) => Some(tokio::spawn(seg.clone().drive(
            plan.clone(),
            shared.warm_end,
            shared.end,
        ))),
        _ => None,
    };
    let scheduled = match opts.load {
        Load::Closed { users, think_time } => {
            summary.mode = "closed".into();
            summary.users = Some(users);
            summary.think_time_ms = Some(think_time.as_secs_f64() * 1000.0);
            closed_loop(&shared, users, think_time).await;
            None
        }
        Load::Open { rate, arrival } => {
            summary.mode = "open".into();
            summary.target_rate = Some(rate);
            summary.arrival = Some(arrival);
            Some(open_loop(&shared, rate, arrival).await)
        }
    };
    drop(progress);
    // A run cut short by `max_requests` is measured over the time it took.
    let window = Instant::now()
        .min(shared.end)
        .saturating_duration_since(shared.warm_end);
    summary.window_s = window.as_secs_f64();
    summary.offered_rps = scheduled.map(|n| n as f64 / window.as_secs_f64().max(1e-9));
    summary.totals = recorder.lock().expect("recorder lock").totals(window);
    if let (Some(task), Some(seg)) = (switcher, &segments) {
        task.await??;
        let window_end = shared.warm_end + window;
        summary.segments = seg.summarise(shared.warm_end, window_end, opts.late_threshold);
    }
    if let Some(held) = held {
        summary.idle = Some(held.finish().await);
    }
    Ok(summary)
}

/// Each user sends, waits for the answer, thinks, and repeats until the end.
async fn closed_loop(shared: &Arc<Shared>, users: usize, think_time: Duration) {
    let mut handles = Vec::with_capacity(users);
    for u in 0..users.max(1) {
        let shared = shared.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(shared.opts.seed.wrapping_add(u as u64));
            // Users start at spread-out places in the corpus so they do not
            // all send the same message at once.
            let mut i = u * shared.opts.texts.len() / users.max(1);
            loop {
                let now = Instant::now();
                if now >= shared.end || !shared.quota.claim(now >= shared.warm_end) {
                    break;
                }
                let endpoint = shared.opts.mix.pick(&mut rng);
                let outcome = shared
                    .client
                    .send(endpoint, shared.text(i), shared.opts.request_timeout)
                    .await;
                let done = Instant::now();
                shared.record(&Sample {
                    endpoint,
                    scheduled: now,
                    sent: now,
                    done,
                    outcome,
                });
                i += 1;
                if !think_time.is_zero() {
                    tokio::time::sleep_until(shared.end.min(done + think_time).into()).await;
                }
            }
        }));
    }
    for h in handles {
        // A panicking user task is a bug in this crate; surface it.
        h.await.expect("user task panicked");
    }
}

/// Sends on the schedule, never waiting for answers; returns the number of
/// sends scheduled inside the measured window.
async fn open_loop(shared: &Arc<Shared>, rate: f64, arrival: Arrival) -> u64 {
    let opts = &shared.opts;
    let start = shared.warm_end - opts.warmup;
    let (from, to) = (opts.warmup, opts.warmup + opts.duration);
    let inflight = Arc::new(Semaphore::new(opts.max_inflight.max(1)));
    let mut schedule = Schedule::new(arrival, rate, opts.seed);
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5eed);
    let mut in_window = 0u64;
    let mut i = 0usize;
    while let Some(offset) = schedule.next() {
        if offset >= to {
            break;
        }
        let scheduled = start + offset;
        let measured = offset >= from;
        if !shared.quota.claim(measured) {
            break;
        }
        in_window += u64::from(measured);
        tokio::time::sleep_until(scheduled.into()).await;
        // At the in-flight cap we wait, and every later send becomes late;
        // if the run ends first, the sends still owed are counted as unsent.
        let permit = match tokio::time::timeout_at(
            shared.end.into(),
            inflight.clone().acquire_owned(),
        )
        .await
        {
            Ok(p) => p.expect("semaphore is never closed"),
            Err(_) => {
                let left = remaining_in(offset, &mut schedule, from, to);
                let owed = left - u64::from(measured);
                in_window += owed;
                let mut r = shared.recorder.lock().expect("recorder lock");
                r.record_unsent(left);
                break;
            }
        };
        let endpoint = opts.mix.pick(&mut rng);
        let shared = shared.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = shared
                .client
                .send(endpoint, shared.text(i), shared.opts.request_timeout)
                .await;
            shared.record(&Sample {
                endpoint,
                scheduled,
                sent,
                done: Instant::now(),
                outcome,
            });
            drop(permit);
        });
        i += 1;
    }
    // Every task holds a permit: owning them all means all have finished.
    // Each is bounded by the request timeout, so this wait is too.
    let all = u32::try_from(opts.max_inflight.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        opts.request_timeout + Duration::from_secs(1),
        inflight.acquire_many(all),
    )
    .await;
    in_window
}
