//! The lexical signal for other companies: the knowledge base's `[names]` (Netflix, Gmail,
//! IKEA...) matched as whole word sequences. The embedding alone scores "cancel my
//! Netflix subscription" as high as our own cancel-subscription entry; the name says
//! whose subscription it is. Names the knowledge base itself uses never count.

use super::keywords::words;
use std::collections::{BTreeMap, HashMap};

/// A name found in a message, and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub name: String,
    pub kind: String,
}

/// The names as word sequences.
pub struct Names {
    kinds: HashMap<Vec<String>, String>,
    longest: usize,
}

impl Names {
    /// Every name of `names` except those whose words appear in that order in `kb_text`.
    pub fn new(names: &BTreeMap<String, Vec<String>>, kb_text: &str) -> Names {
        let known = format!(" {} ", words(kb_text).join(" "));
        let mut kinds = HashMap::new();
        for (kind, list) in names {
            for name in list {
                let w = words(name);
                if !w.is_empty() && !known.contains(&format!(" {} ", w.join(" "))) {
                    kinds.insert(w, kind.clone());
                }
            }
        }
        let longest = kinds.keys().map(Vec::len).max().unwrap_or(0);
        Names { kinds, longest }
    }

    /// Number of names that can match.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The names in `text`, in order of appearance.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let w = words(text);
        let mut found = Vec::new();
        for start in 0..w.len() {
            for len in 1..=self.longest.min(w.len() - start) {
                if let Some(kind) = self.kinds.get(&w[start..start + len]) {
                    found.push(Found {
                        name: w[start..start + len].join(" "),
                        kind: kind.clone(),
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut m = BTreeMap::new();
        m.insert(
            "streaming".to_string(),
            vec!["Netflix".into(), "Disney+".into()],
        );
        m.insert(
            "retailer".to_string(),
            vec!["booking.com".into(), "Apple Store".into(), "PayPal".into()],
        );
        Names::new(&m, "We accept PayPal and Apple Pay.")
    }

    #[test]
    fn finds_whole_words_and_sequences() {
        let n = names();
        let found = n.find("Cancel my NETFLIX and my booking.com stay");
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.name.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(got, [("netflix", "streaming"), ("booking com", "retailer")]);
        assert!(n.find("netflixing my booking").is_empty());
        assert_eq!(n.find("Is Disney+ included?")[0].name, "disney");
        assert_eq!(n.find("the apple store refund")[0].name, "apple store");
    }

    #[test]
    fn names_the_knowledge_base_uses_never_count() {
        let n = names();
        assert!(n.find("can I pay with paypal").is_empty());
        assert_eq!(n.len(), 4);
        // "apple store" counts although "apple" appears in the knowledge base.
        assert_eq!(n.find("apple store").len(), 1);
    }
}
