//! Hand-written SVG line charts: axes with round-number ticks, labels, a
//! legend, and an optional horizontal reference line (the SLO).

use std::fmt::Write;

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

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Escapes text for SVG content and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round tick spacing (1, 2 or 5 times a power of ten) giving about
/// `target` ticks between 0 and `max`.
pub fn tick_step(max: f64, target: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_tick(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Renders the chart as a standalone SVG document. Axes start at zero, so
/// slopes and ratios read honestly.
pub fn render(c: &Chart) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let pts = || c.series.iter().flat_map(|s| s.points.iter()).filter(finite);
    let max_x = pts().map(|p| p.0).fold(0.0, f64::max);
    let max_y = pts()
        .map(|p| p.1)
        .chain(c.hline.as_ref().map(|h| h.0))
        .fold(0.0, f64::max);
    let (xs, ys) = (tick_step(max_x * 1.05, 6), tick_step(max_y * 1.1, 6));
    let x_end = (max_x * 1.05 / xs).ceil().max(1.0) * xs;
    let y_end = (max_y * 1.1 / ys).ceil().max(1.0) * ys;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + x / x_end * pw;
    let py = |y: f64| TOP + ph - y / y_end * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        LEFT + pw / 2.0,
        escape(&c.title)
    );
    // Grid and tick labels.
    let mut t = 0.0;
    while t <= x_end + xs * 0.01 {
        let x = px(t);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            fmt_tick(t)
        );
        t += xs;
    }
    let mut t = 0.0;
    while t <= y_end + ys * 0.01 {
        let y = py(t);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
        t += ys;
    }
    let _ = writeln!(
        o,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 18.0,
        escape(&c.x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        escape(&c.y_label)
    );
    if let Some((y, label)) = &c.hline {
        let yy = py(*y);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#555" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
            LEFT + pw,
            LEFT + 6.0,
            yy - 4.0,
            escape(label)
        );
    }
    // Series without a drawable point (a preset that failed) stay out of
    // the legend too.
    let drawn = c
        .series
        .iter()
        .filter(|s| s.points.iter().any(|p| finite(&p)));
    for (i, s) in drawn.enumerate() {
        let color = PALETTE[s.color % PALETTE.len()];
        let dash = if s.dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let mut points: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for &(x, y) in &points {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                px(x),
                py(y)
            );
        }
        // Legend entry.
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 26.0,
            lx + 32.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0, 5), 20.0);
        assert_eq!(tick_step(7.0, 6), 2.0);
        assert!((tick_step(0.3, 6) - 0.05).abs() < 1e-12);
        assert_eq!(tick_step(0.0, 5), 1.0);
    }

    #[test]
    fn renders_series_legend_and_escapes() {
        let svg = render(&Chart {
            title: "p99 <&> p50".into(),
            x_label: "rps".into(),
            y_label: "ms".into(),
            series: vec![Series {
                label: "rayon p99".into(),
                points: vec![(10.0, 5.0), (5.0, 2.0), (f64::NAN, 1.0)],
                color: 0,
                dashed: true,
            }],
            hline: Some((100.0, "SLO".into())),
        });
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("p99 &lt;&amp;&gt; p50"));
        assert!(svg.contains("rayon p99"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("stroke-dasharray=\"6,4\""));
    }
}
