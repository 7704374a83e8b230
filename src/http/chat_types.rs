//! The request and response types of `POST /v1/chat/completions`, in OpenAI's shape. The
//! handler reads and writes exactly these, and the OpenAPI document is generated from them.

use super::error::ErrorResponse;
use super::gen_params::{SamplingFields, Stop};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// An OpenAI chat completions request, answered by the retrieval bot (the default) or by
/// the generative model when `model` names it. The sampling fields are checked for both
/// and used by the generative model only; other OpenAI fields (tools, logprobs, ...) are
/// accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "model": "all-MiniLM-L6-v2",
    "messages": [{"role": "user", "content": "I forgot my password"}]
}))]
pub struct ChatCompletionRequest {
    /// The conversation. The retrieval bot answers its last `user` message; the
    /// generative model continues it (roles `system`, `developer`, `user`, `assistant`).
    #[schema(min_items = 1)]
    pub messages: Vec<Message>,
    /// The retrieval bot's model (the embedding model's short or hub name; the default)
    /// or the generative model's (`generation.name`, when generation is enabled); any
    /// other is 404.
    pub model: Option<String>,
    /// Answer as server-sent events of `ChatCompletionChunk`s. Default `false`.
    #[schema(default = false)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Only 1 is supported.
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u64>,
    /// Accepted for compatibility; not used.
    pub user: Option<String>,
    /// Tokens to generate at most. Default `generation.default_max_tokens` (less when the
    /// prompt leaves less room in the context); at most `generation.max_tokens_cap`.
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
    /// OpenAI's newer name for `max_tokens`; wins when both are sent.
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u64>,
    /// 0 picks the most likely token (greedy, repeatable); default 1.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Sample from the most likely tokens whose probabilities add up to this; default 1.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Makes sampling repeatable: the same request with the same seed gets the same text.
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    /// concur extension, generative model only: the retrieval bot's best knowledge-base
    /// entry for the last user message goes into the system message, so the model answers
    /// from the knowledge base (the reply's `concur_retrieval` says which entry). Needs
    /// `chat.enabled`. Default `false`.
    #[schema(default = false)]
    pub grounded: Option<bool>,
}

impl ChatCompletionRequest {
    /// The sampling fields, for checking.
    pub fn sampling(&self) -> SamplingFields {
        SamplingFields {
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop.clone(),
            n: self.n,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Message {
    pub role: Role,
    /// Missing or null for messages without text (an assistant's tool calls).
    pub content: Option<Content>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// A message's text: a string, or a list of text parts (joined with newlines).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(untagged, try_from = "Value")]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    pub fn into_text(self) -> String {
        match self {
            Content::Text(s) => s,
            Content::Parts(parts) => parts
                .into_iter()
                .map(|p| p.text)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Typed by hand so that an image or audio part gets a clear message, not serde's
/// "did not match any variant".
impl TryFrom<Value> for Content {
    type Error = String;
    fn try_from(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(Content::Text(s)),
            Value::Array(parts) => parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    serde_json::from_value::<ContentPart>(p)
                        .map_err(|_| format!("part {i}: only text content parts are supported"))
                })
                .collect::<Result<_, _>>()
                .map(Content::Parts),
            _ => Err("must be a string or an array of text parts".into()),
        }
    }
}

/// `{"type": "text", "text": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: TextPart,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPart {
    Text,
}

/// `"chat.completion"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum CompletionObject {
    #[serde(rename = "chat.completion")]
    ChatCompletion,
}

/// `"chat.completion.chunk"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum ChunkObject {
    #[serde(rename = "chat.completion.chunk")]
    ChatCompletionChunk,
}

/// `"assistant"`: the role of every reply.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssistantRole {
    Assistant,
}

/// Why the reply ended: `stop` (the retrieval bot's answer is always whole; the
/// generative model's end of turn or a stop sequence), or `length` (`max_tokens`, or the
/// context is full).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Stop,
    Length,
}

impl From<crate::generate::FinishReason> for FinishReason {
    fn from(r: crate::generate::FinishReason) -> Self {
        match r {
            crate::generate::FinishReason::Stop => FinishReason::Stop,
            crate::generate::FinishReason::Length => FinishReason::Length,
        }
    }
}

/// The reply (without `stream`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: CompletionObject,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: ChatUsage,
    /// How the retrieval bot chose its reply, or which entry grounded a generated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concur_retrieval: Option<Retrieval>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: FinishReason,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    pub role: AssistantRole,
    pub content: String,
}

/// The retrieval bot: word pieces of the question, words of the answer. The generative
/// model: tokens of the prompt (with the chat template) and of the completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// concur extension: how the reply was chosen.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Retrieval {
    /// `answer`, `fallback`, or a follow-up's reply (`handover`, `thanks`, ...).
    pub decision: String,
    /// Whether a knowledge-base entry answered (`decision` is `answer`).
    pub matched: bool,
    /// The answered entry's id, or for a fallback the closest one; null when none.
    pub entry: Option<String>,
    pub title: Option<String>,
    /// The entry's score; null for follow-ups answered without the model.
    pub score: Option<f32>,
    /// Why a question got the fallback: `below_threshold`, `out_of_scope:<group>` or
    /// `other_company:<name>`.
    pub reason: Option<String>,
}

/// One server-sent event of a streamed reply (`data: {chunk}`); the stream ends with
/// `data: [DONE]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: ChunkObject,
    pub created: u64,
    pub model: String,
    /// Empty in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the last chunk, when `stream_options.include_usage` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    /// Only in the chunk with the finish reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concur_retrieval: Option<Retrieval>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<FinishReason>,
}

/// What this chunk adds to the reply.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<AssistantRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One server-sent event of a streamed reply, described the way OpenAPI 3.1 tools read
/// `text/event-stream` (the schema of one event): `data` is a `ChatCompletionChunk` as
/// JSON, or `[DONE]` at the end, or (a generation that fails after it started) an
/// `ErrorResponse` as the last event instead of `[DONE]`. The handler writes exactly these.
pub struct ChatEvent;

impl PartialSchema for ChatEvent {
    fn schema() -> RefOr<Schema> {
        event_schema::<ChatCompletionChunk>()
    }
}

impl ToSchema for ChatEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ChatEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        event_schemas::<ChatCompletionChunk>(schemas);
    }
}

/// The schema of one event of a stream of `T` chunks.
pub fn event_schema<T: ToSchema>() -> RefOr<Schema> {
    let json = |name: Cow<'static, str>| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json")
            .content_schema(Some(Ref::from_schema_name(name)))
    };
    let done = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([DONE]));
    let data = OneOfBuilder::new()
        .item(json(T::name()))
        .item(done)
        .item(json(ErrorResponse::name()));
    ObjectBuilder::new()
        .property("data", data)
        .required("data")
        .description(Some(format!(
            "One server-sent event: `data: {{{}}}` per chunk, then `data: [DONE]`; a \
             generation that fails after it started ends with `data: {{ErrorResponse}}` \
             instead.",
            T::name()
        )))
        .into()
}

/// The schemas an event of `T` chunks refers to.
pub fn event_schemas<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into(), T::schema()));
    T::schemas(schemas);
    schemas.push((ErrorResponse::name().into(), ErrorResponse::schema()));
    <ErrorResponse as ToSchema>::schemas(schemas);
}

/// The data of the last event of a stream.
pub const DONE: &str = "[DONE]";
