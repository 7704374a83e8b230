//! The generation sweep's charts: output tokens/s, TTFT and ITL against
//! concurrent streams (closed loop, max_tokens 128), one colour per server.
//! A run that is missing, unreadable or (for latencies) finished no stream
//! leaves a gap rather than a zero, so a line never dips to a figure that
//! was not measured.

use super::{stream_counts, Runs, Server, SERVERS};
use crate::stats::LatencySummary;
use crate::stream::StreamSummary;
use crate::svg::{self, Chart, Series};

/// One chart of the report: its file name, the text standing for it in
/// the README, and how it is drawn.
pub struct ChartFile {
    /// File name beside the README.
    pub file: &'static str,
    /// Alt text of the README's image.
    pub alt: &'static str,
    /// Builds the chart from the runs.
    pub chart: fn(&Runs) -> Chart,
    /// A logarithmic y axis: latencies of the four servers span orders of
    /// magnitude (10 ms to a minute at 16 streams), and on a linear axis the
    /// slowest line flattens the others into the floor.
    pub log_y: bool,
}

impl ChartFile {
    /// The chart of `runs` as an SVG document.
    pub fn render(&self, runs: &Runs) -> String {
        let chart = (self.chart)(runs);
        match self.log_y {
            true => svg::render_log_y(&chart),
            false => svg::render(&chart),
        }
    }
}

/// Every chart, in README order.
pub const CHARTS: [ChartFile; 3] = [
    ChartFile {
        file: "generation_tokens_per_s.svg",
        alt: "output tokens/s against concurrent streams",
        chart: tokens_chart,
        log_y: false,
    },
    ChartFile {
        file: "generation_ttft.svg",
        alt: "TTFT p50 and p99 against concurrent streams",
        chart: ttft_chart,
        log_y: true,
    },
    ChartFile {
        file: "generation_itl.svg",
        alt: "ITL p50 and p99 against concurrent streams",
        chart: itl_chart,
        log_y: true,
    },
];

const X_LABEL: &str = "concurrent streams (closed loop, max_tokens 128)";

/// `(streams, y)` for each stream count where `y` gives a figure.
fn points(runs: &Runs, s: Server, y: impl Fn(&StreamSummary) -> Option<f64>) -> Vec<(f64, f64)> {
    stream_counts(runs)
        .into_iter()
        .filter_map(|n| Some((n as f64, y(runs.ok(&format!("{}-{n}", s.prefix))?)?)))
        .collect()
}

/// Output tokens/s against streams.
pub fn tokens_chart(runs: &Runs) -> Chart {
    let series = SERVERS
        .iter()
        .enumerate()
        .map(|(i, s)| Series {
            label: s.label.into(),
            points: points(runs, *s, |r| Some(r.totals.output_tokens_per_s)),
            color: i,
            dashed: false,
        })
        .collect();
    Chart {
        title: "Output tokens/s against concurrent streams".into(),
        x_label: X_LABEL.into(),
        y_label: "output tokens/s".into(),
        series,
        hline: None,
    }
}

/// A percentile of `l`; none when no stream finished, as then every
/// percentile is a zero that was never measured.
fn measured(l: &LatencySummary, q: fn(&LatencySummary) -> f64) -> Option<f64> {
    (l.count > 0).then(|| q(l))
}

/// p99 (solid) and p50 (dashed) of one latency, a pair per server in one
/// colour. Only the p99 is in the legend (the title says which is dashed):
/// eight entries would hide the upper left of the plot.
fn latency_series(runs: &Runs, latency: fn(&StreamSummary) -> &LatencySummary) -> Vec<Series> {
    let mut series = Vec::new();
    for (i, s) in SERVERS.iter().enumerate() {
        let p99 = points(runs, *s, |r| measured(latency(r), |l| l.p99_ms));
        let p50 = points(runs, *s, |r| measured(latency(r), |l| l.p50_ms));
        for (label, points, dashed) in [(s.label, p99, false), ("", p50, true)] {
            series.push(Series {
                label: label.into(),
                points,
                color: i,
                dashed,
            });
        }
    }
    series
}

/// Time to first token against streams.
pub fn ttft_chart(runs: &Runs) -> Chart {
    Chart {
        title: "Time to first token against concurrent streams (p99 solid, p50 dashed)".into(),
        x_label: X_LABEL.into(),
        y_label: "TTFT (ms, log scale)".into(),
        series: latency_series(runs, |r| &r.totals.ttft),
        hline: None,
    }
}

/// Inter-token latency against streams.
pub fn itl_chart(runs: &Runs) -> Chart {
    Chart {
        title: "Inter-token latency against concurrent streams (p99 solid, p50 dashed)".into(),
        x_label: X_LABEL.into(),
        y_label: "ITL (ms, log scale)".into(),
        series: latency_series(runs, |r| &r.totals.itl),
        hline: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genreport::tables::tests::{run, runs};

    #[test]
    fn one_line_per_server_with_gaps_for_missing_runs() {
        let r = runs(vec![
            ("concur-continuous-1", run(10.0, 100.0, 20.0)),
            ("concur-continuous-16", run(200.0, 900.0, 40.0)),
            ("llama-16", run(150.0, 700.0, 60.0)),
        ]);
        let c = tokens_chart(&r);
        assert_eq!(c.series.len(), SERVERS.len());
        assert_eq!(c.series[0].points, [(1.0, 10.0), (16.0, 200.0)]);
        assert_eq!(c.series[3].label, "llama-server");
        assert_eq!(c.series[3].points, [(16.0, 150.0)]);
        assert!(c.series[1].points.is_empty(), "static not run");
    }

    #[test]
    fn latency_charts_pair_p99_and_p50_and_skip_runs_without_streams() {
        let mut failed = run(0.0, 0.0, 0.0);
        failed.totals.ttft = LatencySummary::default();
        let r = runs(vec![
            ("concur-static-4", run(50.0, 300.0, 20.0)),
            ("concur-static-16", failed),
        ]);
        let c = ttft_chart(&r);
        assert_eq!(c.series.len(), 2 * SERVERS.len());
        let (p99, p50) = (&c.series[2], &c.series[3]);
        assert_eq!(p99.label, "concur static");
        assert_eq!(p50.label, "", "p50s stay out of the legend");
        assert_eq!(p99.points, [(4.0, 300.0)]);
        assert!(p50.dashed && !p99.dashed && p50.color == p99.color);
        assert_eq!(p50.points, [(4.0, 150.0)]);
        assert_eq!(
            tokens_chart(&r).series[1].points.len(),
            2,
            "0 tokens/s is drawn"
        );
    }
}
