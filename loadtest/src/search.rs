//! The search for the highest sustainable rate: ramp up geometrically
//! until a step fails, then bisect between the best pass and the lowest
//! failure. A pure state machine, so it is tested without a server.

/// State of one search. Ask [`RateSearch::next_rate`] for the rate to try,
/// measure it, and tell [`RateSearch::report`] whether it passed.
#[derive(Clone, Debug)]
pub struct RateSearch {
    start: f64,
    ramp: f64,
    precision: f64,
    max_steps: usize,
    steps: usize,
    /// Highest rate that passed.
    lo: Option<f64>,
    /// Lowest rate that failed.
    hi: Option<f64>,
}

/// Below this rate (requests per second) the search gives up: the server
/// cannot meet the target at any useful load.
const MIN_RATE: f64 = 0.1;

impl RateSearch {
    /// Starts at `start` requests per second, multiplies by `ramp` (> 1)
    /// while steps pass, and stops bisecting once the bracket is within
    /// `precision` (relative, e.g. 0.05) or `max_steps` steps were spent.
    pub fn new(start: f64, ramp: f64, precision: f64, max_steps: usize) -> Self {
        RateSearch {
            start: start.max(MIN_RATE),
            ramp: ramp.max(1.01),
            precision: precision.max(1e-3),
            max_steps,
            steps: 0,
            lo: None,
            hi: None,
        }
    }

    /// The next rate to measure, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        if self.steps >= self.max_steps {
            return None;
        }
        match (self.lo, self.hi) {
            (None, None) => Some(self.start),
            (Some(lo), None) => Some(lo * self.ramp),
            // Even the first step failed: back off faster than we ramp,
            // since an overloaded start may be far above capacity.
            (None, Some(hi)) => Some(hi / (self.ramp * self.ramp)).filter(|r| *r >= MIN_RATE),
            (Some(lo), Some(hi)) => (hi / lo > 1.0 + self.precision).then(|| (lo * hi).sqrt()),
        }
    }

    /// Records the verdict for a measured `rate`.
    pub fn report(&mut self, rate: f64, pass: bool) {
        self.steps += 1;
        if pass {
            self.lo = Some(self.lo.map_or(rate, |lo| lo.max(rate)));
        } else {
            self.hi = Some(self.hi.map_or(rate, |hi| hi.min(rate)));
        }
    }

    /// The highest rate that passed, if any.
    pub fn best(&self) -> Option<f64> {
        self.lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a server that sustains exactly `capacity`.
    fn search(capacity: f64, start: f64, max_steps: usize) -> (RateSearch, Vec<f64>) {
        let mut s = RateSearch::new(start, 1.5, 0.05, max_steps);
        let mut tried = Vec::new();
        while let Some(rate) = s.next_rate() {
            tried.push(rate);
            s.report(rate, rate <= capacity);
        }
        (s, tried)
    }

    #[test]
    fn ramps_then_bisects_to_within_precision() {
        let (s, tried) = search(100.0, 20.0, 20);
        let best = s.best().unwrap();
        assert!(
            best <= 100.0 && best > 100.0 / 1.05,
            "{best} after {tried:?}"
        );
        // Geometric ramp first: 20, 30, 45, 67.5, 101.25 (fail).
        assert_eq!(&tried[..4], &[20.0, 30.0, 45.0, 67.5]);
    }

    #[test]
    fn backs_off_when_the_start_is_too_high() {
        let (s, tried) = search(10.0, 200.0, 20);
        assert!(tried[1] < tried[0]);
        let best = s.best().unwrap();
        assert!(best <= 10.0 && best > 10.0 / 1.05, "{best} after {tried:?}");
    }

    #[test]
    fn never_exceeds_max_steps() {
        let (s, tried) = search(100.0, 1.0, 4);
        assert_eq!(tried.len(), 4);
        assert_eq!(s.best(), Some(1.0 * 1.5f64.powi(3)));
    }

    #[test]
    fn gives_up_when_nothing_passes() {
        let (s, tried) = search(0.0, 10.0, 100);
        assert!(s.best().is_none());
        assert!(tried.len() < 100);
    }
}
