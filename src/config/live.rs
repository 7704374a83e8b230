//! What a reload changes, and whether it may: the validated old and new configurations
//! compared key by key, named as in the TOML file.

use super::Config;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Keys (or whole sections, ending in `.`) that may change while serving. Everything else
/// (listen addresses, connection handling, the model directory and tokenizer, the tokio
/// runtime, the knowledge base) is fixed at start: changing it means a restart.
pub const LIVE_KEYS: &[&str] = &[
    "executor.strategy",
    "executor.parallelism",
    "executor.cores",
    "executor.sessions",
    "executor.intra_op_threads",
    "executor.inter_op_threads",
    "executor.intra_op_spinning",
    "executor.inference_nice",
    "batching.",
    "limits.",
    "chat.threshold",
    "chat.keyword_weight",
    "chat.out_of_scope_margin",
    "chat.fallback",
    "model.variant",
    "auth.api_keys",
    // The scheduler's rules, applied from its next step; the model, its slots and
    // their context are fixed at start (the key/value cache is allocated once).
    "generation.scheduler",
    "generation.prefill_chunk_tokens",
    "generation.max_step_tokens",
    "generation.static_batch",
    "generation.max_tokens_cap",
    "generation.default_max_tokens",
    "generation.default_deadline_ms",
];

/// One key whose value differs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// As in the TOML file, e.g. `batching.max_wait_ms`.
    pub key: String,
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
}

impl Change {
    pub fn is_live(&self) -> bool {
        LIVE_KEYS.iter().any(|k| match k.strip_suffix('.') {
            Some(section) => {
                self.key.starts_with(section) && self.key[section.len()..].starts_with('.')
            }
            None => self.key == *k,
        })
    }
}

/// Every key whose validated value differs between `old` and `new`, sorted by key.
pub fn changes(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    diff("", &flatten(old), &flatten(new), &mut out);
    out
}

/// The config as one JSON tree with the file's key names. API keys are never shown, only
/// how many there are and whether they changed.
fn flatten(c: &Config) -> Value {
    let keys_hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        c.auth.api_keys.hash(&mut h);
        h.finish()
    };
    let mut tree = json!({
        "server": c.server,
        "model": c.model,
        "executor": c.executor,
        "batching": c.batching,
        "limits": c.limits,
        "chat": c.chat,
        "generation": c.generation,
        "auth": { "api_keys": format!("{} keys ({keys_hash:016x})", c.auth.api_keys.len()) },
    });
    rename_durations(&mut tree);
    tree
}

/// `Duration`s serialize as `{secs, nanos}`; the file says `<name>_ms`.
fn rename_durations(v: &mut Value) {
    let Value::Object(map) = v else { return };
    let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
    let mut renamed = Map::new();
    for (key, mut value) in entries {
        if let Some(ms) = duration_ms(&value) {
            renamed.insert(format!("{key}_ms"), json!(ms));
            continue;
        }
        rename_durations(&mut value);
        renamed.insert(key, value);
    }
    *map = renamed;
}

fn duration_ms(v: &Value) -> Option<f64> {
    let o = v.as_object()?;
    if o.len() != 2 {
        return None;
    }
    let secs = o.get("secs")?.as_u64()?;
    let nanos = o.get("nanos")?.as_u64()?;
    Some(secs as f64 * 1e3 + nanos as f64 / 1e6)
}

fn diff(prefix: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                diff(&path, va, b.get(key).unwrap_or(&Value::Null), out);
            }
        }
        _ if old != new => out.push(Change {
            key: prefix.to_string(),
            from: old.clone(),
            to: new.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn names_changed_keys_as_in_the_file() {
        let old = parse("");
        let new = parse("[executor]\nstrategy = \"rayon\"\n[batching]\nmax_wait_ms = 3.5\n");
        let c = changes(&old, &new);
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["batching.max_wait_ms", "executor.strategy"]);
        assert_eq!(c[0].to, json!(3.5));
        assert!(c.iter().all(Change::is_live));
    }

    #[test]
    fn same_config_has_no_changes() {
        assert!(changes(&parse(""), &parse("")).is_empty());
    }

    #[test]
    fn listen_addresses_and_model_dir_are_not_live() {
        let old = parse("");
        let new = parse("[server]\nlisten = \"127.0.0.1:9999\"\n[model]\ndir = \"elsewhere\"\n");
        let c = changes(&old, &new);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| !c.is_live()), "{c:?}");
        let variant = changes(&old, &parse("[model]\nvariant = \"int8\"\n"));
        assert!(variant[0].is_live());
    }

    #[test]
    fn api_keys_are_compared_but_never_shown() {
        let old = parse("");
        let new = parse("[auth]\napi_keys = [\"sk-secret-0123456789\"]\n");
        let c = changes(&old, &new);
        assert_eq!(c[0].key, "auth.api_keys");
        assert!(c[0].is_live());
        assert!(!c[0].to.to_string().contains("sk-secret"));
    }

    #[test]
    fn a_section_prefix_does_not_match_a_longer_section_name() {
        let c = Change {
            key: "batchingx.y".into(),
            from: Value::Null,
            to: Value::Null,
        };
        assert!(!c.is_live());
    }
}
