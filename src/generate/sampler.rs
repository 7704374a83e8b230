//! Picking the next token from a row of logits: greedy at temperature 0, otherwise
//! temperature and nucleus (top-p) sampling with a per-request seeded generator, so a
//! request with a seed repeats whatever runs beside it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A request's sampling settings, validated by the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// Sample from the smallest set of tokens whose probability reaches this (1 = all).
    pub top_p: f32,
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
        }
    }
}

/// One sequence's sampler: its settings and its random generator's state.
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Sampler {
        let rng = match sampling.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Sampler { sampling, rng }
    }

    /// The next token for one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.sampling.temperature <= 0.0 {
            return argmax(logits);
        }
        let probs = softmax(logits, self.sampling.temperature);
        let candidates = nucleus(&probs, self.sampling.top_p);
        let total: f32 = candidates.iter().map(|&(_, p)| p).sum();
        let mut r = self.rng.random::<f32>() * total;
        for &(id, p) in &candidates {
            if r < p {
                return id;
            }
            r -= p;
        }
        candidates.last().map_or(0, |&(id, _)| id)
    }
}

/// The index of the largest logit; the lowest index among equals, so ties never depend on
/// anything but the logits.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut out: Vec<f32> = logits
        .iter()
        .map(|&x| ((x - max) / temperature).exp())
        .collect();
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|p| *p /= sum);
    out
}

/// The most probable tokens whose probabilities add up to `top_p`, most probable first.
fn nucleus(probs: &[f32], top_p: f32) -> Vec<(u32, f32)> {
    let mut order: Vec<(u32, f32)> = probs
        .iter()
        .enumerate()
        .filter(|&(_, &p)| p > 0.0)
        .map(|(i, &p)| (i as u32, p))
        .collect();
    order.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if top_p >= 1.0 {
        return order;
    }
    let mut acc = 0.0;
    let keep = order
        .iter()
        .position(|&(_, p)| {
            acc += p;
            acc >= top_p
        })
        .map_or(order.len(), |i| i + 1);
    order.truncate(keep);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(Sampling {
            temperature: 0.0,
            ..Sampling::default()
        });
        assert_eq!(s.sample(&[0.0, 0.0, 5.0]), 2);
    }

    #[test]
    fn a_seed_repeats_its_choices() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = || {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                top_p: 0.9,
                seed: Some(42),
            });
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(run().iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p = [0.5, 0.3, 0.2]: top_p 0.6 keeps the two most probable.
        let kept = nucleus(&[0.2, 0.5, 0.3], 0.6);
        assert_eq!(kept.iter().map(|&(i, _)| i).collect::<Vec<_>>(), vec![1, 2]);
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 0.6,
            seed: Some(1),
        });
        let logits = [0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()];
        assert!((0..200).all(|_| s.sample(&logits) != 0));
    }
}
