//! The generative model's chat replies: the conversation rendered with the model's chat
//! template, generated, and sent whole or chunk by chunk as the tokens come.
//!
//! Grounded mode (`"grounded": true`): the retrieval bot finds its best knowledge-base
//! entry for the last user message, even one below its answer threshold, and the entry
//! goes into the system message, so the small model answers from the knowledge base
//! instead of from its own memory. The reply's `concur_retrieval` names the entry and
//! the bot's own decision, so a client can tell a confident match from a weak one.

use super::chat::{retrieval, Reply};
use super::chat_types::*;
use super::error::ApiError;
use super::gen_params::GenParams;
use super::generate;
use super::input::{Input, InputLimits};
use super::sse::{self, push_event, Framing};
use super::{json_response, Body, Ctx};
use crate::generate::text::Message as Turn;
use crate::generate::{FinishReason as GenFinish, Generator};
use hyper::{Response, StatusCode};

/// What a grounded system message says before the entry.
const GROUNDING: &str = "Answer using only this information:";

/// Generates the reply to a chat request that names the generative model.
pub async fn reply(
    ctx: &mut Ctx<'_>,
    generator: &Generator,
    req: ChatCompletionRequest,
    params: GenParams,
) -> Result<Response<Body>, ApiError> {
    let stream = req.stream.unwrap_or(false);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let mut turns = turns(req.messages)?;
    let retrieval = match req.grounded {
        Some(true) => Some(ground(ctx, &mut turns).await?),
        _ => None,
    };
    let prompt = generator.tokenizer().render_chat(&turns);
    let (tokens, first) = generate::start(ctx, generator, prompt, "messages", params).await?;
    let reply = Reply::new(generator.model_name().to_string());
    if stream {
        let framing = ChatFraming {
            reply,
            include_usage,
            retrieval,
        };
        return Ok(sse::stream(tokens, first, framing));
    }
    let done = generate::collect(tokens, first).await?;
    let completion = reply.completion(done.text, done.reason.into(), done.usage, retrieval);
    Ok(json_response(StatusCode::OK, &completion))
}

/// The conversation in the template's roles: `developer` is OpenAI's newer `system`;
/// tool results have no place in this model's template.
fn turns(messages: Vec<Message>) -> Result<Vec<Turn>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role {
                Role::System | Role::Developer => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => {
                    return Err(ApiError::invalid(
                        &format!("messages[{i}].role"),
                        "the generative model takes system, developer, user and assistant \
                         messages, not tool results",
                    ))
                }
            };
            Ok(Turn {
                role: role.into(),
                content: m.content.map(Content::into_text).unwrap_or_default(),
            })
        })
        .collect()
}

/// Puts the best knowledge-base entry for the last user message into the system message
/// (after the client's own, if it sent one); returns how the entry was chosen.
async fn ground(ctx: &mut Ctx<'_>, turns: &mut Vec<Turn>) -> Result<Retrieval, ApiError> {
    let bot = ctx
        .state
        .services()
        .and_then(|s| s.chat.clone())
        .ok_or_else(|| {
            ApiError::not_found(
                "grounded replies need the knowledge base, and chat is disabled on this \
                 server (chat.enabled = false)",
            )
            .param("grounded")
        })?;
    let Some(i) = turns.iter().rposition(|t| t.role == "user") else {
        return Err(ApiError::invalid(
            "messages",
            "a grounded reply needs a message with role `user` to look up",
        ));
    };
    // The question is embedded, so it must fit the embedding inputs' limits.
    let limits = InputLimits {
        max_inputs: 1,
        ..ctx.served().limits
    };
    let question = Input::One(turns[i].content.clone())
        .texts(&format!("messages[{i}].content"), &limits)?
        .remove(0);
    let out = ctx.embed(vec![question.clone()], true).await?;
    // Those timings describe the embedding, not this response: no timing headers.
    ctx.timings = None;
    let answer = bot.answer(&question, &out.vectors[0]);
    let information = match answer.entry.map(|e| bot.entry(e)) {
        Some(entry) => format!("{GROUNDING} {}. {}", entry.title, entry.answer),
        None => format!("{GROUNDING} {}", bot.fallback()),
    };
    match turns.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{information}", first.content);
        }
        _ => turns.insert(
            0,
            Turn {
                role: "system".into(),
                content: information,
            },
        ),
    }
    Ok(retrieval(&bot, &answer))
}

/// Chat chunks: the role, each piece of text, the finish reason (with the grounding
/// entry), then the usage when asked for.
struct ChatFraming {
    reply: Reply,
    include_usage: bool,
    retrieval: Option<Retrieval>,
}

impl Framing for ChatFraming {
    fn start(&mut self, out: &mut String) {
        let role = Delta {
            role: Some(AssistantRole::Assistant),
            content: Some(String::new()),
        };
        push_event(out, &self.reply.chunk(role, None));
    }

    fn text(&mut self, text: String, out: &mut String) {
        let delta = Delta {
            role: None,
            content: Some(text),
        };
        push_event(out, &self.reply.chunk(delta, None));
    }

    fn finish(&mut self, reason: GenFinish, usage: ChatUsage, out: &mut String) {
        let mut last = self.reply.chunk(Delta::default(), Some(reason.into()));
        last.concur_retrieval = self.retrieval.take();
        push_event(out, &last);
        if self.include_usage {
            let mut chunk = self.reply.chunk(Delta::default(), None);
            chunk.choices.clear();
            chunk.usage = Some(usage);
            push_event(out, &chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(v: serde_json::Value) -> Vec<Message> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn roles_map_to_the_template_s() {
        let t = turns(messages(json!([
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant"},
        ])))
        .unwrap();
        let roles: Vec<&str> = t.iter().map(|t| t.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        assert_eq!((t[1].content.as_str(), t[2].content.as_str()), ("hi", ""));
    }

    #[test]
    fn empty_conversations_and_tool_results_are_refused() {
        let e = turns(vec![]).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.param.as_deref()),
            (422, Some("messages"))
        );
        let e = turns(messages(json!([{"role": "tool", "content": "42"}]))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }
}
