//! Tokenization with the model's own `tokenizer.json`, as sentence-transformers does it:
//! special tokens added, truncated to the model's max length, no padding (the engine pads
//! each batch to its longest row).

use crate::engine::TokenIds;
use std::path::Path;
use tokenizers::Tokenizer;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenizeError {
    #[error("input {index} has {tokens} tokens, more than the model's maximum of {max}; send `truncate: true` or shorten it")]
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    #[error("cannot tokenize input {index}: {message}")]
    Failed { index: usize, message: String },
}

/// The model's tokenizer with sentence-transformers' settings.
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    sep_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`. Its own truncation (128) and fixed padding (128) are for
    /// another use of the model; both are turned off here and truncation is done in
    /// [`TextTokenizer::encode`] at `max_len` (256 for sentence-transformers).
    pub fn load(path: &Path, max_len: usize) -> Result<TextTokenizer, String> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| format!("cannot configure tokenizer: {e}"))?;
        let sep_id = inner
            .token_to_id("[SEP]")
            .ok_or_else(|| format!("{} has no [SEP] token", path.display()))?;
        Ok(TextTokenizer {
            inner,
            max_len,
            sep_id,
        })
    }

    /// Token ids of `text` with `[CLS]`/`[SEP]`. Longer than the maximum: truncated (the
    /// last kept piece is followed by `[SEP]`, exactly like the library's own truncation)
    /// or an error, as `truncate` says. `index` names the input in errors.
    pub fn encode(
        &self,
        index: usize,
        text: &str,
        truncate: bool,
    ) -> Result<TokenIds, TokenizeError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizeError::Failed {
                index,
                message: e.to_string(),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > self.max_len {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    index,
                    tokens: ids.len(),
                    max: self.max_len,
                });
            }
            ids.truncate(self.max_len - 1);
            ids.push(self.sep_id);
        }
        Ok(ids)
    }
}
