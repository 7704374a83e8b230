//! One streaming run against a running server: a closed loop of N
//! conversations (each sends its next message when its previous stream
//! ended) or an open loop (arrivals on a schedule, whatever the server
//! does), a warm-up whose streams are not counted, then a measured window.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Semaphore;

use super::options::StreamOptions;
use super::recorder::StreamRecorder;
use super::request;
use super::server_metrics::Watch;
use super::summary::StreamSummary;
use super::trace::End;
use crate::client::Client;
use crate::progress::Progress;
use crate::run::Load;
use crate::schedule::{remaining_in, Quota, Schedule};

/// After a 429 a conversation waits this long before its next message, so
/// a full server is not hammered by a client spinning on refusals.
pub const REJECT_PAUSE: Duration = Duration::from_millis(100);

/// State shared by every stream of a run.
struct Shared {
    client: Client,
    opts: StreamOptions,
    recorder: Arc<Mutex<StreamRecorder>>,
    /// Measured sends left to start (`max_requests`).
    quota: Quota,
    warm_end: Instant,
    end: Instant,
}

impl Shared {
    /// The body of message `i`, with its `max_tokens` drawn from `rng`.
    fn body(&self, i: usize, rng: &mut StdRng) -> Vec<u8> {
        let prompts = &self.opts.prompts;
        let max_tokens = self.opts.max_tokens.draw(rng);
        self.opts.chat.body(&prompts[i % prompts.len()], max_tokens)
    }

    /// Sends one stream and accounts it.
    async fn stream(&self, body: Vec<u8>, scheduled: Instant) -> End {
        let t = request::send(&self.client, body, scheduled, self.opts.request_timeout).await;
        self.recorder.lock().expect("recorder lock").record(&t);
        t.end
    }
}

/// Runs one streaming load test and summarises it, with the server's own
/// figures from `/metrics` where it has them.
///
/// Bounded: it returns at most `warmup + duration + request_timeout` (plus
/// a few seconds for the last scrape) after it starts.
pub async fn run(opts: &StreamOptions) -> Result<StreamSummary> {
    if opts.prompts.is_empty() {
        bail!("no messages to send");
    }
    request::check(&opts.chat)?;
    let client = Client::new(&opts.base_url)?;
    let start = Instant::now();
    let (warm_end, end) = (start + opts.warmup, start + opts.warmup + opts.duration);
    let recorder = Arc::new(Mutex::new(StreamRecorder::new(
        opts.late_threshold,
        warm_end,
        end,
    )));
    let shared = Arc::new(Shared {
        client: client.clone(),
        opts: opts.clone(),
        recorder: recorder.clone(),
        quota: Quota::new(opts.max_requests),
        warm_end,
        end,
    });
    let watch = Watch::start(
        client.clone(),
        opts.metrics_prefixes.clone(),
        warm_end,
        opts.metrics_every,
    );
    let label = match &opts.load {
        Load::Closed { users, .. } => format!("stream closed {users}"),
        Load::Open { rate, .. } => format!("stream open {rate:.2}/s"),
    };
    let counts = recorder.clone();
    let progress = Progress::start(
        opts.progress,
        label,
        start,
        opts.warmup + opts.duration,
        move || {
            let status = counts.lock().expect("recorder lock").status();
            // Past the window, streams already sent run to their end.
            if Instant::now() >= end {
                format!("{status}, finishing the streams in flight")
            } else {
                status
            }
        },
    );
    let scheduled = match opts.load {
        Load::Closed { users, think_time } => {
            closed_loop(&shared, users, think_time).await;
            None
        }
        Load::Open { rate, arrival } => {
            Some(open_loop(&shared, Schedule::new(arrival, rate, opts.seed)).await)
        }
    };
    drop(progress);
    // A run cut short by `max_requests` is measured over the time it took.
    let window = Instant::now().min(end).saturating_duration_since(warm_end);
    let server = watch.finish(&client, &opts.metrics_prefixes).await;
    let totals = recorder.lock().expect("recorder lock").totals(window);
    Ok(StreamSummary::new(opts, window, scheduled, totals, server))
}

/// Each conversation sends, reads the whole stream, thinks, and repeats
/// until the end.
async fn closed_loop(shared: &Arc<Shared>, streams: usize, think_time: Duration) {
    let streams = streams.max(1);
    let mut handles = Vec::with_capacity(streams);
    for u in 0..streams {
        let shared = shared.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(shared.opts.seed.wrapping_add(u as u64));
            // Conversations start at spread-out places in the corpus so
            // they do not all send the same message at once.
            let mut i = u * shared.opts.prompts.len() / streams;
            loop {
                let now = Instant::now();
                if now >= shared.end || !shared.quota.claim(now >= shared.warm_end) {
                    break;
                }
                let end = shared.stream(shared.body(i, &mut rng), now).await;
                i += 1;
                let pause = match end {
                    End::Status(429) => REJECT_PAUSE.max(think_time),
                    _ => think_time,
                };
                if !pause.is_zero() {
                    tokio::time::sleep_until(shared.end.min(Instant::now() + pause).into()).await;
                }
            }
        }));
    }
    for h in handles {
        // A panicking conversation is a bug in this crate; surface it.
        h.await.expect("conversation task panicked");
    }
}

/// Sends on the schedule, never waiting for streams to end; returns the
/// number of sends scheduled inside the measured window.
async fn open_loop(shared: &Arc<Shared>, mut schedule: Schedule) -> u64 {
    let opts = &shared.opts;
    let start = shared.warm_end - opts.warmup;
    let (from, to) = (opts.warmup, opts.warmup + opts.duration);
    let inflight = Arc::new(Semaphore::new(opts.max_inflight.max(1)));
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5eed);
    let (mut in_window, mut i) = (0u64, 0usize);
    while let Some(offset) = schedule.next() {
        if offset >= to {
            break;
        }
        let measured = offset >= from;
        if !shared.quota.claim(measured) {
            break;
        }
        in_window += u64::from(measured);
        let scheduled = start + offset;
        // Drawn in schedule order, before any wait, so a run repeats.
        let body = shared.body(i, &mut rng);
        i += 1;
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = tokio::time::timeout_at(shared.end.into(), inflight.clone().acquire_owned());
        let Ok(permit) = permit.await else {
            // At the cap until the end: the sends still owed never left.
            let left = remaining_in(offset, &mut schedule, from, to);
            in_window += left - u64::from(measured);
            shared
                .recorder
                .lock()
                .expect("recorder lock")
                .record_unsent(left);
            break;
        };
        let permit = permit.expect("semaphore is never closed");
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.stream(body, scheduled).await;
            drop(permit);
        });
    }
    // Every stream holds a permit: owning them all means all have ended.
    // Each is bounded by the request timeout, so this wait is too.
    let all = u32::try_from(opts.max_inflight.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        opts.request_timeout + Duration::from_secs(1),
        inflight.acquire_many(all),
    )
    .await;
    in_window
}
