//! One load step against a running server (concur or a peer), and the
//! light-load steps both kinds of server get.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::breakdown::breakdown;
use crate::client::Client;
use crate::prom::Scrape;
use crate::run::{self, Load, RunOptions};

use super::results::{closed_loop_verdict, verdict, CeilingRate, Step};
use super::SweepOptions;

/// What every step against one server shares.
pub(super) struct Ctx<'a> {
    pub opts: &'a SweepOptions,
    pub texts: Arc<Vec<String>>,
    pub base: String,
    pub client: Client,
    /// Scrape `/metrics` around each step (concur); peers have none.
    pub metrics: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(
        opts: &'a SweepOptions,
        texts: &Arc<Vec<String>>,
        base: &str,
        metrics: bool,
    ) -> Result<Self> {
        Ok(Ctx {
            opts,
            texts: texts.clone(),
            base: base.to_string(),
            client: Client::new(base)?,
            metrics,
        })
    }

    pub fn open(&self, rate: f64) -> Load {
        Load::Open {
            rate,
            arrival: self.opts.arrival,
        }
    }

    async fn scrape(&self) -> Option<Scrape> {
        if !self.metrics {
            return None;
        }
        let text = self
            .client
            .get_ok("/metrics", Duration::from_secs(5))
            .await
            .ok()?;
        Scrape::parse(&text).ok()
    }

    /// Runs one step: `step` long (`idle_max` for `idle`) after `warmup`,
    /// with the server's breakdown when it has `/metrics`.
    pub async fn step(
        &self,
        kind: &str,
        fraction: Option<f64>,
        load: Load,
        warmup: Duration,
        max_requests: Option<u64>,
    ) -> Result<Step> {
        let o = self.opts;
        let mut run_opts = RunOptions::new(self.base.clone(), self.texts.clone(), load);
        run_opts.mix = o.mix.clone();
        run_opts.warmup = warmup;
        run_opts.duration = if kind == "idle" { o.idle_max } else { o.step };
        run_opts.request_timeout = o.request_timeout;
        run_opts.max_requests = max_requests;
        run_opts.max_inflight = o.max_inflight;
        run_opts.late_threshold = o.late_threshold;
        run_opts.seed = o.seed;
        run_opts.progress = o.progress;
        // Let the previous step's stragglers leave the server's queue.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = self.scrape().await;
        let client = run::run(&run_opts).await?;
        let after = self.scrape().await;
        let (checked, ok) = if matches!(kind, "saturation" | "users") {
            (
                closed_loop_verdict(&client.totals),
                "ok (no latency target)",
            )
        } else {
            (
                verdict(&client.totals, o.slo_p99, o.max_late_fraction),
                "ok",
            )
        };
        Ok(Step {
            kind: kind.to_string(),
            fraction,
            pass: checked.is_ok(),
            verdict: checked.err().unwrap_or_else(|| ok.into()),
            client,
            server: before.zip(after).map(|(b, a)| breakdown(&b, &a)),
        })
    }

    /// The light-load view: a closed loop with no think time at each
    /// `users` count, then an open-loop step at each ceiling rate.
    pub async fn light_load(&self, ceilings: &[CeilingRate], steps: &mut Vec<Step>) -> Result<()> {
        for &users in &self.opts.users {
            let load = Load::Closed {
                users: users.max(1),
                think_time: Duration::ZERO,
            };
            let warmup = self.opts.users_warmup;
            steps.push(self.step("users", None, load, warmup, None).await?);
        }
        for c in ceilings {
            let (load, warmup) = (self.open(c.rate), self.opts.users_warmup);
            let fraction = Some(c.fraction);
            steps.push(self.step("ceiling", fraction, load, warmup, None).await?);
        }
        Ok(())
    }
}
