//! The decision for one message, from its scores: answer the best entry, or fall back.
//! Pure logic over numbers, so the rules are tested without the model.
//!
//! Each entry's score is its best cosine similarity (over its example questions, title
//! and answer sentences) plus `keyword_weight` x its BM25 score; each out-of-scope group
//! is scored the same way. Measured on tests/data/chat_eval_tune.json (docs/chat-bot.md):
//! one threshold alone cannot separate questions about other companies from our own,
//! because the embedding sees the topic and not whose it is; the names and the
//! out-of-scope groups do that.

use super::names::Found;

/// The tuned numbers, from `[chat]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub threshold: f32,
    pub keyword_weight: f32,
    pub out_of_scope_margin: f32,
}

/// The scores of one message.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Per entry, in knowledge-base order.
    pub entries: Vec<f32>,
    /// Per out-of-scope group.
    pub out_of_scope: Vec<f32>,
}

impl Scores {
    /// Combines per-target cosines and per-document BM25 scores; both list the entries
    /// first, then the out-of-scope groups.
    pub fn combine(cosine: &[f32], keywords: &[f32], entries: usize, weight: f32) -> Scores {
        let mut all: Vec<f32> = cosine
            .iter()
            .zip(keywords)
            .map(|(c, k)| c + weight * k)
            .collect();
        let out_of_scope = all.split_off(entries.min(all.len()));
        Scores {
            entries: all,
            out_of_scope,
        }
    }

    /// The best entry and its score.
    pub fn best(&self) -> Option<(usize, f32)> {
        best(&self.entries)
    }
}

/// Why a message got the fallback.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// It names another company of a kind the best entry does not accept.
    OtherCompany(String),
    /// No entry reaches the threshold.
    BelowThreshold,
    /// An out-of-scope group (its index) scores as high as the best entry.
    OutOfScope(usize),
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Answer {
        entry: usize,
        score: f32,
    },
    Fallback {
        reason: Reason,
        best: Option<(usize, f32)>,
    },
}

/// Applies the rules in order: another company's name, the threshold, the out-of-scope
/// groups. `accepts(entry)` lists the name kinds an entry may be asked about.
pub fn decide<'a>(
    scores: &Scores,
    names: &[Found],
    accepts: impl Fn(usize) -> &'a [String],
    s: &Settings,
) -> Decision {
    let Some((entry, score)) = scores.best() else {
        return fallback(Reason::BelowThreshold, None);
    };
    let best = Some((entry, score));
    if let Some(other) = names.iter().find(|f| !accepts(entry).contains(&f.kind)) {
        return fallback(Reason::OtherCompany(other.name.clone()), best);
    }
    if score < s.threshold {
        return fallback(Reason::BelowThreshold, best);
    }
    if let Some((group, g)) = self::best(&scores.out_of_scope) {
        if g >= score - s.out_of_scope_margin {
            return fallback(Reason::OutOfScope(group), best);
        }
    }
    Decision::Answer { entry, score }
}

fn fallback(reason: Reason, best: Option<(usize, f32)>) -> Decision {
    Decision::Fallback { reason, best }
}

fn best(scores: &[f32]) -> Option<(usize, f32)> {
    scores
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        threshold: 0.6,
        keyword_weight: 0.5,
        out_of_scope_margin: 0.0,
    };

    fn scores(entries: &[f32], oos: &[f32]) -> Scores {
        Scores {
            entries: entries.to_vec(),
            out_of_scope: oos.to_vec(),
        }
    }

    fn found(kind: &str) -> Vec<Found> {
        vec![Found {
            name: "netflix".into(),
            kind: kind.into(),
        }]
    }

    fn none(_: usize) -> &'static [String] {
        &[]
    }

    #[test]
    fn combine_adds_weighted_keywords_and_splits_the_groups() {
        let s = Scores::combine(&[0.5, 0.4, 0.3], &[0.2, 0.0, 1.0], 2, 0.5);
        assert_eq!(s.entries, vec![0.6, 0.4]);
        assert_eq!(s.out_of_scope, vec![0.8]);
    }

    #[test]
    fn the_best_entry_above_the_threshold_answers() {
        let d = decide(&scores(&[0.5, 0.7], &[0.3]), &[], none, &S);
        assert_eq!(
            d,
            Decision::Answer {
                entry: 1,
                score: 0.7
            }
        );
        let low = decide(&scores(&[0.5, 0.59], &[]), &[], none, &S);
        assert!(matches!(
            low,
            Decision::Fallback {
                reason: Reason::BelowThreshold,
                best: Some((1, _))
            }
        ));
    }

    #[test]
    fn an_out_of_scope_group_as_close_as_the_best_entry_falls_back() {
        let d = decide(&scores(&[0.8], &[0.3, 0.8]), &[], none, &S);
        assert!(matches!(
            d,
            Decision::Fallback {
                reason: Reason::OutOfScope(1),
                ..
            }
        ));
        let margin = Settings {
            out_of_scope_margin: -0.05,
            ..S
        };
        let d = decide(&scores(&[0.8], &[0.77]), &[], none, &margin);
        assert!(matches!(d, Decision::Answer { .. }));
    }

    #[test]
    fn another_companys_name_falls_back_unless_the_entry_accepts_its_kind() {
        let streaming = ["streaming".to_string()];
        let d = decide(&scores(&[0.9], &[]), &found("streaming"), none, &S);
        assert_eq!(
            d,
            Decision::Fallback {
                reason: Reason::OtherCompany("netflix".into()),
                best: Some((0, 0.9))
            }
        );
        let accepts = |_: usize| &streaming[..];
        let d = decide(&scores(&[0.9], &[]), &found("streaming"), accepts, &S);
        assert!(matches!(d, Decision::Answer { .. }));
    }

    #[test]
    fn no_entries_is_a_fallback_not_a_panic() {
        let d = decide(&scores(&[], &[]), &[], none, &S);
        assert!(matches!(d, Decision::Fallback { best: None, .. }));
    }
}
