//! The retrieval chat bot: a knowledge base of questions and answers, embedded once at
//! start through the same pipeline as every request, and matched by cosine similarity.

use crate::config::ChatConfig;
use crate::engine::pooling::{cosine, normalize};
use crate::pipeline::Pipeline;
use serde::Deserialize;
use std::time::Duration;

/// One knowledge-base entry as written in `config/knowledge_base.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub title: String,
    pub answer: String,
    pub questions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    entries: Vec<Entry>,
}

/// The best entry for a message, and whether it clears the threshold.
#[derive(Debug, Clone)]
pub struct Match<'a> {
    pub entry: &'a Entry,
    pub score: f32,
    pub confident: bool,
}

/// The knowledge base with one normalised vector per example question.
pub struct ChatBot {
    entries: Vec<Entry>,
    /// (entry index, vector) for every example question.
    questions: Vec<(usize, Vec<f32>)>,
    threshold: f32,
    fallback: String,
}

/// Loading the knowledge base at start is not a request: it may wait this long for its
/// batches even on a busy machine.
const BUILD_DEADLINE: Duration = Duration::from_secs(600);

impl ChatBot {
    /// Reads the knowledge base and embeds every example question.
    pub async fn build(
        config: &ChatConfig,
        pipeline: &Pipeline,
        chunk: usize,
    ) -> Result<ChatBot, String> {
        let path = &config.knowledge_base;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read knowledge base {}: {e}", path.display()))?;
        let file: File =
            toml::from_str(&text).map_err(|e| format!("knowledge base {}: {e}", path.display()))?;
        validate(&file.entries).map_err(|e| format!("knowledge base {}: {e}", path.display()))?;
        let owners: Vec<usize> = file
            .entries
            .iter()
            .enumerate()
            .flat_map(|(i, e)| std::iter::repeat_n(i, e.questions.len()))
            .collect();
        let texts: Vec<String> = file
            .entries
            .iter()
            .flat_map(|e| e.questions.clone())
            .collect();
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
        Ok(ChatBot {
            entries: file.entries,
            questions: owners.into_iter().zip(vectors).collect(),
            threshold: config.threshold,
            fallback: config.fallback.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn fallback(&self) -> &str {
        &self.fallback
    }

    /// The entry whose closest example question is most similar to `query`.
    pub fn best_match(&self, query: &[f32]) -> Option<Match<'_>> {
        let (owner, score) = self
            .questions
            .iter()
            .map(|(owner, v)| (*owner, cosine(query, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some(Match {
            entry: &self.entries[owner],
            score,
            confident: score >= self.threshold,
        })
    }
}

fn validate(entries: &[Entry]) -> Result<(), String> {
    if entries.is_empty() {
        return Err("has no entries".into());
    }
    let mut ids = std::collections::HashSet::new();
    for e in entries {
        if !ids.insert(e.id.as_str()) {
            return Err(format!("entry id `{}` appears twice", e.id));
        }
        if e.questions.is_empty() || e.questions.iter().any(|q| q.trim().is_empty()) {
            return Err(format!(
                "entry `{}` needs non-empty example questions",
                e.id
            ));
        }
        if e.answer.trim().is_empty() {
            return Err(format!("entry `{}` has an empty answer", e.id));
        }
    }
    Ok(())
}
