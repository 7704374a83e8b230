//! `POST /v1/chat/completions`: OpenAI-compatible chat, answered by retrieval (the
//! default) or by the generative model when `model` names it ([`super::chat_generate`]),
//! with server-sent events when `stream` is true. The retrieval bot gets the conversation
//! from `chat`: a question costs one embedding, a follow-up ("agent", "thanks") none.

use super::chat_types::*;
use super::error::ApiError;
use super::generate::{self, Target};
use super::input::{typed, InputLimits, Served};
use super::{chat_generate, json_response, sse, Body, Ctx};
use crate::chat::turns::{Role as TurnRole, Turn};
use crate::chat::{ChatBot, Reply as BotReply, Step};
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A chat request, validated: what the bot needs.
#[derive(Debug, Clone)]
pub struct ValidChat {
    /// The conversation; its last user message passed the input limits.
    pub turns: Vec<Turn>,
    pub stream: bool,
    pub include_usage: bool,
}

/// Types and checks a chat completions body for the retrieval bot.
pub fn parse_chat(body: Value, served: &Served<'_>) -> Result<ValidChat, ApiError> {
    check_chat(typed(body)?, served)
}

/// Checks a typed chat request for the retrieval bot.
fn check_chat(req: ChatCompletionRequest, served: &Served<'_>) -> Result<ValidChat, ApiError> {
    served.check_model(req.model.as_deref())?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    let mut turns: Vec<Turn> = req
        .messages
        .into_iter()
        .map(|m| Turn {
            role: match m.role {
                Role::User => TurnRole::User,
                Role::Assistant => TurnRole::Assistant,
                _ => TurnRole::Other,
            },
            text: m.content.map(Content::into_text).unwrap_or_default(),
        })
        .collect();
    let Some(i) = turns.iter().rposition(|t| t.role == TurnRole::User) else {
        return Err(ApiError::invalid(
            "messages",
            "there is no message with role `user`",
        ));
    };
    // Only the last user message is embedded: it alone must fit the input limits.
    let limits = InputLimits {
        max_inputs: 1,
        ..served.limits
    };
    turns[i].text = super::input::Input::One(std::mem::take(&mut turns[i].text))
        .texts(&format!("messages[{i}].content"), &limits)?
        .remove(0);
    Ok(ValidChat {
        turns,
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

/// Answers the last user message from the knowledge base, or continues the conversation
/// with the generative model (OpenAI chat completions API).
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "chat",
    operation_id = "createChatCompletion",
    request_body = ChatCompletionRequest,
    responses((status = 200,
        description = "The retrieval bot: the best entry's answer, or the fallback below \
            `chat.threshold`. The generative model: the generated reply. With \
            `stream: true`, server-sent events: one `data: {ChatCompletionChunk}` line per \
            event (the role, the text as it is generated, the finish reason, the usage when \
            `stream_options.include_usage`), then `data: [DONE]`.",
        content(
            (ChatCompletion = "application/json"),
            (ChatEvent = "text/event-stream"),
        )))
)]
pub async fn completions(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let req: ChatCompletionRequest = typed(body)?;
    let params = req.sampling().check(ctx.config.generation.max_tokens_cap)?;
    match generate::target(ctx, req.model.as_deref(), Target::Retrieval)? {
        Target::Generative(g) => chat_generate::reply(ctx, &g, req, params).await,
        Target::Retrieval if req.grounded == Some(true) => Err(ApiError::invalid(
            "grounded",
            "`grounded` asks the generative model to answer from the knowledge base; the \
             retrieval bot always does: name the generative model in `model`",
        )),
        Target::Retrieval => {
            let req = check_chat(req, &ctx.served())?;
            retrieval_reply(ctx, req).await
        }
    }
}

/// The retrieval bot's reply.
async fn retrieval_reply(ctx: &mut Ctx<'_>, req: ValidChat) -> Result<Response<Body>, ApiError> {
    let bot = ctx
        .state
        .services()
        .and_then(|s| s.chat.clone())
        .ok_or_else(|| {
            ApiError::not_found("chat is disabled on this server (chat.enabled = false)")
        })?;
    let (answer, prompt_tokens) = match bot.step(&req.turns) {
        Step::Reply(answer) => (answer, 0),
        Step::Embed(text) => {
            let out = ctx.embed(vec![text.clone()], true).await?;
            (bot.answer(&text, &out.vectors[0]), out.tokens)
        }
    };
    let retrieval = retrieval(&bot, &answer);
    let content = answer.content;
    let completion_tokens = content.split_whitespace().count();
    let usage = ChatUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let reply = Reply::new(ctx.config.model.name.clone());
    if req.stream {
        let usage = req.include_usage.then_some(usage);
        return Ok(reply.stream(&content, usage, retrieval));
    }
    let completion = reply.completion(content, FinishReason::Stop, usage, Some(retrieval));
    Ok(json_response(StatusCode::OK, &completion))
}

/// `concur_retrieval`: how the reply was chosen.
pub(super) fn retrieval(bot: &ChatBot, reply: &BotReply) -> Retrieval {
    let entry = reply.entry.map(|i| bot.entry(i));
    Retrieval {
        decision: reply.decision.to_string(),
        matched: reply.decision == "answer",
        entry: entry.map(|e| e.id.clone()),
        title: entry.map(|e| e.title.clone()),
        score: reply.score,
        reason: reply.reason.clone(),
    }
}

/// What every chunk of one reply repeats.
pub(super) struct Reply {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Reply {
    pub fn new(model: String) -> Reply {
        Reply {
            id: next_id("chatcmpl"),
            created: now_secs(),
            model,
        }
    }

    pub fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: ChunkObject::ChatCompletionChunk,
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: None,
            concur_retrieval: None,
        }
    }

    /// The whole answer as one chat completion (no streaming).
    pub fn completion(
        self,
        content: String,
        finish_reason: FinishReason,
        usage: ChatUsage,
        retrieval: Option<Retrieval>,
    ) -> ChatCompletion {
        ChatCompletion {
            id: self.id,
            object: CompletionObject::ChatCompletion,
            created: self.created,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: AssistantRole::Assistant,
                    content,
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
            concur_retrieval: retrieval,
        }
    }

    /// The answer as server-sent events in OpenAI's chunk format: the role, the content a
    /// few words at a time, the finish reason, optionally usage, then `[DONE]`.
    fn stream(
        &self,
        content: &str,
        usage: Option<ChatUsage>,
        retrieval: Retrieval,
    ) -> Response<Body> {
        let text = |t: String| Delta {
            role: None,
            content: Some(t),
        };
        let mut first = text(String::new());
        first.role = Some(AssistantRole::Assistant);
        let mut events = vec![self.chunk(first, None)];
        let words: Vec<&str> = content.split_inclusive(' ').collect();
        for piece in words.chunks(4) {
            events.push(self.chunk(text(piece.concat()), None));
        }
        let mut last = self.chunk(Delta::default(), Some(FinishReason::Stop));
        last.concur_retrieval = Some(retrieval);
        events.push(last);
        if let Some(usage) = usage {
            let mut u = self.chunk(Delta::default(), None);
            u.choices.clear();
            u.usage = Some(usage);
            events.push(u);
        }
        let mut body = String::new();
        for e in events {
            sse::push_event(&mut body, &e);
        }
        sse::push_done(&mut body);
        sse::response(super::full(body))
    }
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A unique completion id: start time and a counter, so no RNG is needed.
pub(super) fn next_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{t:x}{n:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SERVED: Served<'static> = Served {
        model: "all-MiniLM-L6-v2",
        limits: InputLimits {
            max_inputs: 8,
            max_chars: 20,
        },
    };

    #[test]
    fn the_last_user_message_is_the_question() {
        let body = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": null},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "tool"},
        ], "stream": true, "stream_options": {"include_usage": true}});
        let req = parse_chat(body, &SERVED).unwrap();
        assert_eq!(req.turns.len(), 4);
        assert_eq!(req.turns[2].text, "a\nb");
        assert!(req.turns[2].role == TurnRole::User && req.turns[1].role == TurnRole::Assistant);
        assert!(req.stream && req.include_usage);
    }

    #[test]
    fn refusals_name_the_field() {
        let user = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
        let image = json!([{"type": "image_url", "image_url": {"url": "x"}}]);
        let cases = [
            (
                json!({"messages": [{"role": "wizard"}]}),
                422,
                "messages[0].role",
            ),
            (
                json!({"messages": [{"content": "hi"}]}),
                422,
                "messages[0].role",
            ),
            (user(image), 422, "messages[0].content"),
            (user(json!(5)), 422, "messages[0].content"),
            (user(json!("  ")), 422, "messages[0].content"),
            (user(json!("x".repeat(21))), 413, "messages[0].content"),
            (
                json!({"messages": [{"role": "system", "content": "x"}]}),
                422,
                "messages",
            ),
            (json!({"messages": []}), 422, "messages"),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}),
                422,
                "n",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"}),
                404,
                "model",
            ),
            (json!({"messages": "hi"}), 422, "messages"),
        ];
        for (body, status, param) in cases {
            let e = parse_chat(body.clone(), &SERVED).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.param.as_deref()),
                (status, Some(param)),
                "{body}"
            );
        }
    }
}
