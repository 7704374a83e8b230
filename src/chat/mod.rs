//! The retrieval chat bot. At start the knowledge base (`kb`) is embedded once through
//! the same pipeline as every request; a question then costs one embedding, scored
//! against every entry by cosine similarity and keywords (`keywords`), checked for
//! other companies' names (`names`) and decided (`decide`). Follow-ups such as "agent"
//! or "thanks" are answered from the conversation (`turns`) without an embedding.

pub mod decide;
pub mod kb;
pub mod keywords;
pub mod names;
pub mod turns;

use crate::config::ChatConfig;
use crate::engine::pooling::{dot, normalize};
use crate::pipeline::Pipeline;
use arc_swap::ArcSwap;
use decide::{Decision, Reason, Scores, Settings};
use kb::{Entry, KnowledgeBase};
use keywords::KeywordIndex;
use names::Names;
use std::time::Duration;
use turns::Turn;

/// The knowledge base, its vectors and its keyword index.
pub struct ChatBot {
    kb: KnowledgeBase,
    /// (owner, normalised vector) for every matched text: entries' questions, titles and
    /// answer sentences, then out-of-scope groups' questions. Owners index entries first,
    /// then groups, like the keyword index's documents.
    targets: Vec<(usize, Vec<f32>)>,
    keywords: KeywordIndex,
    names: Names,
    /// The `[chat]` numbers and fallback text: a reload changes them in place, keeping the
    /// embedded knowledge base.
    tuning: ArcSwap<Tuning>,
}

struct Tuning {
    settings: Settings,
    fallback: String,
}

impl Tuning {
    fn of(config: &ChatConfig) -> Tuning {
        Tuning {
            settings: Settings {
                threshold: config.threshold,
                keyword_weight: config.keyword_weight,
                out_of_scope_margin: config.out_of_scope_margin,
            },
            fallback: config.fallback.clone(),
        }
    }
}

/// What the bot needs to reply to a conversation.
pub enum Step {
    /// A follow-up, answered without the model.
    Reply(Reply),
    /// A question: embed this text and call [`ChatBot::answer`].
    Embed(String),
}

/// The reply and how it was chosen (reported as `concur_retrieval`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub content: String,
    /// `answer`, `fallback`, or the follow-up's reply (`handover`, `thanks`...).
    pub decision: &'static str,
    /// The answered entry, or for a fallback the closest one.
    pub entry: Option<usize>,
    pub score: Option<f32>,
    /// Why a question got the fallback: `below_threshold`, `out_of_scope:<group>` or
    /// `other_company:<name>`.
    pub reason: Option<String>,
}

/// Loading the knowledge base at start is not a request: it may wait this long for its
/// batches even on a busy machine.
const BUILD_DEADLINE: Duration = Duration::from_secs(600);

impl ChatBot {
    /// Reads the knowledge base, embeds every matched text and builds the keyword index.
    pub async fn build(
        config: &ChatConfig,
        pipeline: &Pipeline,
        chunk: usize,
    ) -> Result<ChatBot, String> {
        let kb = KnowledgeBase::load(&config.knowledge_base)?;
        let (owners, texts) = targets(&kb);
        let mut vectors = Vec::with_capacity(texts.len());
        for part in texts.chunks(chunk.max(1)) {
            let deadline = tokio::time::Instant::now() + BUILD_DEADLINE;
            let out = pipeline
                .embed(part.to_vec(), true, deadline)
                .await
                .map_err(|e| format!("cannot embed the knowledge base: {e}"))?;
            vectors.extend(out.vectors);
        }
        for v in &mut vectors {
            normalize(v);
        }
        let documents = documents(&kb);
        let keywords = KeywordIndex::new(&documents, &kb.keywords.stop_words);
        let names = Names::new(&kb.names, &documents[..kb.entries.len()].join(" "));
        Ok(ChatBot {
            targets: owners.into_iter().zip(vectors).collect(),
            keywords,
            names,
            tuning: ArcSwap::from_pointee(Tuning::of(config)),
            kb,
        })
    }

    pub fn len(&self) -> usize {
        self.kb.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kb.entries.is_empty()
    }

    pub fn fallback(&self) -> String {
        self.tuning.load().fallback.clone()
    }

    /// Takes the threshold, weights and fallback of `config` from now on (a reload).
    pub fn retune(&self, config: &ChatConfig) {
        self.tuning.store(std::sync::Arc::new(Tuning::of(config)));
    }

    pub fn entry(&self, index: usize) -> &Entry {
        &self.kb.entries[index]
    }

    /// The next step for a conversation: its last user message is a question to embed,
    /// or a follow-up answered from the conversation. Without any user message (the HTTP
    /// layer rejects that) the bot asks for the question.
    pub fn step(&self, turns: &[Turn]) -> Step {
        let last = turns.iter().rev().find(|t| t.role == turns::Role::User);
        let follow_up = match last {
            Some(t) => match turns::follow_up(&t.text) {
                Some(f) => f,
                None => return Step::Embed(t.text.clone()),
            },
            None => turns::FollowUp::Yes,
        };
        let answered = last.and_then(|_| turns::last_answer(turns, &self.kb.entries));
        let (content, decision) =
            turns::reply(follow_up, answered.map(|i| self.entry(i)), &self.kb.replies);
        Step::Reply(Reply {
            content,
            decision,
            entry: answered,
            score: None,
            reason: None,
        })
    }

    /// Decides a question from its text and its embedding.
    pub fn answer(&self, text: &str, vector: &[f32]) -> Reply {
        let tuning = self.tuning.load();
        let scores = self.scores(text, vector, tuning.settings.keyword_weight);
        let found = self.names.find(text);
        let accepts = |i: usize| self.kb.entries[i].accepts.as_slice();
        match decide::decide(&scores, &found, accepts, &tuning.settings) {
            Decision::Answer { entry, score } => Reply {
                content: self.entry(entry).answer.clone(),
                decision: "answer",
                entry: Some(entry),
                score: Some(score),
                reason: None,
            },
            Decision::Fallback { reason, best } => Reply {
                content: tuning.fallback.clone(),
                decision: "fallback",
                entry: best.map(|b| b.0),
                score: best.map(|b| b.1),
                reason: Some(match reason {
                    Reason::BelowThreshold => "below_threshold".into(),
                    Reason::OutOfScope(g) => format!("out_of_scope:{}", self.kb.out_of_scope[g].id),
                    Reason::OtherCompany(name) => format!("other_company:{name}"),
                }),
            },
        }
    }

    /// Every entry's and group's score: best cosine over its targets plus weighted BM25.
    fn scores(&self, text: &str, vector: &[f32], keyword_weight: f32) -> Scores {
        let mut query = vector.to_vec();
        normalize(&mut query);
        let owners = self.kb.entries.len() + self.kb.out_of_scope.len();
        let mut cosine = vec![f32::NEG_INFINITY; owners];
        for (owner, v) in &self.targets {
            cosine[*owner] = cosine[*owner].max(dot(&query, v));
        }
        let keywords = self.keywords.scores(text);
        Scores::combine(&cosine, &keywords, self.kb.entries.len(), keyword_weight)
    }
}

/// The texts to embed and who owns each: an entry's questions, title and answer
/// sentences, then each out-of-scope group's questions.
fn targets(kb: &KnowledgeBase) -> (Vec<usize>, Vec<String>) {
    let mut owners = Vec::new();
    let mut texts = Vec::new();
    for (i, e) in kb.entries.iter().enumerate() {
        let own = e
            .questions
            .iter()
            .cloned()
            .chain([e.title.clone()])
            .chain(sentences(&e.answer));
        for t in own {
            owners.push(i);
            texts.push(t);
        }
    }
    for (g, group) in kb.out_of_scope.iter().enumerate() {
        owners.extend(std::iter::repeat_n(
            kb.entries.len() + g,
            group.questions.len(),
        ));
        texts.extend(group.questions.iter().cloned());
    }
    (owners, texts)
}

/// An answer's sentences: split after `.`, `!`, `?` or `;` followed by white space.
fn sentences(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = answer.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = matches!(c, '.' | '!' | '?' | ';');
        if ends && chars.peek().is_some_and(|(_, n)| n.is_whitespace()) {
            out.push(answer[start..=i].trim().to_string());
            start = i + 1;
        }
    }
    out.push(answer[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

/// The keyword documents: per entry its title, answer and questions; per group its
/// questions.
fn documents(kb: &KnowledgeBase) -> Vec<String> {
    let entries = kb
        .entries
        .iter()
        .map(|e| format!("{} {} {}", e.title, e.answer, e.questions.join(" ")));
    let groups = kb.out_of_scope.iter().map(|g| g.questions.join(" "));
    entries.chain(groups).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_into_sentences() {
        assert_eq!(
            sentences("Go to Account > Orders. It costs 4.90 EUR; free over 50! Done?"),
            [
                "Go to Account > Orders.",
                "It costs 4.90 EUR;",
                "free over 50!",
                "Done?"
            ]
        );
        assert_eq!(sentences("No stop at the end"), ["No stop at the end"]);
    }

    #[test]
    fn targets_and_documents_list_entries_then_groups() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let kb = KnowledgeBase::load(&root.join("config/knowledge_base.toml")).unwrap();
        let (owners, texts) = targets(&kb);
        assert_eq!(owners.len(), texts.len());
        let entries = kb.entries.len();
        assert_eq!(*owners.last().unwrap(), entries + kb.out_of_scope.len() - 1);
        assert!(owners.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(texts[0], kb.entries[0].questions[0]);
        assert_eq!(documents(&kb).len(), entries + kb.out_of_scope.len());
    }
}
