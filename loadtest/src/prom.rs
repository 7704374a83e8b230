//! Prometheus text-format parsing, scrape deltas, and quantile estimates
//! from histogram buckets (the same linear interpolation as PromQL's
//! `histogram_quantile`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, with any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Label pairs, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// All samples of one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    /// Samples in the order they appeared.
    pub samples: Vec<Sample>,
}

/// A histogram summed over every series that matched, with cumulative
/// bucket counts as Prometheus exposes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    /// `(upper bound, cumulative count)`, ascending; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Scrape {
    /// Parses the text exposition format; comments and blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_line(line).with_context(|| format!("metrics line {}", n + 1))?);
        }
        Ok(Scrape { samples })
    }

    /// Keeps only the samples `keep` accepts (e.g. the inference routes).
    pub fn retain(mut self, keep: impl Fn(&Sample) -> bool) -> Self {
        self.samples.retain(|s| keep(s));
        self
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of every series of `name` whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|s| s.value).sum()
    }

    /// Sums of `name` grouped by the value of `label` (e.g. rejections by reason).
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.matching(name, &[]) {
            let key = s.labels.get(label).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += s.value;
        }
        out
    }

    /// The histogram `name` summed over every series matching `filter`,
    /// or `None` if it is not exposed.
    pub fn hist(&self, name: &str, filter: &[(&str, &str)]) -> Option<Hist> {
        let bucket_name = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.matching(&bucket_name, filter) {
            let le = parse_value(s.labels.get("le")?).ok()?;
            // Key by the float's ordered bit pattern so equal bounds from
            // different series merge and the map sorts ascending.
            let entry = by_le.entry(ordered_bits(le)).or_insert((le, 0.0));
            entry.1 += s.value;
        }
        if by_le.is_empty() {
            return None;
        }
        Some(Hist {
            buckets: by_le.into_values().collect(),
            sum: self.sum(&format!("{name}_sum"), filter),
            count: self.sum(&format!("{name}_count"), filter),
        })
    }
}

fn ordered_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

impl Hist {
    /// `self - before`: the observations made between two scrapes. Buckets
    /// missing from `before` count as zero (the series did not exist yet).
    pub fn delta(&self, before: Option<&Hist>) -> Hist {
        let Some(before) = before else {
            return self.clone();
        };
        let prev = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Hist {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, c - prev(le)))
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// Mean observation, if any were made.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Estimates the `q` quantile by linear interpolation inside the bucket
    /// that holds it, assuming observations are spread evenly there. The
    /// lowest bucket starts at 0; a quantile in `+Inf` returns the highest
    /// finite bound, as PromQL does.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0); // (bound, cumulative count) below the bucket
        for &(le, cum) in &self.buckets {
            if cum >= rank && cum > lower.1 {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let frac = (rank - lower.1) / (cum - lower.1);
                let start = if lower.0 > le { 0.0 } else { lower.0 };
                return Some(start + (le - start) * frac);
            }
            lower = (le, cum);
        }
        Some(lower.0)
    }

    /// Upper bound of the highest bucket that received an observation: a
    /// ceiling on the maximum, as precise as the bucket layout allows.
    pub fn max_bound(&self) -> Option<f64> {
        let mut prev = 0.0;
        let mut out = None;
        for &(le, cum) in &self.buckets {
            if cum > prev {
                out = Some(le);
            }
            prev = cum;
        }
        out
    }
}

fn parse_value(s: &str) -> Result<f64> {
    Ok(match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse().with_context(|| format!("bad value {s:?}"))?,
    })
}

fn parse_line(line: &str) -> Result<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("sample without value")?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // A timestamp may follow the value; it is not needed here.
    let value = rest
        .split_whitespace()
        .next()
        .context("sample without value")?;
    Ok(Sample {
        name,
        labels,
        value: parse_value(value)?,
    })
}

/// Parses `a="x",b="y"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').context("label without '='")?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start();
        let Some(body) = s.strip_prefix('"') else {
            bail!("label {key} value is not quoted");
        };
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated escape"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("unterminated label value"),
            }
        };
        labels.insert(key, value);
        s = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP concur_queue_wait_seconds Time in queue.
# TYPE concur_queue_wait_seconds histogram
concur_queue_wait_seconds_bucket{strategy="rayon",model="m",le="0.01"} 10
concur_queue_wait_seconds_bucket{strategy="rayon",model="m",le="0.1"} 60
concur_queue_wait_seconds_bucket{strategy="rayon",model="m",le="1"} 100
concur_queue_wait_seconds_bucket{strategy="rayon",model="m",le="+Inf"} 100
concur_queue_wait_seconds_sum{strategy="rayon",model="m"} 5.5
concur_queue_wait_seconds_count{strategy="rayon",model="m"} 100
concur_requests_total{route="/v1/embeddings",status="200",strategy="rayon"} 90
concur_requests_total{route="/v1/embeddings",status="429",strategy="rayon"} 7
concur_rejected_requests_total{reason="overloaded",note="a \"q\" \\ b"} 7 1700000000000
concur_queue_depth 3
"#;

    #[test]
    fn parses_samples_labels_and_escapes() {
        let s = Scrape::parse(TEXT).unwrap();
        assert_eq!(s.samples.len(), 10);
        assert_eq!(s.sum("concur_queue_depth", &[]), 3.0);
        assert_eq!(s.sum("concur_requests_total", &[("status", "429")]), 7.0);
        assert_eq!(s.sum("concur_requests_total", &[]), 97.0);
        let r = &s.samples[8];
        assert_eq!(r.labels["note"], "a \"q\" \\ b");
        assert_eq!(r.value, 7.0);
        assert_eq!(s.sum_by("concur_requests_total", "status")["200"], 90.0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Scrape::parse("metric{a=unquoted} 1").is_err());
        assert!(Scrape::parse("metric").is_err());
        assert!(Scrape::parse("metric x").is_err());
    }

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        let h = Scrape::parse(TEXT)
            .unwrap()
            .hist("concur_queue_wait_seconds", &[])
            .unwrap();
        assert_eq!(h.count, 100.0);
        assert!((h.mean().unwrap() - 0.055).abs() < 1e-12);
        // Rank 5 of 10 in [0, 0.01]: halfway.
        assert!((h.quantile(0.05).unwrap() - 0.005).abs() < 1e-12);
        // Rank 50: 40 of 50 into (0.01, 0.1].
        assert!((h.quantile(0.5).unwrap() - (0.01 + 0.09 * 0.8)).abs() < 1e-12);
        // Rank 99: 39 of 40 into (0.1, 1].
        assert!((h.quantile(0.99).unwrap() - (0.1 + 0.9 * 39.0 / 40.0)).abs() < 1e-12);
        assert_eq!(h.max_bound(), Some(1.0));
    }

    #[test]
    fn quantile_in_inf_bucket_returns_last_finite_bound() {
        let h = Hist {
            buckets: vec![(0.1, 1.0), (f64::INFINITY, 10.0)],
            sum: 0.0,
            count: 10.0,
        };
        assert_eq!(h.quantile(0.99), Some(0.1));
        assert_eq!(h.max_bound(), Some(f64::INFINITY));
        let empty = Hist {
            buckets: vec![(0.1, 0.0), (f64::INFINITY, 0.0)],
            ..Hist::default()
        };
        assert_eq!(empty.quantile(0.5), None);
    }

    #[test]
    fn series_are_summed_and_deltas_subtract() {
        let before = Scrape::parse(
            "h_bucket{s=\"a\",le=\"1\"} 1\nh_bucket{s=\"a\",le=\"+Inf\"} 2\n\
             h_sum{s=\"a\"} 3\nh_count{s=\"a\"} 2\n",
        )
        .unwrap();
        let after = Scrape::parse(
            "h_bucket{s=\"a\",le=\"1\"} 4\nh_bucket{s=\"a\",le=\"+Inf\"} 6\n\
             h_bucket{s=\"b\",le=\"1\"} 1\nh_bucket{s=\"b\",le=\"+Inf\"} 1\n\
             h_sum{s=\"a\"} 9\nh_count{s=\"a\"} 6\nh_sum{s=\"b\"} 0.5\nh_count{s=\"b\"} 1\n",
        )
        .unwrap();
        let d = after
            .hist("h", &[])
            .unwrap()
            .delta(before.hist("h", &[]).as_ref());
        assert_eq!(d.buckets, vec![(1.0, 4.0), (f64::INFINITY, 5.0)]);
        assert_eq!(d.count, 5.0);
        assert!((d.sum - 6.5).abs() < 1e-12);
        assert!(after.hist("missing", &[]).is_none());
    }
}
