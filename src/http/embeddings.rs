//! `POST /v1/embeddings` (OpenAI) and `POST /embed` (text-embeddings-inference).

use super::error::ApiError;
use super::input::{self, InputLimits};
use super::{json_response, Body, Ctx};
use crate::engine::pooling::normalize;
use crate::pipeline::Embeddings;
use base64::Engine as _;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

/// Dimension of the served model's vectors.
const DIM: usize = 384;

fn limits(ctx: &Ctx<'_>) -> InputLimits {
    InputLimits {
        max_inputs: ctx.state.config.limits.max_inputs,
        max_chars: ctx.state.config.limits.max_input_chars,
    }
}

/// Checks the optional `model` field against the served model.
pub fn check_model(ctx: &Ctx<'_>, obj: &Map<String, Value>) -> Result<(), ApiError> {
    match input::string(obj, "model")? {
        Some(name) if !ctx.state.is_served_model(name) => Err(ApiError::model_not_found(format!(
            "the model `{name}` does not exist; this server serves `{}`",
            ctx.state.config.model.name
        ))),
        _ => Ok(()),
    }
}

/// The OpenAI embeddings API: always normalised, float or base64 (little-endian f32).
pub async fn openai(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let obj = input::object(&body)?;
    check_model(ctx, obj)?;
    let texts = input::texts(obj.get("input"), "input", &limits(ctx))?;
    let base64 = match input::string(obj, "encoding_format")? {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`{other}` is not one of float, base64"),
            ))
        }
    };
    match obj.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(DIM as u64) => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "dimensions",
                format!("this model only produces {DIM} dimensions"),
            ))
        }
    }
    input::string(obj, "user")?;
    let truncate = input::boolean(obj, "truncate", true)?;
    let out = ctx.embed(texts, truncate).await?;
    let tokens = out.tokens;
    let data: Vec<Value> = normalized(out)
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": ctx.state.config.model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// The text-embeddings-inference API: `{"inputs", "normalize", "truncate"}` -> `[[f32]]`.
pub async fn tei(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let obj = input::object(&body)?;
    let texts = input::texts(obj.get("inputs"), "inputs", &limits(ctx))?;
    let normalize_them = input::boolean(obj, "normalize", true)?;
    let truncate = input::boolean(obj, "truncate", true)?;
    let out = ctx.embed(texts, truncate).await?;
    let vectors = if normalize_them {
        normalized(out)
    } else {
        out.vectors
    };
    Ok(json_response(StatusCode::OK, &json!(vectors)))
}

fn normalized(out: Embeddings) -> Vec<Vec<f32>> {
    let mut vectors = out.vectors;
    vectors.iter_mut().for_each(|v| normalize(v));
    vectors
}
