//! Where a configuration comes from, kept so it can be read again: a reload re-reads the
//! same file with the same start-time overrides, then applies the reload's own TOML on top.

use super::raw::RawConfig;
use super::{validate, Config, ConfigError};
use std::path::PathBuf;

/// The base document (a file, or TOML text for servers built in code) and the `KEY=VALUE`
/// overrides given at start.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    base: Base,
    overrides: Vec<String>,
}

#[derive(Debug, Clone)]
enum Base {
    File(PathBuf),
    Text(String),
}

impl ConfigSource {
    pub fn file(path: impl Into<PathBuf>, overrides: Vec<String>) -> ConfigSource {
        ConfigSource {
            base: Base::File(path.into()),
            overrides,
        }
    }

    pub fn text(toml: impl Into<String>) -> ConfigSource {
        ConfigSource {
            base: Base::Text(toml.into()),
            overrides: Vec::new(),
        }
    }

    /// The file's path, or `<text>`: named in parse errors.
    fn name(&self) -> PathBuf {
        match &self.base {
            Base::File(p) => p.clone(),
            Base::Text(_) => PathBuf::from("<text>"),
        }
    }

    /// Reads and validates the configuration as at start.
    pub fn load(&self) -> Result<Config, ConfigError> {
        self.load_with(&toml::Table::new())
    }

    /// Reads the base, applies the start-time overrides, then `extra` (merged key by key,
    /// so `[batching]\nmax_wait_ms = 2` changes one key), then validates the whole:
    /// `extra` gets the same checks as the file.
    pub fn load_with(&self, extra: &toml::Table) -> Result<Config, ConfigError> {
        let path = self.name();
        let parse_err = |message: String| ConfigError::Parse {
            path: path.clone(),
            message,
        };
        let text = match &self.base {
            Base::File(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?,
            Base::Text(t) => t.clone(),
        };
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
        for o in &self.overrides {
            let (key, value) = parse_override(o).map_err(&parse_err)?;
            validate::set_key(&mut doc, key, value).map_err(&parse_err)?;
        }
        merge_toml(&mut doc, extra.clone());
        let raw: RawConfig = doc
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        Config::from_raw(raw)
    }
}

/// `KEY=VALUE`, the value in TOML syntax; a bare word is taken as a string.
fn parse_override(o: &str) -> Result<(&str, toml::Value), String> {
    let (key, value) = o
        .split_once('=')
        .ok_or_else(|| format!("override `{o}` is not KEY=VALUE"))?;
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .map(|mut t| t.remove("v").expect("just parsed"))
        .unwrap_or_else(|_| toml::Value::String(value.to_string()));
    Ok((key.trim(), value))
}

/// Parses reload overrides: TOML whose keys must all be known (checked here, so an error
/// names the reload body rather than the file).
pub fn parse_overrides(text: &str) -> Result<toml::Table, ConfigError> {
    let err = |e: toml::de::Error| ConfigError::Parse {
        path: PathBuf::from("<reload body>"),
        message: e.to_string(),
    };
    let table: toml::Table = toml::from_str(text).map_err(err)?;
    let _: RawConfig = table.clone().try_into().map_err(err)?;
    Ok(table)
}

/// Merges `extra` into `doc`: tables recursively, any other value replaces.
pub fn merge_toml(doc: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (doc.get_mut(&key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => {
                merge_toml(mine, theirs)
            }
            (_, value) => {
                doc.insert(key, value);
            }
        }
    }
}
