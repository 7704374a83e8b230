//! Validating request fields shared by the inference routes.

use super::error::ApiError;
use serde_json::{Map, Value};

/// Limits an input list must respect.
pub struct InputLimits {
    pub max_inputs: usize,
    pub max_chars: usize,
}

/// `value` as a list of texts: a string, or a non-empty array of non-empty strings.
pub fn texts(
    value: Option<&Value>,
    param: &str,
    limits: &InputLimits,
) -> Result<Vec<String>, ApiError> {
    let texts = match value {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(param, format!("`{param}` is required")))
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Array(_) => Err(ApiError::invalid(
                    &format!("{param}[{i}]"),
                    "token arrays are not supported; send text",
                )),
                _ => Err(ApiError::invalid(
                    &format!("{param}[{i}]"),
                    format!("`{param}[{i}]` must be a string"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` must be a string or an array of strings"),
            ))
        }
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
        if t.trim().is_empty() {
            return Err(ApiError::invalid(
                &format!("{param}[{i}]"),
                format!("`{param}[{i}]` is empty"),
            ));
        }
        let chars = t.chars().count();
        if chars > limits.max_chars {
            return Err(ApiError::too_large(format!(
                "`{param}[{i}]` has {chars} characters, more than the limit of {}",
                limits.max_chars
            ))
            .param(format!("{param}[{i}]")));
        }
    }
    Ok(texts)
}

/// The JSON object at the top of a request body.
pub fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::invalid("body", "the body must be a JSON object"))
}

/// An optional boolean field.
pub fn boolean(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be true or false"),
        )),
    }
}

/// An optional string field.
pub fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(key, format!("`{key}` must be a string"))),
    }
}
