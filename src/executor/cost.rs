//! What a batch costs at each width, learned from the batches that ran.
//!
//! A forward pass takes about `a + b × padded tokens`: `a` is what any pass costs (ONNX
//! Runtime's per-operator work, and on a machine whose cache cannot hold the weights,
//! streaming them), `b` the work per token. Both differ per width and per machine, and the
//! width decision ([`super::width::choose`]) needs them, so each width keeps a least-squares
//! fit of its recent batches. Recent: a sample's weight halves every [`HALF_LIFE`], so the
//! fit follows the machine (another process taking a core slows wide batches most) and a
//! width unused for a while falls back to the prior below and is tried again.
//!
//! The same batches tell how many rows arrive while a batch runs, per second of running:
//! the arrival rate the width decision needs. Counted during runs only, because that is
//! when an arrival competes with a batch for cores, and because a closed loop (a user who
//! sends the next message when the answer came) sends nothing while its batch runs: such a
//! user arriving hundreds of times a second must still get every core.

use std::time::Duration;
use tokio::time::Instant;

/// How fast old samples fade. Long enough to average a few dozen batches at light load,
/// short enough that a width nobody chose for ten seconds is estimated afresh.
const HALF_LIFE: Duration = Duration::from_secs(2);

/// Below this much total weight a width has no estimate of its own.
const MIN_WEIGHT: f64 = 0.5;

/// Weighted sums of one width's samples (x = padded tokens, y = seconds).
#[derive(Debug, Clone, Copy, Default)]
struct Fit {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
    at: Option<Instant>,
}

impl Fit {
    /// Scales every sum down by the time since the last sample.
    fn fade(&mut self, now: Instant, half_life: Duration) {
        let Some(at) = self.at else { return };
        let age = now.saturating_duration_since(at).as_secs_f64();
        let keep = 0.5f64.powf(age / half_life.as_secs_f64());
        for s in [
            &mut self.n,
            &mut self.x,
            &mut self.y,
            &mut self.xx,
            &mut self.xy,
        ] {
            *s *= keep;
        }
        self.at = Some(now);
    }

    fn add(&mut self, x: f64, y: f64, now: Instant, half_life: Duration) {
        self.fade(now, half_life);
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.xy += x * y;
        self.at = Some(now);
    }

    /// Seconds for `x` padded tokens, from the samples' weight as of `now`.
    fn estimate(&self, x: f64, now: Instant) -> Option<f64> {
        let mut faded = *self;
        faded.fade(now, HALF_LIFE);
        if faded.n < MIN_WEIGHT {
            return None;
        }
        let (mx, my) = (faded.x / faded.n, faded.y / faded.n);
        let var = faded.xx / faded.n - mx * mx;
        let slope = (faded.xy / faded.n - mx * my) / var;
        // Samples of nearly one length (a lone user's short messages) fix no slope: then
        // the time is taken as proportional to tokens, which overstates long batches a
        // little (their fixed part is counted per token) and errs towards narrow for them.
        if var < 1.0 || !slope.is_finite() || slope <= 0.0 || my - slope * mx < 0.0 {
            return Some(my * x / mx.max(1.0));
        }
        Some(my + slope * (x - mx))
    }
}

/// The cost fits of every width of a ladder, and the arrivals seen during runs.
#[derive(Debug, Clone)]
pub struct Costs {
    /// (width, fit), narrowest first.
    fits: Vec<(usize, Fit)>,
    /// Rows that arrived during runs (x) against seconds of running (y), faded like the
    /// fits but faster: the rate follows the traffic within a second or two.
    arrivals: Fit,
    /// Core-seconds the batches used (x), faded like the rate: the cores' recent load.
    work: Fit,
}

/// How fast the arrival rate forgets: a few dozen batches at a rate that matters, and a
/// burst (the knowledge base embedded at start) gone within a second or two.
const RATE_HALF_LIFE: Duration = Duration::from_millis(250);

impl Costs {
    pub fn new(widths: impl IntoIterator<Item = usize>) -> Costs {
        Costs {
            fits: widths.into_iter().map(|w| (w, Fit::default())).collect(),
            arrivals: Fit::default(),
            work: Fit::default(),
        }
    }

    /// Records that a batch of `tokens` padded tokens took `took` on `width` cores, and
    /// that `arrived` rows arrived meanwhile.
    pub fn record(
        &mut self,
        width: usize,
        tokens: usize,
        took: Duration,
        arrived: u64,
        now: Instant,
    ) {
        let secs = took.as_secs_f64();
        if let Some((_, fit)) = self.fits.iter_mut().find(|(w, _)| *w == width) {
            fit.add(tokens as f64, secs, now, HALF_LIFE);
        }
        self.arrivals.add(arrived as f64, secs, now, RATE_HALF_LIFE);
        self.work.add(width as f64 * secs, 0.0, now, RATE_HALF_LIFE);
    }

    /// Rows arriving per second while batches run, lately (0 before any batch ran). A
    /// ratio of two faded sums, so a pause changes it not; the wall-clock rate
    /// ([`super::width::Arrivals`]) is what fades after one.
    pub fn arrival_rate(&self, now: Instant) -> f64 {
        let mut a = self.arrivals;
        a.fade(now, RATE_HALF_LIFE);
        if a.y <= 0.0 {
            return 0.0;
        }
        a.x / a.y
    }

    /// The share of `cores` that batches kept busy lately, 0 to 1.
    pub fn load(&self, cores: usize, now: Instant) -> f64 {
        let mut w = self.work;
        w.fade(now, RATE_HALF_LIFE);
        // A steady stream of work weighs, in all, its rate times the mean age of a sample.
        let mean_age = RATE_HALF_LIFE.as_secs_f64() / std::f64::consts::LN_2;
        (w.x / (mean_age * cores.max(1) as f64)).clamp(0.0, 1.0)
    }

    /// Seconds a batch of `tokens` padded tokens should take on `width` cores; None before
    /// any batch has run. A width without recent samples is estimated from the nearest one
    /// that has some, as if a pass scaled perfectly with cores: an optimistic guess, so
    /// that an untried width gets tried and measured.
    pub fn estimate(&self, width: usize, tokens: usize, now: Instant) -> Option<f64> {
        let x = tokens.max(1) as f64;
        let own = self.fits.iter().find(|(w, _)| *w == width);
        if let Some(s) = own.and_then(|(_, f)| f.estimate(x, now)) {
            return Some(s);
        }
        self.fits
            .iter()
            .filter_map(|(w, f)| Some((*w, f.estimate(x, now)?)))
            .min_by_key(|(w, _)| w.abs_diff(width))
            .map(|(w, s)| s * w as f64 / width as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    #[test]
    fn the_arrival_rate_is_rows_per_second_of_running() {
        let (mut c, t) = (Costs::new([1, 2]), Instant::now());
        assert_eq!(c.arrival_rate(t), 0.0);
        // 5 ms batches, one row arriving during each: 200 rows a second.
        for i in 0..100 {
            c.record(1, 16, ms(5.0), 1, t + Duration::from_millis(5 * i));
        }
        let now = t + Duration::from_millis(500);
        assert!(
            (c.arrival_rate(now) - 200.0).abs() < 1.0,
            "{}",
            c.arrival_rate(now)
        );
        // A closed loop of one user: nothing arrives while its batch runs.
        for i in 0..1000 {
            c.record(2, 16, ms(2.0), 0, now + Duration::from_millis(3 * i));
        }
        let later = now + Duration::from_millis(3000);
        assert!(c.arrival_rate(later) < 2.0, "{}", c.arrival_rate(later));
    }

    #[test]
    fn load_is_the_busy_share_of_the_cores() {
        let (mut c, t) = (Costs::new([1, 2]), Instant::now());
        assert_eq!(c.load(2, t), 0.0);
        // One core busy 6 ms of every 10: 30% of two cores.
        for i in 0..200 {
            c.record(1, 16, ms(6.0), 0, t + Duration::from_millis(10 * i));
        }
        let now = t + Duration::from_millis(2000);
        assert!((c.load(2, now) - 0.3).abs() < 0.02, "{}", c.load(2, now));
        // Both cores, back to back: fully loaded.
        for i in 0..300 {
            c.record(2, 16, ms(5.0), 0, now + Duration::from_millis(5 * i));
        }
        assert!(c.load(2, now + Duration::from_millis(1500)) > 0.97);
    }

    #[test]
    fn nothing_known_before_the_first_batch() {
        let c = Costs::new([1, 2]);
        assert_eq!(c.estimate(1, 20, Instant::now()), None);
    }

    #[test]
    fn learns_the_fixed_and_the_per_token_part() {
        let (mut c, t) = (Costs::new([1, 2]), Instant::now());
        // 2 ms per pass plus 0.2 ms per token on one core.
        for tokens in [10, 40, 10, 80, 20, 160] {
            c.record(1, tokens, ms(2.0 + 0.2 * tokens as f64), 0, t);
        }
        let at = |tokens| c.estimate(1, tokens, t).unwrap() * 1000.0;
        assert!((at(14) - 4.8).abs() < 0.01, "{}", at(14));
        assert!((at(256) - 53.2).abs() < 0.01, "{}", at(256));
    }

    #[test]
    fn one_length_only_is_proportional() {
        let (mut c, t) = (Costs::new([1]), Instant::now());
        for _ in 0..5 {
            c.record(1, 16, ms(4.0), 0, t);
        }
        let e = c.estimate(1, 32, t).unwrap() * 1000.0;
        assert!((e - 8.0).abs() < 0.01, "{e}");
    }

    #[test]
    fn an_untried_width_is_guessed_from_its_neighbour() {
        let (mut c, t) = (Costs::new([1, 2, 4]), Instant::now());
        c.record(1, 16, ms(4.0), 0, t);
        let wide = c.estimate(2, 16, t).unwrap() * 1000.0;
        assert!((wide - 2.0).abs() < 0.01, "perfect scaling guessed: {wide}");
        let widest = c.estimate(4, 16, t).unwrap() * 1000.0;
        assert!((widest - 1.0).abs() < 0.01, "{widest}");
    }

    #[test]
    fn old_samples_fade_and_the_guess_returns() {
        let (mut c, t) = (Costs::new([1, 2]), Instant::now());
        c.record(1, 16, ms(4.0), 0, t);
        // Width 2 was slow once (another process held a core).
        c.record(2, 16, ms(9.0), 0, t);
        assert!(c.estimate(2, 16, t).unwrap() > 0.008);
        // Width 1 keeps running; width 2 is not chosen for ten seconds.
        let later = t + Duration::from_secs(10);
        c.record(1, 16, ms(4.0), 0, later);
        let e = c.estimate(2, 16, later).unwrap() * 1000.0;
        assert!((e - 2.0).abs() < 0.01, "back to the guess: {e}");
    }

    #[test]
    fn recent_samples_outweigh_old_ones() {
        let (mut c, t) = (Costs::new([2]), Instant::now());
        for i in 0..20 {
            c.record(2, 16, ms(8.0), 0, t + Duration::from_millis(i));
        }
        // Three half-lives later the old twenty weigh as much as two or three new ones.
        let later = t + Duration::from_secs(6);
        for i in 0..20 {
            c.record(2, 16, ms(2.0), 0, later + Duration::from_millis(i));
        }
        let e = c
            .estimate(2, 16, later + Duration::from_millis(20))
            .unwrap()
            * 1000.0;
        assert!(e < 3.0, "{e}");
    }
}
