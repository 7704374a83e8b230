//! The request and response types of `POST /v1/completions` (OpenAI's legacy completions),
//! in OpenAI's shape. The handler reads and writes exactly these, and the OpenAPI document
//! is generated from them.

use super::chat_types::{event_schema, event_schemas, ChatUsage, FinishReason, StreamOptions};
use super::gen_params::{SamplingFields, Stop};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// An OpenAI completions request: the generative model continues `prompt`. Other OpenAI
/// fields (echo, suffix, logprobs, ...) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "model": "SmolLM2-135M-Instruct",
    "prompt": "The capital of France is",
    "max_tokens": 12,
    "temperature": 0
}))]
pub struct CompletionRequest {
    /// The generative model (`generation.name`; the default). The embedding model does
    /// not serve completions: naming it, or any other model, is 404.
    pub model: Option<String>,
    pub prompt: Prompt,
    /// Send server-sent events of `CompletionChunk`s. Default `false`.
    #[schema(default = false)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Only 1 is supported.
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u64>,
    /// Tokens to generate at most. Default `generation.default_max_tokens` (less when the
    /// prompt leaves less room in the context); at most `generation.max_tokens_cap`.
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
    /// 0 picks the most likely token (greedy, repeatable); default 1.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Sample from the most likely tokens whose probabilities add up to this; default 1.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Makes sampling repeatable: the same request with the same seed gets the same text.
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    /// Accepted for compatibility; not used.
    pub user: Option<String>,
}

impl CompletionRequest {
    /// The sampling fields, for checking.
    pub fn sampling(&self) -> SamplingFields {
        SamplingFields {
            max_tokens: self.max_tokens,
            max_completion_tokens: None,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop.clone(),
            n: self.n,
        }
    }
}

/// One prompt, as text: the model continues it as written (no chat template).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Prompt(pub String);

/// Typed by hand so that the forms OpenAI also takes (lists of prompts, token ids) get a
/// clear refusal.
impl TryFrom<Value> for Prompt {
    type Error = String;
    fn try_from(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) if s.is_empty() => Err("must not be empty".into()),
            Value::String(s) => Ok(Prompt(s)),
            Value::Array(_) => Err(
                "must be one prompt as a string; lists of prompts and token ids are not \
                 supported"
                    .into(),
            ),
            _ => Err("must be a string".into()),
        }
    }
}

impl PartialSchema for Prompt {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .description(Some(
                "The text to continue: one prompt (lists and token ids are not supported).",
            ))
            .into()
    }
}

impl ToSchema for Prompt {}

/// `"text_completion"`: completions and their chunks alike.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum TextCompletionObject {
    #[serde(rename = "text_completion")]
    TextCompletion,
}

/// The reply (without `stream`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Completion {
    pub id: String,
    pub object: TextCompletionObject,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: ChatUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: FinishReason,
}

/// One server-sent event of a streamed completion (`data: {chunk}`): the text as it is
/// generated, then an empty text with the finish reason, then (with
/// `stream_options.include_usage`) a chunk with no choices and the usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionChunk {
    pub id: String,
    pub object: TextCompletionObject,
    pub created: u64,
    pub model: String,
    /// Empty in the usage chunk.
    pub choices: Vec<CompletionChunkChoice>,
    /// Only in the last chunk, when `stream_options.include_usage` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionChunkChoice {
    pub text: String,
    pub index: u32,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<FinishReason>,
}

/// One server-sent event of a streamed completion: `data` is a `CompletionChunk` as JSON,
/// or `[DONE]` at the end, or (a generation that fails after it started) an
/// `ErrorResponse` as the last event instead of `[DONE]`.
pub struct CompletionEvent;

impl PartialSchema for CompletionEvent {
    fn schema() -> RefOr<Schema> {
        event_schema::<CompletionChunk>()
    }
}

impl ToSchema for CompletionEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CompletionEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        event_schemas::<CompletionChunk>(schemas);
    }
}
