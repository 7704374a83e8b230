//! What the generating routes share: which model a request names, and running a prompt
//! through the [`Generator`] up to its first event (streamed) or its last (not streamed).

use super::chat_types::ChatUsage;
use super::error::ApiError;
use super::gen_params::GenParams;
use super::sse::usage;
use super::Ctx;
use crate::generate::{FinishReason, GenError, GenEvent, GenRequest, Generator, TokenStream};
use crate::state::names_model;

/// Prompts longer than this are tokenized on the blocking pool, as in the embedding
/// pipeline: a few KiB take tens of microseconds, 100 KiB take milliseconds.
const INLINE_ENCODE_BYTES: usize = 16 * 1024;

/// Which model answers a request.
pub enum Target {
    /// The retrieval bot (the embedding model's name).
    Retrieval,
    Generative(Generator),
}

/// The model `model` names; `default` when it names none. The generative model's name
/// while generation is off, or an unknown name, is 404 `model_not_found`.
pub fn target(ctx: &Ctx<'_>, model: Option<&str>, default: Target) -> Result<Target, ApiError> {
    let Some(name) = model else {
        return Ok(default);
    };
    let generation = &ctx.config.generation;
    let generator = ctx.state.services().and_then(|s| s.generator.clone());
    if names_model(name, &generation.name) {
        return generator.map(Target::Generative).ok_or_else(|| {
            ApiError::model_not_found(format!(
                "the model `{name}` is not served: generation is disabled on this server \
                 (generation.enabled = false)"
            ))
        });
    }
    if names_model(name, &ctx.config.model.name) {
        return Ok(Target::Retrieval);
    }
    let mut served = format!("`{}`", ctx.config.model.name);
    if let Some(g) = generator {
        served.push_str(&format!(" and `{}`", g.model_name()));
    }
    Err(ApiError::model_not_found(format!(
        "the model `{name}` does not exist; this server serves {served}"
    )))
}

/// Encodes `prompt`, queues it, and waits for its first event, so that a request refused
/// or expired before its first token is answered with its error status, never with a
/// stream that fails at once. `param` names the field the prompt came from.
pub async fn start(
    ctx: &Ctx<'_>,
    generator: &Generator,
    prompt: String,
    param: &str,
    params: GenParams,
) -> Result<(TokenStream, GenEvent), ApiError> {
    let ids = encode(generator, prompt)
        .await
        .map_err(|e| ApiError::invalid(param, format!("`{param}` cannot be tokenized: {e}")))?;
    let context = generator.info().max_context;
    // Without `max_tokens`, the default, or what room the prompt leaves when that is less.
    let max_tokens = params.max_tokens.unwrap_or_else(|| {
        let room = context.saturating_sub(ids.len()).max(1);
        ctx.config.generation.default_max_tokens.min(room)
    });
    let request = GenRequest {
        prompt: ids,
        sampling: params.sampling,
        max_tokens,
        stop: params.stop,
        deadline: Some(ctx.generation_deadline()),
    };
    let at_fault = |e: GenError| {
        let named = matches!(e, GenError::ContextTooLong { .. });
        let e = ApiError::from(e);
        if named {
            e.param(param)
        } else {
            e
        }
    };
    let mut tokens = generator.submit(request).map_err(at_fault)?;
    match tokens.next().await {
        Some(GenEvent::Failed(e)) => Err(at_fault(e)),
        Some(first) => Ok((tokens, first)),
        None => Err(ApiError::from(GenError::ShuttingDown)),
    }
}

/// Token ids of `prompt`, off the event loop when it is long.
async fn encode(generator: &Generator, prompt: String) -> Result<Vec<u32>, String> {
    if prompt.len() <= INLINE_ENCODE_BYTES {
        return generator.tokenizer().encode(&prompt);
    }
    let g = generator.clone();
    tokio::task::spawn_blocking(move || g.tokenizer().encode(&prompt))
        .await
        .unwrap_or_else(|e| Err(format!("the tokenizer failed: {e}")))
}

/// A completion read to its end.
pub struct Completed {
    pub text: String,
    pub reason: FinishReason,
    pub usage: ChatUsage,
}

/// Reads a stream to its end (a response that is not streamed). A failure after the first
/// token still has a status to send: the error table's.
pub async fn collect(mut tokens: TokenStream, first: GenEvent) -> Result<Completed, ApiError> {
    let mut text = String::new();
    let mut event = Some(first);
    loop {
        match event.take() {
            Some(GenEvent::Text { text: t, .. }) => text.push_str(&t),
            Some(GenEvent::Done {
                reason,
                prompt_tokens,
                completion_tokens,
            }) => {
                return Ok(Completed {
                    text,
                    reason,
                    usage: usage(prompt_tokens, completion_tokens),
                })
            }
            Some(GenEvent::Failed(e)) => return Err(e.into()),
            None => return Err(GenError::ShuttingDown.into()),
        }
        event = tokens.next().await;
    }
}
