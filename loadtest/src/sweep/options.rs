//! What a sweep is asked to do.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::client::{Endpoint, Mix};
use crate::peer::PeerSpec;
use crate::schedule::Arrival;

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Everything a sweep needs. Build with [`SweepOptions::new`], then shrink
/// the bounds for tests (e.g. `step = 2 s`, `max_steps = 3`).
#[derive(Clone, Debug, Serialize)]
pub struct SweepOptions {
    /// The `concur` binary.
    pub concur_bin: PathBuf,
    /// Config presets, one server each, in order.
    pub configs: Vec<PathBuf>,
    /// Where report.md, the SVG charts, results.json and server logs go.
    pub out_dir: PathBuf,
    /// Messages to send (JSON lines of `{"text": ...}`).
    pub corpus: PathBuf,
    /// Endpoint mix of every step.
    pub mix: Mix,
    /// Arrival process of the open-loop steps.
    pub arrival: Arrival,
    /// Measured length of each step.
    #[serde(serialize_with = "secs")]
    pub step: Duration,
    /// Warm-up of the closed-loop probe that opens each preset (discarded).
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    /// Users of the closed-loop probe whose throughput seeds the search.
    pub probe_users: usize,
    /// Users of the closed-loop saturation step (zero think time) run after
    /// the fractions; its deep queue lets a length-aware batcher form the
    /// batches `concur bench` forms. 0 skips the step.
    pub saturation_users: usize,
    /// The search starts at this fraction of the probe's throughput.
    pub start_fraction: f64,
    /// Rate multiplier while steps pass.
    pub ramp: f64,
    /// Bisection stops when the bracket is this close (relative).
    pub precision: f64,
    /// Most search steps per preset (ramp and bisection together). 0 skips
    /// the probe, the search and the fractions.
    pub max_steps: usize,
    /// The latency target: a step passes if its client p99 is within it.
    #[serde(serialize_with = "secs")]
    pub slo_p99: Duration,
    /// A step fails if more than this fraction of sends was late or unsent.
    pub max_late_fraction: f64,
    /// A send later than this after its schedule counts as late.
    #[serde(serialize_with = "secs")]
    pub late_threshold: Duration,
    /// Client timeout per request.
    #[serde(serialize_with = "secs")]
    pub request_timeout: Duration,
    /// Open-loop cap on requests in flight.
    pub max_inflight: usize,
    /// Fractions of the found rate measured afterwards.
    pub fractions: Vec<f64>,
    /// Length of each `concur bench` run; 0 skips the engine ceiling.
    pub bench_seconds: u64,
    /// Light load: one closed-loop step (zero think time) per user count,
    /// for every preset and peer. Empty skips them (the library default, so
    /// existing callers keep their step count; the CLI defaults to 1,4,16,64).
    pub users: Vec<usize>,
    /// Warm-up of each light-load step and of the ceiling step (discarded).
    #[serde(serialize_with = "secs")]
    pub users_warmup: Duration,
    /// Open-loop steps per preset and peer, one at each of these fractions
    /// of the first preset's `concur bench`, in order (the CLI's default is
    /// 0.5, 0.65, 0.8: where the latency targets are set). Empty skips them.
    pub open_fractions_of_ceiling: Vec<f64>,
    /// External servers measured with the light-load and ceiling steps.
    pub peers: Vec<PeerSpec>,
    /// How long a peer may take to answer `GET /health` with 200.
    #[serde(serialize_with = "secs")]
    pub peer_ready_timeout: Duration,
    /// After SIGTERM, how long a peer's process group may take to exit
    /// before it gets SIGKILL.
    #[serde(serialize_with = "secs")]
    pub peer_stop_grace: Duration,
    /// The command line that started the sweep, for the report (empty when
    /// the sweep was started from code).
    pub invocation: Vec<String>,
    /// Idle single-request run: at most this many requests...
    pub idle_max_requests: u64,
    /// ...and at most this long.
    #[serde(serialize_with = "secs")]
    pub idle_max: Duration,
    /// How long a server may take to answer `/ready`.
    #[serde(serialize_with = "secs")]
    pub ready_timeout: Duration,
    /// Seed of every run.
    pub seed: u64,
    /// Progress bars on stderr.
    #[serde(skip)]
    pub progress: bool,
}

impl SweepOptions {
    /// Defaults sized for a real comparison on a 2-core machine (about 2-3
    /// minutes per preset): 10 s steps, at most 8 search steps, p99 target
    /// 100 ms, fractions 0.25/0.5/0.75/0.9, a 256-user saturation step, 10 s
    /// of `concur bench`; no light-load steps (2 s warm-up each when
    /// enabled), no ceiling steps, no peers.
    pub fn new(
        concur_bin: PathBuf,
        configs: Vec<PathBuf>,
        out_dir: PathBuf,
        corpus: PathBuf,
    ) -> Self {
        SweepOptions {
            concur_bin,
            configs,
            out_dir,
            corpus,
            mix: Mix::only(Endpoint::Embeddings),
            arrival: Arrival::Poisson,
            step: Duration::from_secs(10),
            warmup: Duration::from_secs(5),
            probe_users: 8,
            saturation_users: 256,
            start_fraction: 0.5,
            ramp: 1.4,
            precision: 0.05,
            max_steps: 8,
            slo_p99: Duration::from_millis(100),
            max_late_fraction: 0.01,
            late_threshold: Duration::from_millis(10),
            request_timeout: Duration::from_secs(10),
            max_inflight: 1024,
            fractions: vec![0.25, 0.5, 0.75, 0.9],
            bench_seconds: 10,
            users: Vec::new(),
            users_warmup: Duration::from_secs(2),
            open_fractions_of_ceiling: Vec::new(),
            peers: Vec::new(),
            peer_ready_timeout: Duration::from_secs(120),
            peer_stop_grace: Duration::from_secs(10),
            invocation: Vec::new(),
            idle_max_requests: 1000,
            idle_max: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(120),
            seed: 1,
            progress: false,
        }
    }
}
