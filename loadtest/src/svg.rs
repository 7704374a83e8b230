//! The report's line charts as standalone SVG, drawn by plotters (its SVG backend: no
//! fonts or system libraries needed, and the files stay offline and diff-able): axes from
//! zero (or a logarithmic y axis), a legend, and an optional horizontal reference line (the
//! SLO).

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One line on a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points; drawn in x order.
    pub points: Vec<(f64, f64)>,
    /// Index into the palette, so related series can share a colour.
    pub color: usize,
    /// Dashed stroke (e.g. p50 next to a solid p99).
    pub dashed: bool,
}

/// A line chart.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Lines to draw.
    pub series: Vec<Series>,
    /// A labelled horizontal line at this y.
    pub hline: Option<(f64, String)>,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];
const SIZE: (u32, u32) = (760, 440);

/// Renders the chart as a standalone SVG document. Axes start at zero, so slopes and
/// ratios read honestly.
pub fn render(c: &Chart) -> String {
    render_with(c, false)
}

/// Renders the chart with a logarithmic y axis (x still from zero): for latencies that
/// span orders of magnitude, where a linear axis flattens every line but the slowest.
/// Points at or below zero have no place on it and are left out.
pub fn render_log_y(c: &Chart) -> String {
    render_with(c, true)
}

fn render_with(c: &Chart, log_y: bool) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        // The backend writes into a String: drawing has no way to fail but a plotters bug,
        // and a report with a blank chart beats a sweep that lost its results.
        if let Err(e) = draw(&root, c, log_y).and_then(|()| root.present()) {
            eprintln!("chart {:?}: {e}", c.title);
        }
    }
    out
}

/// The points of `s` that can be drawn, in x order.
fn drawable(s: &Series, log_y: bool) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0))
        .copied()
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Each series with its drawable points.
type Lines<'a> = Vec<(&'a Series, Vec<(f64, f64)>)>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &Chart,
    log_y: bool,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    // Series without a drawable point (a preset that failed) stay out of the legend too.
    let series: Lines = c
        .series
        .iter()
        .map(|s| (s, drawable(s, log_y)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let max_x = all().map(|p| p.0).fold(0.0, f64::max);
    let max_y = all()
        .map(|p| p.1)
        .chain(c.hline.as_ref().map(|h| h.0))
        .fold(0.0, f64::max);
    let top = |max: f64, headroom: f64| if max > 0.0 { max * headroom } else { 1.0 };
    let x_end = top(max_x, 1.05);
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&c.title, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64);
    if log_y {
        let min_y = all()
            .map(|p| p.1)
            .chain(c.hline.as_ref().map(|h| h.0).filter(|y| *y > 0.0))
            .fold(f64::INFINITY, f64::min);
        // Headroom for the legend in the upper left: a decade costs less height on a
        // log axis than on a linear one.
        let (y_start, y_end) = if min_y.is_finite() {
            (min_y / 1.5, max_y * 4.0)
        } else {
            (1.0, 10.0)
        };
        let y = (y_start..y_end).log_scale();
        plot(builder.build_cartesian_2d(0.0..x_end, y)?, c, series, x_end)
    } else {
        let y_end = top(max_y, 1.1);
        plot(
            builder.build_cartesian_2d(0.0..x_end, 0.0..y_end)?,
            c,
            series,
            x_end,
        )
    }
}

/// Draws the mesh, the reference line, the series and the legend on a built chart, of
/// either y scale.
fn plot<'a, DB, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    c: &Chart,
    series: Lines,
    x_end: f64,
) -> DrawResult<DB>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe5, 0xe5, 0xe5))
        .draw()?;
    if let Some((y, label)) = &c.hline {
        let style = ShapeStyle::from(RGBColor(0x55, 0x55, 0x55)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new([(0.0, *y), (x_end, *y)], 3, 4, style))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
    }
    for (s, points) in series {
        let color = PALETTE[s.color % PALETTE.len()];
        let style = ShapeStyle::from(color).stroke_width(2);
        let line = points.clone();
        let sample = move |(x, y): (i32, i32)| [(x, y), (x + 24, y)];
        // An empty label keeps the line out of the legend (a p50 drawn beside its p99,
        // when the title says which is dashed): fewer entries, less of the plot hidden.
        let labelled = !s.label.is_empty();
        if s.dashed {
            let drawn = chart.draw_series(DashedLineSeries::new(line, 6, 4, style))?;
            if labelled {
                drawn
                    .label(s.label.as_str())
                    .legend(move |c| DashedPathElement::new(sample(c), 6, 4, style));
            }
        } else {
            let drawn = chart.draw_series(LineSeries::new(line, style))?;
            if labelled {
                drawn
                    .label(s.label.as_str())
                    .legend(move |c| PathElement::new(sample(c), style));
            }
        }
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x99, 0x99, 0x99))
        .draw()?;
    Ok(())
}

/// A tick label without trailing zeros: 50, 2.5, 0.25.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> Chart {
        Chart {
            title: "p99 <&> p50".into(),
            x_label: "rps".into(),
            y_label: "ms".into(),
            series,
            hline: Some((100.0, "SLO".into())),
        }
    }

    #[test]
    fn renders_series_legend_and_escapes() {
        let svg = render(&chart(vec![
            Series {
                label: "rayon p99".into(),
                points: vec![(10.0, 5.0), (5.0, 2.0), (f64::NAN, 1.0)],
                color: 0,
                dashed: false,
            },
            Series {
                label: "failed preset".into(),
                points: vec![(f64::NAN, 1.0)],
                color: 1,
                dashed: false,
            },
        ]));
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("p99 &lt;&amp;&gt; p50"));
        assert!(svg.contains("rayon p99") && svg.contains("SLO"));
        assert!(
            !svg.contains("failed preset"),
            "no drawable point, no legend entry"
        );
        // The two finite points, and no NaN leaked into coordinates.
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn dashed_series_are_drawn_as_dashes() {
        let line = |dashed| {
            render(&chart(vec![Series {
                label: "p50".into(),
                points: vec![(0.0, 0.0), (100.0, 50.0)],
                color: 2,
                dashed,
            }]))
            .matches("<polyline")
            .count()
        };
        // A dashed line is many short segments; a solid one is one path (plus the legend's
        // sample and the SLO's dashes, the same in both).
        assert!(
            line(true) > line(false) + 5,
            "{} vs {}",
            line(true),
            line(false)
        );
    }

    #[test]
    fn ticks_lose_trailing_zeros() {
        assert_eq!([50.0, 2.5, 0.25, 0.0].map(tick), ["50", "2.5", "0.25", "0"]);
    }

    #[test]
    fn an_empty_chart_still_renders() {
        for svg in [render(&Chart::default()), render_log_y(&Chart::default())] {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        }
    }

    #[test]
    fn log_y_leaves_out_points_it_cannot_place_and_ticks_by_decade() {
        let series = |label: &str, dashed| Series {
            label: label.into(),
            points: vec![(1.0, 20.0), (4.0, 0.0), (16.0, 60000.0)],
            color: 0,
            dashed,
        };
        let mut c = chart(vec![series("ttft p99", false), series("", true)]);
        c.hline = None;
        let svg = render_log_y(&c);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4, "the zeros are left out");
        for decade in ["100", "1000", "10000"] {
            assert!(svg.lines().any(|l| l.trim() == decade), "no {decade} tick");
        }
        assert!(svg.contains("ttft p99"));
        // The unlabelled series draws its line but adds no legend entry: the legend
        // holds one sample line, solid.
        assert_eq!(
            render_log_y(&chart(vec![series("", true)]))
                .matches("ttft")
                .count(),
            0
        );
    }
}
