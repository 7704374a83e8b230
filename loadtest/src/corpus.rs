//! The chat-message corpus: one JSON object per line, `{"text": "..."}`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Default corpus shipped with the crate, resolved at build time so that
/// `cargo run -p loadtest` finds it from any working directory.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/chat.jsonl")
}

/// The prompts of `loadtest stream`: user messages to a general chat
/// assistant, from one-line questions to multi-paragraph requests.
pub fn chat_prompts_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/chat_prompts.jsonl")
}

#[derive(Deserialize)]
struct Line {
    text: String,
}

/// Parses JSON-lines text into messages. Blank lines are skipped; any other
/// malformed line is an error naming its line number, because silently
/// skipping it would change the workload being measured.
pub fn parse(contents: &str) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for (i, raw) in contents.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let line: Line =
            serde_json::from_str(raw).with_context(|| format!("corpus line {}", i + 1))?;
        texts.push(line.text);
    }
    if texts.is_empty() {
        bail!("corpus has no messages");
    }
    Ok(texts)
}

/// Reads and parses a corpus file.
pub fn load(path: &Path) -> Result<Vec<String>> {
    let contents = std::fs::read_to_string(path)
        .with_context(|| format!("reading corpus {}", path.display()))?;
    parse(&contents).with_context(|| format!("parsing corpus {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_skips_blanks() {
        let texts = parse("{\"text\": \"hi\"}\n\n{\"text\": \"how are you?\"}\n").unwrap();
        assert_eq!(texts, vec!["hi", "how are you?"]);
    }

    #[test]
    fn reports_bad_line_number() {
        let err = parse("{\"text\": \"a\"}\nnot json\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"));
    }

    #[test]
    fn empty_corpus_is_an_error() {
        assert!(parse("\n\n").is_err());
    }
}
