//! `POST /v1/chat/completions`: OpenAI-compatible chat answered by retrieval, with
//! server-sent events when `stream` is true. The conversation goes to `chat`: a question
//! costs one embedding, a follow-up ("agent", "thanks") none.

use super::embeddings::check_model;
use super::error::ApiError;
use super::input::{self, InputLimits};
use super::{json_response, Body, Ctx};
use crate::chat::turns::{Role, Turn};
use crate::chat::{ChatBot, Reply as BotReply, Step};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The chat request, validated.
struct ChatRequest {
    /// The conversation; its last user message passed the input limits.
    turns: Vec<Turn>,
    stream: bool,
    include_usage: bool,
}

pub async fn completions(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let obj = input::object(&body)?;
    check_model(ctx, obj)?;
    let req = parse(obj, ctx.state.config.limits.max_input_chars)?;
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
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let reply = Reply {
        id: next_id(),
        created: now_secs(),
        model: ctx.state.config.model.name.clone(),
    };
    if req.stream {
        return Ok(reply.stream(&content, &usage, req.include_usage, &retrieval));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": reply.id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage,
            "concur_retrieval": retrieval,
        }),
    ))
}

/// `concur_retrieval`: how the reply was chosen.
fn retrieval(bot: &ChatBot, reply: &BotReply) -> Value {
    let entry = reply.entry.map(|i| bot.entry(i));
    json!({
        "decision": reply.decision,
        "matched": reply.decision == "answer",
        "entry": entry.map(|e| e.id.as_str()),
        "title": entry.map(|e| e.title.as_str()),
        "score": reply.score,
        "reason": reply.reason,
    })
}

fn parse(obj: &Map<String, Value>, max_chars: usize) -> Result<ChatRequest, ApiError> {
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ))
        }
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("messages", "`messages` is required"))
        }
        Some(_) => return Err(ApiError::invalid("messages", "`messages` must be an array")),
    };
    let mut last_user = None;
    let mut turns = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| ApiError::invalid(&param, format!("`{param}` must be an object")))?;
        let role = input::string(m, "role")?
            .ok_or_else(|| ApiError::invalid(&format!("{param}.role"), "`role` is required"))?;
        if !ROLES.contains(&role) {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!("`{role}` is not one of {}", ROLES.join(", ")),
            ));
        }
        let text = content(m.get("content"), &param)?;
        let role = match role {
            "user" => {
                last_user = Some(i);
                Role::User
            }
            "assistant" => Role::Assistant,
            _ => Role::Other,
        };
        turns.push(Turn { role, text });
    }
    let Some(i) = last_user else {
        return Err(ApiError::invalid(
            "messages",
            "there is no message with role `user`",
        ));
    };
    let limits = InputLimits {
        max_inputs: 1,
        max_chars,
    };
    // Only the last user message is embedded: it alone must fit the input limits.
    turns[i].text = input::texts(
        Some(&Value::String(std::mem::take(&mut turns[i].text))),
        &format!("messages[{i}].content"),
        &limits,
    )?
    .remove(0);
    match obj.get("n") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(_) => return Err(ApiError::invalid("n", "only n = 1 is supported")),
    }
    input::string(obj, "user")?;
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        turns,
        stream: input::boolean(obj, "stream", false)?,
        include_usage,
    })
}

/// A message's text: a string, or an array of `{"type": "text", "text": ...}` parts.
fn content(value: Option<&Value>, param: &str) -> Result<String, ApiError> {
    let param = format!("{param}.content");
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .filter(|_| p.get("type").and_then(Value::as_str) == Some("text"))
                    .ok_or_else(|| {
                        ApiError::invalid(&param, "only text content parts are supported")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join("\n")),
        Some(_) => Err(ApiError::invalid(
            &param,
            format!("`{param}` must be a string or an array of text parts"),
        )),
    }
}

struct Reply {
    id: String,
    created: u64,
    model: String,
}

impl Reply {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    /// The answer as server-sent events in OpenAI's chunk format: the role, the content a
    /// few words at a time, the finish reason, optionally usage, then `[DONE]`.
    fn stream(
        &self,
        content: &str,
        usage: &Value,
        include_usage: bool,
        retrieval: &Value,
    ) -> Response<Body> {
        let mut events = vec![self.chunk(json!({"role": "assistant", "content": ""}), None)];
        let words: Vec<&str> = content.split_inclusive(' ').collect();
        for piece in words.chunks(4) {
            events.push(self.chunk(json!({"content": piece.concat()}), None));
        }
        let mut last = self.chunk(json!({}), Some("stop"));
        last["concur_retrieval"] = retrieval.clone();
        events.push(last);
        if include_usage {
            let mut u = self.chunk(json!({}), None);
            u["choices"] = json!([]);
            u["usage"] = usage.clone();
            events.push(u);
        }
        let mut body = String::new();
        for e in events {
            body.push_str("data: ");
            body.push_str(&e.to_string());
            body.push_str("\n\n");
        }
        body.push_str("data: [DONE]\n\n");
        let mut response = Response::new(Body::from(body));
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A unique completion id: start time and a counter, so no RNG is needed.
fn next_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("chatcmpl-{t:x}{n:x}")
}
