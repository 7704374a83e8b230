//! The server's own figures during a streaming run, from `/metrics`:
//! scraped when the measured window opens, every few seconds during it
//! (gauges such as active sequences only mean something under load), and
//! after the run. Generic: every series whose name starts with one of the
//! prefixes is kept (concur's `concur_generation_*`, llama-server's
//! `llamacpp:*`); a server without `/metrics`, or without those series,
//! gives an empty result and an error note, never a failed run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::prom::{Hist, Sample, Scrape};

/// The prefixes kept when none are given.
pub const DEFAULT_PREFIXES: [&str; 2] = ["concur_generation_", "llamacpp:"];

/// A histogram's observations between the first and last scrape, summed
/// over its label sets, in the metric's own unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistFigures {
    /// Observations.
    pub count: f64,
    /// Mean observation.
    pub mean: Option<f64>,
    /// Median (bucket estimate, as PromQL's `histogram_quantile`).
    pub p50: Option<f64>,
    /// 90th percentile (bucket estimate).
    pub p90: Option<f64>,
    /// 99th percentile (bucket estimate).
    pub p99: Option<f64>,
}

/// A gauge over the scrapes taken inside the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GaugeFigures {
    /// Mean of the sampled values.
    pub mean: f64,
    /// Largest sampled value.
    pub max: f64,
    /// The value after the run.
    pub last: f64,
}

/// What the server said about the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFigures {
    /// Successful scrapes.
    pub scrapes: usize,
    /// Why a scrape failed, if one did (the first such reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Histograms by name.
    pub histograms: BTreeMap<String, HistFigures>,
    /// Counters (`*_total`) by series: their increase over the window.
    pub counters: BTreeMap<String, f64>,
    /// Every other series, taken as a gauge.
    pub gauges: BTreeMap<String, GaugeFigures>,
}

/// A running watch; [`Watch::finish`] takes the last scrape and summarises.
pub struct Watch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<(Vec<Scrape>, Option<String>)>,
}

impl Watch {
    /// Scrapes at `from` and then every `every` (never, if zero) until
    /// [`Watch::finish`]. Each scrape is bounded by a short timeout.
    pub fn start(client: Client, prefixes: Vec<String>, from: Instant, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut scrapes, mut error) = (Vec::new(), None);
            tokio::select! {
                _ = tokio::time::sleep_until(from.into()) => {}
                _ = &mut stopped => {}
            }
            loop {
                match scrape(&client, &prefixes).await {
                    Ok(s) => scrapes.push(s),
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
                if every.is_zero() {
                    let _ = (&mut stopped).await;
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = &mut stopped => break,
                }
            }
            (scrapes, error)
        });
        Watch { stop, task }
    }

    /// Stops the watch, takes the after-run scrape and summarises.
    pub async fn finish(self, client: &Client, prefixes: &[String]) -> ServerFigures {
        let _ = self.stop.send(());
        let (mut scrapes, mut error) = self.task.await.unwrap_or_default();
        match scrape(client, prefixes).await {
            Ok(s) => scrapes.push(s),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
        let mut figures = summarise(&scrapes);
        figures.error = error;
        figures
    }
}

/// One scrape of `/metrics`, keeping only the series of `prefixes`.
async fn scrape(client: &Client, prefixes: &[String]) -> Result<Scrape, String> {
    let text = client
        .get_ok("/metrics", Duration::from_secs(5))
        .await
        .map_err(|e| format!("{e:#}"))?;
    let all = Scrape::parse(&text).map_err(|e| format!("{e:#}"))?;
    Ok(all.retain(|s| prefixes.iter().any(|p| s.name.starts_with(p.as_str()))))
}

/// `name{a="x",b="y"}`, or the bare name without labels.
fn series_key(s: &Sample) -> String {
    if s.labels.is_empty() {
        return s.name.clone();
    }
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}{{{}}}", s.name, labels.join(","))
}

/// The figures from the scrapes in order: the first is the window's
/// start, the last the after-run one.
pub fn summarise(scrapes: &[Scrape]) -> ServerFigures {
    let mut out = ServerFigures {
        scrapes: scrapes.len(),
        ..ServerFigures::default()
    };
    let (Some(first), Some(last)) = (scrapes.first(), scrapes.last()) else {
        return out;
    };
    let mut hist_names: Vec<String> = last
        .samples
        .iter()
        .filter_map(|s| s.name.strip_suffix("_bucket").map(str::to_string))
        .collect();
    hist_names.dedup();
    for name in &hist_names {
        if let Some(after) = last.hist(name, &[]) {
            let d = after.delta(first.hist(name, &[]).as_ref());
            out.histograms.insert(name.clone(), hist_figures(&d));
        }
    }
    let is_hist_part = |name: &str| {
        ["_bucket", "_sum", "_count"].iter().any(|sfx| {
            name.strip_suffix(sfx)
                .is_some_and(|b| hist_names.iter().any(|h| h == b))
        })
    };
    // A gauge is taken while the load ran: every scrape but the after-run
    // one (or that one alone, if it is all there is).
    let during = &scrapes[..scrapes.len().saturating_sub(1).max(1)];
    for s in last.samples.iter().filter(|s| !is_hist_part(&s.name)) {
        let value_in = |scrape: &Scrape| {
            scrape
                .samples
                .iter()
                .find(|x| x.name == s.name && x.labels == s.labels)
                .map(|x| x.value)
        };
        if s.name.ends_with("_total") {
            let increase = s.value - value_in(first).unwrap_or(0.0);
            out.counters.insert(series_key(s), increase);
        } else {
            let values: Vec<f64> = during.iter().filter_map(value_in).collect();
            out.gauges
                .insert(series_key(s), gauge_figures(&values, s.value));
        }
    }
    out
}

fn hist_figures(d: &Hist) -> HistFigures {
    HistFigures {
        count: d.count,
        mean: d.mean(),
        p50: d.quantile(0.5),
        p90: d.quantile(0.9),
        p99: d.quantile(0.99),
    }
}

fn gauge_figures(values: &[f64], last: f64) -> GaugeFigures {
    GaugeFigures {
        mean: values.iter().sum::<f64>() / values.len().max(1) as f64,
        max: values.iter().copied().fold(f64::NAN, f64::max),
        last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text).unwrap()
    }

    #[test]
    fn histograms_counters_and_gauges_over_the_window() {
        let before = parse(
            "g_ttft_seconds_bucket{s=\"c\",le=\"0.1\"} 1\ng_ttft_seconds_bucket{s=\"c\",le=\"+Inf\"} 1\n\
             g_ttft_seconds_sum{s=\"c\"} 0.05\ng_ttft_seconds_count{s=\"c\"} 1\n\
             g_tokens_total{kind=\"prompt\"} 100\ng_active 0\n",
        );
        let during = parse("g_tokens_total{kind=\"prompt\"} 150\ng_active 4\n");
        let after = parse(
            "g_ttft_seconds_bucket{s=\"c\",le=\"0.1\"} 3\ng_ttft_seconds_bucket{s=\"c\",le=\"+Inf\"} 5\n\
             g_ttft_seconds_sum{s=\"c\"} 0.85\ng_ttft_seconds_count{s=\"c\"} 5\n\
             g_tokens_total{kind=\"prompt\"} 300\ng_tokens_total{kind=\"output\"} 40\ng_active 0\n",
        );
        let f = summarise(&[before, during, after]);
        assert_eq!(f.scrapes, 3);
        let h = &f.histograms["g_ttft_seconds"];
        assert_eq!(h.count, 4.0);
        assert!((h.mean.unwrap() - 0.2).abs() < 1e-12);
        assert!((h.p50.unwrap() - 0.1).abs() < 1e-12, "{h:?}");
        assert_eq!(f.counters["g_tokens_total{kind=\"prompt\"}"], 200.0);
        assert_eq!(
            f.counters["g_tokens_total{kind=\"output\"}"], 40.0,
            "new series"
        );
        let g = &f.gauges["g_active"];
        assert_eq!((g.mean, g.max, g.last), (2.0, 4.0, 0.0));
        assert!(!f.gauges.keys().any(|k| k.contains("ttft")), "{f:?}");
    }

    #[test]
    fn no_scrapes_no_figures() {
        let f = summarise(&[]);
        assert_eq!(f.scrapes, 0);
        assert!(f.histograms.is_empty() && f.counters.is_empty() && f.gauges.is_empty());
    }
}
