//! The keyword signal: BM25 (the `bm25` crate) over each entry's title, answer and
//! questions, and over each out-of-scope group's questions. Words are lowercased, split
//! on anything that is not a letter or digit, stop words dropped and the rest stemmed
//! (Snowball English, `rust-stemmers`), so "refunded" meets "refund".
//! `config/tools/chat_eval.py` mirrors this tokenizer to tune the weights.

use bm25::{Embedder, EmbedderBuilder, Scorer, Tokenizer};
use rust_stemmers::{Algorithm, Stemmer};
use std::collections::HashSet;

/// Lowercase runs of letters and digits: the word split shared with [`super::names`].
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The tokenizer the BM25 embedder runs on documents and messages alike.
pub struct Terms {
    stop: HashSet<String>,
    stemmer: Stemmer,
}

impl Tokenizer for Terms {
    fn tokenize(&self, text: &str) -> Vec<String> {
        words(text)
            .into_iter()
            .filter(|w| !self.stop.contains(w))
            .map(|w| self.stemmer.stem(&w).into_owned())
            .collect()
    }
}

/// BM25 scores of a message against a fixed list of documents.
pub struct KeywordIndex {
    embedder: Embedder<u32, Terms>,
    scorer: Scorer<usize>,
    documents: usize,
}

impl KeywordIndex {
    /// Fits BM25's average document length to `documents` and indexes them by position.
    pub fn new(documents: &[String], stop_words: &[String]) -> KeywordIndex {
        let terms = Terms {
            stop: stop_words.iter().map(|w| w.to_lowercase()).collect(),
            stemmer: Stemmer::create(Algorithm::English),
        };
        let corpus: Vec<&str> = documents.iter().map(String::as_str).collect();
        let embedder =
            EmbedderBuilder::<u32, Terms>::with_tokenizer_and_fit_to_corpus(terms, &corpus).build();
        let mut scorer = Scorer::new();
        for (i, d) in documents.iter().enumerate() {
            scorer.upsert(&i, embedder.embed(d));
        }
        KeywordIndex {
            embedder,
            scorer,
            documents: documents.len(),
        }
    }

    /// One BM25 score per document, in document order (0 where no word is shared).
    pub fn scores(&self, text: &str) -> Vec<f32> {
        let mut out = vec![0.0; self.documents];
        for m in self.scorer.matches(&self.embedder.embed(text)) {
            out[m.id] = m.score;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> KeywordIndex {
        let docs = [
            "Refunds: we refund your card within 3 days",
            "Shipping costs: delivery is free over 50 EUR",
            "Gift cards can be redeemed at checkout",
        ]
        .map(String::from);
        KeywordIndex::new(&docs, &["the".into(), "is".into(), "my".into()])
    }

    #[test]
    fn words_split_on_anything_but_letters_and_digits() {
        assert_eq!(
            words("Où est MON colis? #A-42, booking.com"),
            ["où", "est", "mon", "colis", "a", "42", "booking", "com"]
        );
    }

    #[test]
    fn stems_meet_and_stop_words_do_not_count() {
        let idx = index();
        let s = idx.scores("When is my money refunded?");
        assert!(s[0] > 0.0 && s[1] == 0.0 && s[2] == 0.0, "{s:?}");
        assert_eq!(idx.scores("the is my"), vec![0.0; 3]);
        let gift = idx.scores("redeem a gift card");
        assert!(gift[2] > gift[0] && gift[2] > gift[1], "{gift:?}");
    }

    #[test]
    fn rare_words_weigh_more_than_common_ones() {
        let docs = ["order tracking", "order cancel", "order change"].map(String::from);
        let idx = KeywordIndex::new(&docs, &[]);
        let s = idx.scores("order tracking");
        assert!(s[0] > 2.0 * s[1], "{s:?}");
    }
}
