//! The knowledge-base file (`config/knowledge_base.toml`): entries, out-of-scope groups,
//! names of other companies, keyword settings and follow-up replies, read and validated
//! once at start.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// One answerable topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub title: String,
    pub answer: String,
    /// Kinds of [`KnowledgeBase::names`] a question about this entry may name (a
    /// price-match question names a retailer, a compatibility question a phone).
    #[serde(default)]
    pub accepts: Vec<String>,
    pub questions: Vec<String>,
}

/// Messages the bot must not answer: matched like an entry, answered with the fallback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutOfScope {
    pub id: String,
    pub questions: Vec<String>,
}

/// Settings of the keyword (BM25) score.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keywords {
    #[serde(default)]
    pub stop_words: Vec<String>,
}

/// Replies to follow-ups that carry no question of their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replies {
    pub greeting: String,
    pub handover: String,
    /// Appended to `handover` when the conversation has a topic; `{title}` is replaced.
    pub handover_topic: String,
    pub not_helped: String,
    pub thanks: String,
    pub helped: String,
    pub prompt: String,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBase {
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub out_of_scope: Vec<OutOfScope>,
    /// Kind -> names of other companies, services and products.
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub keywords: Keywords,
    pub replies: Replies,
}

impl KnowledgeBase {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<KnowledgeBase, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read knowledge base {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("knowledge base {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<KnowledgeBase, String> {
        let kb: KnowledgeBase = toml::from_str(text).map_err(|e| e.to_string())?;
        kb.validate()?;
        Ok(kb)
    }

    fn validate(&self) -> Result<(), String> {
        if self.entries.is_empty() {
            return Err("has no entries".into());
        }
        let mut ids = HashSet::new();
        for e in &self.entries {
            check_group(&mut ids, &e.id, &e.questions)?;
            if e.answer.trim().is_empty() || e.title.trim().is_empty() {
                return Err(format!("entry `{}` needs a title and an answer", e.id));
            }
            if let Some(kind) = e.accepts.iter().find(|k| !self.names.contains_key(*k)) {
                return Err(format!(
                    "entry `{}` accepts `{kind}`, which is not a kind of [names]",
                    e.id
                ));
            }
        }
        for g in &self.out_of_scope {
            check_group(&mut ids, &g.id, &g.questions)?;
        }
        let r = &self.replies;
        let texts = [
            &r.greeting,
            &r.handover,
            &r.not_helped,
            &r.thanks,
            &r.helped,
            &r.prompt,
        ];
        if texts.iter().any(|t| t.trim().is_empty()) {
            return Err("every reply in [replies] needs a text".into());
        }
        if !r.handover_topic.contains("{title}") {
            return Err("replies.handover_topic must contain {title}".into());
        }
        Ok(())
    }
}

/// An id seen once, with at least one non-empty question.
fn check_group<'a>(
    ids: &mut HashSet<&'a str>,
    id: &'a str,
    questions: &[String],
) -> Result<(), String> {
    if !ids.insert(id) {
        return Err(format!("id `{id}` appears twice"));
    }
    if questions.is_empty() || questions.iter().any(|q| q.trim().is_empty()) {
        return Err(format!("`{id}` needs non-empty example questions"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> KnowledgeBase {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        KnowledgeBase::load(&root.join("config/knowledge_base.toml")).unwrap()
    }

    const REPLIES: &str = "[replies]\ngreeting = \"g\"\nhandover = \"h\"\n\
        handover_topic = \"{title}\"\nnot_helped = \"n\"\nthanks = \"t\"\nhelped = \"y\"\nprompt = \"p\"\n";

    fn parse(body: &str) -> Result<KnowledgeBase, String> {
        KnowledgeBase::parse(&format!("{body}\n{REPLIES}"))
    }

    const ENTRY: &str =
        "[[entries]]\nid = \"a\"\ntitle = \"A\"\nanswer = \"x\"\nquestions = [\"q\"]\n";

    #[test]
    fn the_shipped_file_is_valid() {
        let kb = shipped();
        assert!(kb.entries.len() >= 60);
        assert!(!kb.out_of_scope.is_empty() && !kb.names.is_empty());
    }

    #[test]
    fn bad_files_name_the_problem() {
        assert!(parse(ENTRY).is_ok());
        let twice = format!("{ENTRY}{ENTRY}");
        assert!(parse(&twice).unwrap_err().contains("`a` appears twice"));
        let unknown_kind = ENTRY.replace("questions", "accepts = [\"retailer\"]\nquestions");
        assert!(parse(&unknown_kind).unwrap_err().contains("`retailer`"));
        let no_questions = ENTRY.replace("[\"q\"]", "[]");
        assert!(parse(&no_questions)
            .unwrap_err()
            .contains("example questions"));
        let oos = format!("{ENTRY}[[out_of_scope]]\nid = \"a\"\nquestions = [\"z\"]\n");
        assert!(parse(&oos).unwrap_err().contains("appears twice"));
        let no_topic = format!("{ENTRY}\n{}", REPLIES.replace("{title}", "x"));
        assert!(KnowledgeBase::parse(&no_topic)
            .unwrap_err()
            .contains("{title}"));
    }

    /// Where an answer sends the customer (`send us`, `contact support`...), the same
    /// sentence names the address, page, phone number or menu path.
    #[test]
    fn every_answer_names_where_it_sends_the_customer() {
        const POINTERS: [&str; 9] = [
            "send us",
            "contact us",
            "contact support",
            "contact form",
            "write to",
            "get in touch",
            "see our",
            "see changing",
            "reach ",
        ];
        const PLACES: [&str; 4] = ["@", "acme.example", "+49", " > "];
        let kb = shipped();
        let mut texts: Vec<(&str, &str)> = kb
            .entries
            .iter()
            .map(|e| (e.id.as_str(), e.answer.as_str()))
            .collect();
        texts.push(("replies.handover", &kb.replies.handover));
        for (id, text) in texts {
            for sentence in text.split(". ") {
                let lower = sentence.to_lowercase();
                if let Some(p) = POINTERS.iter().find(|p| lower.contains(*p)) {
                    assert!(
                        PLACES.iter().any(|place| sentence.contains(place)),
                        "{id}: `{p}` without naming where: {sentence}"
                    );
                }
                assert!(!lower.contains("contact form"), "{id}: {sentence}");
            }
        }
    }

    /// No answer promises a handover the bot cannot make.
    #[test]
    fn no_answer_promises_a_handover() {
        for e in shipped().entries {
            let lower = e.answer.to_lowercase();
            for promise in ["type 'agent'", "handed over", "live chat"] {
                assert!(!lower.contains(promise), "{}: {}", e.id, e.answer);
            }
        }
    }

    /// The fallback gives the address the knowledge base itself gives.
    #[test]
    fn the_fallback_gives_the_knowledge_base_address() {
        let kb = shipped();
        let contact = kb.entries.iter().find(|e| e.id == "contact-support");
        let address = contact
            .unwrap()
            .answer
            .split_whitespace()
            .find(|w| w.contains('@'))
            .unwrap()
            .trim_end_matches([',', '.']);
        assert_eq!(address, "support@acme.example");
        assert!(crate::Config::default().chat.fallback.contains(address));
        assert!(kb.replies.handover.contains(address));
    }
}
