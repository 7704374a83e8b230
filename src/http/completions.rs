//! `POST /v1/completions`: OpenAI's legacy completions, served by the generative model
//! only. The prompt is continued as written (no chat template), whole or as server-sent
//! events when `stream` is true.

use super::chat::{next_id, now_secs};
use super::chat_types::ChatUsage;
use super::completions_types::*;
use super::error::ApiError;
use super::generate::{self, Target};
use super::input::typed;
use super::sse::{self, push_event, Framing};
use super::{json_response, Body, Ctx};
use crate::generate::{FinishReason, Generator};
use hyper::{Response, StatusCode};
use serde_json::Value;

/// Continues a prompt with the generative model (OpenAI completions API).
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "completions",
    operation_id = "createCompletion",
    request_body = CompletionRequest,
    responses((status = 200,
        description = "The generated continuation. With `stream: true`, server-sent events: \
            one `data: {CompletionChunk}` line per piece of text as it is generated, one \
            with the finish reason, one with the usage when \
            `stream_options.include_usage`, then `data: [DONE]`.",
        content(
            (Completion = "application/json"),
            (CompletionEvent = "text/event-stream"),
        )))
)]
pub async fn create(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let req: CompletionRequest = typed(body)?;
    let params = req.sampling().check(ctx.config.generation.max_tokens_cap)?;
    let generator = generator(ctx, req.model.as_deref())?;
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let (tokens, first) = generate::start(ctx, &generator, req.prompt.0, "prompt", params).await?;
    let head = Head {
        id: next_id("cmpl"),
        created: now_secs(),
        model: generator.model_name().to_string(),
    };
    if req.stream.unwrap_or(false) {
        let framing = CompletionFraming {
            head,
            include_usage,
        };
        return Ok(sse::stream(tokens, first, framing));
    }
    let done = generate::collect(tokens, first).await?;
    let completion = Completion {
        id: head.id,
        object: TextCompletionObject::TextCompletion,
        created: head.created,
        model: head.model,
        choices: vec![CompletionChoice {
            text: done.text,
            index: 0,
            logprobs: None,
            finish_reason: done.reason.into(),
        }],
        usage: done.usage,
    };
    Ok(json_response(StatusCode::OK, &completion))
}

/// The generative model, named or by default; the embedding model does not complete.
fn generator(ctx: &Ctx<'_>, model: Option<&str>) -> Result<Generator, ApiError> {
    let served = ctx.state.services().and_then(|s| s.generator.clone());
    let default = served.clone().map_or(Target::Retrieval, Target::Generative);
    match (generate::target(ctx, model, default)?, model) {
        (Target::Generative(g), _) => Ok(g),
        (Target::Retrieval, None) => Err(ApiError::not_found(
            "completions need the generative model, and generation is disabled on this \
             server (generation.enabled = false)",
        )),
        (Target::Retrieval, Some(name)) => {
            let instead = served.map_or(String::new(), |g| format!("; use `{}`", g.model_name()));
            Err(ApiError::model_not_found(format!(
                "the model `{name}` is an embedding model (it answers chat by retrieval) \
                 and does not serve completions{instead}"
            )))
        }
    }
}

/// What every chunk of one completion repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn chunk(&self, text: String, finish: Option<FinishReason>) -> CompletionChunk {
        CompletionChunk {
            id: self.id.clone(),
            object: TextCompletionObject::TextCompletion,
            created: self.created,
            model: self.model.clone(),
            choices: vec![CompletionChunkChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: finish.map(Into::into),
            }],
            usage: None,
        }
    }
}

/// Completion chunks: each piece of text, an empty one with the finish reason, then the
/// usage when asked for.
struct CompletionFraming {
    head: Head,
    include_usage: bool,
}

impl Framing for CompletionFraming {
    fn start(&mut self, _: &mut String) {}

    fn text(&mut self, text: String, out: &mut String) {
        push_event(out, &self.head.chunk(text, None));
    }

    fn finish(&mut self, reason: FinishReason, usage: ChatUsage, out: &mut String) {
        push_event(out, &self.head.chunk(String::new(), Some(reason)));
        if self.include_usage {
            let mut chunk = self.head.chunk(String::new(), None);
            chunk.choices.clear();
            chunk.usage = Some(usage);
            push_event(out, &chunk);
        }
    }
}
