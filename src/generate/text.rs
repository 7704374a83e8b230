//! Text in and out of the generative model: the ChatML template, the tokenizer built from
//! the GGUF file's metadata, incremental detokenization and stop sequences.

use crate::engine::EngineError;
use std::path::Path;
use tokenizers::Tokenizer;

/// The model's tokenizer and chat template.
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    /// The template's system message when a conversation brings none.
    default_system: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// SmolLM2-Instruct's own default (its GGUF chat template).
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

impl ChatTokenizer {
    pub fn load(dir: &Path, default_system: Option<String>) -> Result<ChatTokenizer, EngineError> {
        let path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path)
            .map_err(|e| EngineError::load(format!("{}: {e}", path.display())))?;
        Ok(ChatTokenizer {
            tokenizer,
            default_system: default_system.unwrap_or_else(|| DEFAULT_SYSTEM.into()),
        })
    }

    /// Wraps a tokenizer built in code (tests of the scheduler).
    pub fn from_tokenizer(tokenizer: Tokenizer) -> ChatTokenizer {
        ChatTokenizer {
            tokenizer,
            default_system: DEFAULT_SYSTEM.into(),
        }
    }

    /// Token ids of `text`; ChatML markers in it are read as the special tokens they name,
    /// as llama.cpp reads a rendered template.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// `ids` as text, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// The ChatML prompt for `messages`, ending where the assistant's reply begins.
    pub fn render_chat(&self, messages: &[Message]) -> String {
        let mut out = String::new();
        if messages.first().is_none_or(|m| m.role != "system") {
            push_turn(&mut out, "system", &self.default_system);
        }
        for m in messages {
            push_turn(&mut out, &m.role, &m.content);
        }
        out.push_str("<|im_start|>assistant\n");
        out
    }
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

/// Turns a growing list of token ids into text deltas without splitting a character: a
/// byte-level token may end inside a UTF-8 sequence, so text is released only once it
/// decodes without a replacement character (the window approach of
/// text-generation-inference: decode a few tokens of context, emit what is new).
#[derive(Debug, Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// Adds one token; returns the text it completes, if any.
    pub fn push(&mut self, tokenizer: &ChatTokenizer, id: u32) -> String {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read]);
        let after = tokenizer.decode(&self.ids[self.prefix..]);
        if after.len() > before.len()
            && !after.ends_with('\u{FFFD}')
            && after.is_char_boundary(before.len())
        {
            let delta = after[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            delta
        } else {
            String::new()
        }
    }
}

/// Holds back text that may be the start of a stop sequence, and finds the stop.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What the matcher lets through for one delta.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// Text to send now (maybe empty); more may follow.
    Text(String),
    /// A stop sequence was found: send this text, then end the completion.
    Stop(String),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, delta: &str) -> Release {
        self.held.push_str(delta);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Release::Stop(text);
        }
        // Keep the longest tail that is a prefix of some stop sequence.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .rev()
                    .filter(move |&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|p| self.held.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Release::Text(text)
    }

    /// Text held back when the completion ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_sequence_split_across_deltas_is_found_and_not_sent() {
        let mut m = StopMatcher::new(vec!["\n\nUser:".into()]);
        assert_eq!(m.push("Hello"), Release::Text("Hello".into()));
        assert_eq!(m.push(" there\n"), Release::Text(" there".into()));
        assert_eq!(m.push("\nUs"), Release::Text("".into()));
        assert_eq!(m.push("er: hi"), Release::Stop("".into()));
    }

    #[test]
    fn held_text_that_turns_out_not_to_stop_is_released() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("the E"), Release::Text("the ".into()));
        assert_eq!(m.push("ND"), Release::Stop("".into()));
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("E"), Release::Text("".into()));
        assert_eq!(m.push("x"), Release::Text("Ex".into()));
        assert_eq!(m.push("EN"), Release::Text("".into()));
        assert_eq!(m.flush(), "EN");
    }

    #[test]
    fn without_stops_everything_passes() {
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("abc"), Release::Text("abc".into()));
    }
}
