//! Reading request bodies into their types, and the input shape both embeddings APIs share.
//!
//! Bodies are JSON values first (400 when they are not JSON), then typed with serde (422,
//! with `param` naming the field that did not fit), then checked against the limits.

use super::error::ApiError;
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Limits an input list must respect.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    pub max_inputs: usize,
    pub max_chars: usize,
}

/// What parsing a request needs to know about the server: its model and its limits.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    pub model: &'a str,
    pub limits: InputLimits,
}

impl Served<'_> {
    /// The optional `model` field must name the served model: any other is 404.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(name) if !crate::state::names_model(name, self.model) => {
                Err(ApiError::model_not_found(format!(
                    "the model `{name}` does not exist; this server serves `{}`",
                    self.model
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Types a JSON body as `T`; a value that does not fit is 422 naming the field.
pub fn typed<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let param = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(field) if path == "." => field.to_string(),
            Some(field) => format!("{path}.{field}"),
            None if path == "." => "body".to_string(),
            None => path,
        };
        ApiError::invalid(&param, format!("`{param}`: {message}"))
    })
}

/// One text or a list of texts: `"hello"` or `["hello", "world"]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    One(String),
    Many(Vec<String>),
}

impl Input {
    /// The texts, checked: at least one, at most `max_inputs`, none blank or too long.
    pub fn texts(self, param: &str, limits: &InputLimits) -> Result<Vec<String>, ApiError> {
        // A list's errors name the element (`input[2]`); a single text's name the field.
        let (texts, name): (_, &dyn Fn(usize) -> String) = match self {
            Input::One(s) => (vec![s], &|_| param.to_string()),
            Input::Many(v) => (v, &|i| format!("{param}[{i}]")),
        };
        if texts.is_empty() {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` must not be empty"),
            ));
        }
        if texts.len() > limits.max_inputs {
            return Err(ApiError::invalid(
                param,
                format!(
                    "{} inputs is more than the limit of {} per request",
                    texts.len(),
                    limits.max_inputs
                ),
            ));
        }
        for (i, t) in texts.iter().enumerate() {
            let at = name(i);
            if t.trim().is_empty() {
                return Err(ApiError::invalid(&at, format!("`{at}` is empty")));
            }
            let chars = t.chars().count();
            if chars > limits.max_chars {
                return Err(ApiError::too_large(format!(
                    "`{at}` has {chars} characters, more than the limit of {}",
                    limits.max_chars
                ))
                .param(at));
            }
        }
        Ok(texts)
    }

    /// The schema, with the server's limits when they are known.
    pub fn schema_with(limits: Option<&InputLimits>) -> Schema {
        let text = || {
            let mut text = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .description(Some("A text with at least one non-whitespace character."));
            if let Some(l) = limits {
                text = text.max_length(Some(l.max_chars));
            }
            text
        };
        let mut list = ArrayBuilder::new().items(text()).min_items(Some(1));
        if let Some(l) = limits {
            list = list.max_items(Some(l.max_inputs));
        }
        OneOfBuilder::new()
            .item(text())
            .item(list)
            .description(Some(
                "One text or a list of texts. Token arrays are not supported.",
            ))
            .into()
    }
}

impl PartialSchema for Input {
    fn schema() -> RefOr<Schema> {
        Input::schema_with(None).into()
    }
}

impl ToSchema for Input {}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = Input;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Input, E> {
                Ok(Input::One(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Input, E> {
                Ok(Input::One(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut texts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(Text(t)) = seq.next_element()? {
                    texts.push(t);
                }
                Ok(Input::Many(texts))
            }
        }
        d.deserialize_any(InputVisitor)
    }
}

/// One element of an input list: a string, with a clear word for token ids, which some
/// OpenAI clients send instead of text.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        const TOKENS: &str = "token arrays are not supported; send text";
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text, E> {
                Ok(Text(s))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
                Err(E::custom(TOKENS))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
                Err(E::custom(TOKENS))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Text, A::Error> {
                Err(de::Error::custom(TOKENS))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: InputLimits = InputLimits {
        max_inputs: 2,
        max_chars: 5,
    };

    #[derive(Debug, Deserialize)]
    struct Req {
        #[allow(dead_code)]
        input: Input,
    }

    fn texts(v: Value) -> Result<Vec<String>, ApiError> {
        typed::<Req>(v)?.input.texts("input", &LIMITS)
    }

    #[test]
    fn strings_and_lists_are_texts() {
        assert_eq!(texts(json!({"input": "hi"})).unwrap(), ["hi"]);
        assert_eq!(texts(json!({"input": ["a", "b"]})).unwrap(), ["a", "b"]);
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let cases = [
            (json!({}), 422, "input"),
            (json!({"input": null}), 422, "input"),
            (json!({"input": 3}), 422, "input"),
            (json!({"input": ["a", 7]}), 422, "input[1]"),
            (json!({"input": [[101, 102]]}), 422, "input[0]"),
            (json!({"input": []}), 422, "input"),
            (json!({"input": ["a", "b", "c"]}), 422, "input"),
            (json!({"input": ["a", " \n"]}), 422, "input[1]"),
            (json!({"input": ["a", "toolong"]}), 413, "input[1]"),
            (json!({"input": "toolong"}), 413, "input"),
            (json!({"input": " "}), 422, "input"),
            (json!(["not", "an", "object"]), 422, "body"),
        ];
        for (body, status, param) in cases {
            let e = texts(body.clone()).unwrap_err();
            assert_eq!(e.status.as_u16(), status, "{body}: {e:?}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
        }
        let e = texts(json!({"input": [[1]]})).unwrap_err();
        assert!(e.message.contains("token arrays"), "{}", e.message);
    }
}
