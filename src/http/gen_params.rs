//! The sampling fields chat and completions share (`max_tokens`, `temperature`, `top_p`,
//! `seed`, `stop`, `n`), checked once into what the generator takes.
//!
//! Both chat models check them, the retrieval bot too (it ignores them): a value the
//! OpenAPI document calls invalid is refused on every route that documents it.

use super::error::ApiError;
use crate::generate::Sampling;
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Stop sequences at most, as OpenAI allows.
pub const MAX_STOPS: usize = 4;

/// The sampling fields as sent; both request types carry them.
#[derive(Debug, Clone, Default)]
pub struct SamplingFields {
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<u64>,
}

/// The sampling fields, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    pub sampling: Sampling,
    /// None: `generation.default_max_tokens`, or less when the prompt leaves less room.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
}

impl SamplingFields {
    /// Checks every field; `cap` is `generation.max_tokens_cap`.
    pub fn check(self, cap: usize) -> Result<GenParams, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only n = 1 is supported"));
        }
        let mut max_tokens = None;
        // OpenAI's newer name wins when both are sent; each is checked under its own name.
        for (param, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if let Some(n) = value {
                max_tokens = Some(token_count(param, n, cap)?);
            }
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 2, not {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("`top_p` must be more than 0 and at most 1, not {top_p}"),
            ));
        }
        Ok(GenParams {
            sampling: Sampling {
                temperature: temperature as f32,
                top_p: top_p as f32,
                // Any 64-bit integer seeds the generator; its sign does not matter.
                seed: self.seed.map(|s| s as u64),
            },
            max_tokens,
            stop: self.stop.map(|s| s.0).unwrap_or_default(),
        })
    }
}

fn token_count(param: &str, n: u64, cap: usize) -> Result<usize, ApiError> {
    if n == 0 {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` must be at least 1"),
        ));
    }
    if n > cap as u64 {
        return Err(ApiError::invalid(
            param,
            format!(
                "`{param}` is {n}, more than this server's cap of {cap} \
                 (generation.max_tokens_cap)"
            ),
        ));
    }
    Ok(n as usize)
}

/// `stop`: one string, or a list of at most four; none may be empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Stop(pub Vec<String>);

/// Typed by hand so that each refusal says what is wrong, not serde's "did not match any
/// variant".
impl TryFrom<Value> for Stop {
    type Error = String;
    fn try_from(value: Value) -> Result<Self, String> {
        let stops = match value {
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(format!("item {i} is not a string")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("must be a string or a list of strings".into()),
        };
        if stops.len() > MAX_STOPS {
            return Err(format!(
                "{} stop sequences is more than the limit of {MAX_STOPS}",
                stops.len()
            ));
        }
        if stops.iter().any(String::is_empty) {
            return Err("a stop sequence must not be empty".into());
        }
        Ok(Stop(stops))
    }
}

impl PartialSchema for Stop {
    fn schema() -> RefOr<Schema> {
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
        };
        OneOfBuilder::new()
            .item(text())
            .item(ArrayBuilder::new().items(text()).max_items(Some(MAX_STOPS)))
            .description(Some(
                "Text that ends the completion (not included in it): one string or up to \
                 four.",
            ))
            .into()
    }
}

impl ToSchema for Stop {}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> SamplingFields {
        SamplingFields::default()
    }

    #[test]
    fn defaults_are_openai_s() {
        let p = fields().check(100).unwrap();
        assert_eq!(p.sampling, Sampling::default());
        assert_eq!((p.max_tokens, p.stop.len()), (None, 0));
    }

    #[test]
    fn the_newer_name_wins() {
        let p = SamplingFields {
            max_tokens: Some(5),
            max_completion_tokens: Some(7),
            ..fields()
        };
        assert_eq!(p.check(10).unwrap().max_tokens, Some(7));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                SamplingFields {
                    max_tokens: Some(11),
                    ..fields()
                },
                "max_tokens",
            ),
            (
                SamplingFields {
                    max_tokens: Some(0),
                    ..fields()
                },
                "max_tokens",
            ),
            (
                SamplingFields {
                    max_completion_tokens: Some(11),
                    ..fields()
                },
                "max_completion_tokens",
            ),
            (
                SamplingFields {
                    temperature: Some(3.0),
                    ..fields()
                },
                "temperature",
            ),
            (
                SamplingFields {
                    temperature: Some(-0.1),
                    ..fields()
                },
                "temperature",
            ),
            (
                SamplingFields {
                    top_p: Some(0.0),
                    ..fields()
                },
                "top_p",
            ),
            (
                SamplingFields {
                    top_p: Some(1.5),
                    ..fields()
                },
                "top_p",
            ),
            (
                SamplingFields {
                    n: Some(2),
                    ..fields()
                },
                "n",
            ),
        ];
        for (f, param) in cases {
            let e = f.clone().check(10).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.param.as_deref()),
                (422, Some(param)),
                "{f:?}"
            );
        }
    }

    #[test]
    fn stops_are_one_to_four_non_empty_strings() {
        let stop = |v: Value| serde_json::from_value::<Stop>(v).map(|s| s.0);
        assert_eq!(stop(serde_json::json!("x")).unwrap(), ["x"]);
        assert_eq!(stop(serde_json::json!(["a", "b"])).unwrap(), ["a", "b"]);
        assert!(stop(serde_json::json!(["a", "b", "c", "d", "e"])).is_err());
        assert!(stop(serde_json::json!([""])).is_err());
        assert!(stop(serde_json::json!([1])).is_err());
        assert!(stop(serde_json::json!(3)).is_err());
    }
}
