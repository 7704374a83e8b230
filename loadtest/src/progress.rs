//! A progress bar on stderr while a run is going, hidden when stderr is not
//! a terminal (CI logs, pipes) or when the caller turned it off.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

/// Redraws the bar, with the run's own status line, until dropped.
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar for a run of `total` length that began at `start`;
    /// `status` gives the text after the bar (counts so far), so any kind of
    /// run can show its own.
    pub fn start(
        enabled: bool,
        label: String,
        start: Instant,
        total: Duration,
        status: impl Fn() -> String + Send + 'static,
    ) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
            .expect("static template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        if bar.is_hidden() {
            return Progress { bar, ticker: None };
        }
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            // Five redraws a second is smooth enough and costs nothing
            // measurable next to the load itself.
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                b.set_position(start.elapsed().as_millis() as u64);
                b.set_message(status());
            }
        });
        Progress {
            bar,
            ticker: Some(ticker),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
