//! `POST /v1/embeddings` (OpenAI) and `POST /embed` (text-embeddings-inference): the
//! request and response types, which the OpenAPI document is generated from, and the
//! handlers that use them.

use super::error::ApiError;
use super::input::{typed, Input, Served};
use super::{json_response, Body, Ctx};
use crate::engine::pooling::normalize;
use crate::pipeline::Embeddings;
use base64::Engine as _;
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Dimension of the served model's vectors.
const DIM: u64 = 384;

/// The OpenAI embeddings request. Other OpenAI fields are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "all-MiniLM-L6-v2", "input": ["Where is my order?"]}))]
pub struct EmbeddingsRequest {
    pub input: Input,
    /// The served model (its short or hub name); any other is 404. Optional.
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<EncodingFormat>,
    /// Only the model's own dimension, 384, is accepted.
    #[schema(minimum = 384, maximum = 384)]
    pub dimensions: Option<u64>,
    /// Accepted for compatibility; not used.
    pub user: Option<String>,
    /// concur extension: `false` refuses inputs over the model's 256 word pieces (413)
    /// instead of truncating them. Default `true`.
    #[schema(default = true)]
    pub truncate: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// The text-embeddings-inference request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": "Where is my order?", "normalize": true}))]
pub struct EmbedRequest {
    pub inputs: Input,
    /// Scale each vector to unit length. Default `true`.
    #[schema(default = true)]
    pub normalize: Option<bool>,
    /// `false` refuses inputs over the model's 256 word pieces (413) instead of truncating
    /// them. Default `true`.
    #[schema(default = true)]
    pub truncate: Option<bool>,
}

/// An embeddings request, validated: what the pipeline needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEmbed {
    pub texts: Vec<String>,
    pub truncate: bool,
    pub normalize: bool,
    pub base64: bool,
}

/// `"list"`, the `object` of OpenAI list responses.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListObject {
    List,
}

/// `"embedding"`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingObject {
    Embedding,
}

/// The OpenAI embeddings response.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    pub object: ListObject,
    /// One entry per input, in input order.
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    pub object: EmbeddingObject,
    pub index: usize,
    pub embedding: Embedding,
}

/// A unit-length vector of 384 floats, or its little-endian f32 bytes in base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Embedding {
    Float(Vec<f32>),
    Base64(String),
}

/// Word pieces, counted after truncation.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Types and checks an OpenAI embeddings body.
pub fn parse_openai(body: Value, served: &Served<'_>) -> Result<ValidEmbed, ApiError> {
    let req: EmbeddingsRequest = typed(body)?;
    served.check_model(req.model.as_deref())?;
    if req.dimensions.is_some_and(|d| d != DIM) {
        return Err(ApiError::invalid(
            "dimensions",
            format!("this model only produces {DIM} dimensions"),
        ));
    }
    Ok(ValidEmbed {
        texts: req.input.texts("input", &served.limits)?,
        truncate: req.truncate.unwrap_or(true),
        normalize: true,
        base64: req.encoding_format == Some(EncodingFormat::Base64),
    })
}

/// Types and checks a text-embeddings-inference body.
pub fn parse_tei(body: Value, served: &Served<'_>) -> Result<ValidEmbed, ApiError> {
    let req: EmbedRequest = typed(body)?;
    Ok(ValidEmbed {
        texts: req.inputs.texts("inputs", &served.limits)?,
        truncate: req.truncate.unwrap_or(true),
        normalize: req.normalize.unwrap_or(true),
        base64: false,
    })
}

/// Creates embeddings (OpenAI API): always normalised, float or base64.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "embeddings",
    operation_id = "createEmbeddings",
    request_body = EmbeddingsRequest,
    responses((status = 200, description = "One vector per input", body = EmbeddingsResponse))
)]
pub async fn openai(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let req = parse_openai(body, &ctx.served())?;
    let out = ctx.embed(req.texts, req.truncate).await?;
    let tokens = out.tokens;
    let data = normalized(out)
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: EmbeddingObject::Embedding,
            index,
            embedding: if req.base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Embedding::Float(v)
            },
        })
        .collect();
    let body = EmbeddingsResponse {
        object: ListObject::List,
        data,
        model: ctx.config.model.name.clone(),
        usage: EmbeddingsUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Embeds texts (text-embeddings-inference API): one vector per input.
#[utoipa::path(
    post,
    path = "/embed",
    tag = "embeddings",
    operation_id = "embed",
    request_body = EmbedRequest,
    responses((status = 200, description = "One vector of 384 floats per input, in input order",
        body = Vec<Vec<f32>>))
)]
pub async fn tei(ctx: &mut Ctx<'_>, body: Value) -> Result<Response<Body>, ApiError> {
    let req = parse_tei(body, &ctx.served())?;
    let out = ctx.embed(req.texts, req.truncate).await?;
    let vectors = if req.normalize {
        normalized(out)
    } else {
        out.vectors
    };
    Ok(json_response(StatusCode::OK, &vectors))
}

fn normalized(out: Embeddings) -> Vec<Vec<f32>> {
    let mut vectors = out.vectors;
    vectors.iter_mut().for_each(|v| normalize(v));
    vectors
}
