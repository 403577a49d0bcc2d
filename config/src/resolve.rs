//! Configuration precedence: defaults < YAML file < `-o section.key=value`.
//!
//! Unknown keys are errors with a "did you mean", wherever they come from,
//! because a misspelt key that is silently ignored trains the wrong model
//! for hours. Works for any config type with `Default + Serialize +
//! Deserialize`: its serialised defaults are the schema.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}{line}: unknown key '{key}'{hint}", line = line.map(|l| format!(":{l}")).unwrap_or_default())]
    UnknownKey {
        path: String,
        line: Option<usize>,
        key: String,
        hint: String,
    },
    #[error("-o {text}: expected section.key=value")]
    BadOverride { text: String },
    #[error("{source_name}: '{key}': {message}")]
    BadValue {
        source_name: String,
        key: String,
        message: String,
    },
}

/// Builds the configuration from its defaults, an optional YAML file and
/// `section.key=value` overrides, in that order of precedence.
pub fn resolve<T>(file: Option<&Path>, overrides: &[String]) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let schema = serde_json::to_value(T::default()).expect("defaults serialise");
    let mut merged = schema.clone();
    let mut source_name = "defaults".to_string();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value = parse_yaml(path, &text)?;
        check_known(&schema, &value, "", &|key| key_line(&text, key))
            .map_err(|(key, hint, line)| unknown(path.display().to_string(), line, key, hint))?;
        overlay(&mut merged, value);
        source_name = path.display().to_string();
    }
    for text in overrides {
        apply_override(&schema, &mut merged, text)?;
        source_name = format!("{source_name} with -o overrides");
    }
    serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::BadValue {
        source_name,
        key: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// The resolved configuration as YAML, for the run directory.
pub fn to_yaml<T: Serialize>(config: &T) -> String {
    serde_yaml_ng::to_string(config).expect("config serialises")
}

fn unknown(path: String, line: Option<usize>, key: String, hint: String) -> ConfigError {
    ConfigError::UnknownKey {
        path,
        line,
        key,
        hint,
    }
}

fn parse_yaml(path: &Path, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // An empty file means "no changes".
    Ok(if value.is_null() {
        Value::Object(Map::new())
    } else {
        value
    })
}

type Unknown = (String, String, Option<usize>);

/// Every key of `value` must exist in `schema` (recursively, for sections).
fn check_known(
    schema: &Value,
    value: &Value,
    prefix: &str,
    line_of: &dyn Fn(&str) -> Option<usize>,
) -> Result<(), Unknown> {
    let (Value::Object(known), Value::Object(given)) = (schema, value) else {
        return Ok(());
    };
    for (key, sub) in given {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match known.get(key) {
            Some(sub_schema) => check_known(sub_schema, sub, &full, line_of)?,
            None => return Err((full, did_you_mean(key, known.keys(), prefix), line_of(key))),
        }
    }
    Ok(())
}

fn did_you_mean<'a>(key: &str, known: impl Iterator<Item = &'a String>, prefix: &str) -> String {
    let best = known
        .map(|k| (strsim::levenshtein(key, k), k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 3).max(2));
    match best {
        Some((_, k)) if prefix.is_empty() => format!("; did you mean '{k}'?"),
        Some((_, k)) => format!("; did you mean '{prefix}.{k}'?"),
        None => String::new(),
    }
}

/// First line of `text` that defines `key:` (for pointing at a typo).
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// Recursively replaces `base`'s values by `top`'s.
fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => overlay(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `a.b.c=value`: the key must exist; the value is parsed as YAML, so
/// `3`, `0.1`, `true`, `null` and `[1, 2]` have their natural types.
fn apply_override(schema: &Value, merged: &mut Value, text: &str) -> Result<(), ConfigError> {
    let (key, raw) = text
        .split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .ok_or_else(|| ConfigError::BadOverride {
            text: text.to_string(),
        })?;
    let key = key.trim();
    let value: Value = serde_yaml_ng::from_str(raw).unwrap_or(Value::String(raw.to_string()));
    let mut nested = value;
    for part in key.rsplit('.') {
        let mut map = Map::new();
        map.insert(part.to_string(), nested);
        nested = Value::Object(map);
    }
    check_known(schema, &nested, "", &|_| None)
        .map_err(|(k, hint, _)| unknown(format!("-o {text}"), None, k, hint))?;
    overlay(merged, nested);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Model {
        epochs: usize,
        lr: f64,
        pretrained: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        seed: u64,
        large: Model,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn overrides_beat_the_file_which_beats_defaults() {
        let f = file("seed: 3\nlarge:\n  epochs: 10\n  lr: 0.5\n");
        let over = vec![
            "large.epochs=3".to_string(),
            "large.pretrained=w.safetensors".to_string(),
        ];
        let cfg: Cfg = resolve(Some(f.path()), &over).unwrap();
        assert_eq!(cfg.seed, 3);
        assert_eq!(cfg.large.epochs, 3);
        assert_eq!(cfg.large.lr, 0.5);
        assert_eq!(cfg.large.pretrained.as_deref(), Some("w.safetensors"));
    }

    #[test]
    fn unknown_file_key_names_the_line_and_suggests() {
        let f = file("seed: 1\nlarge:\n  epoch: 3\n");
        let err = resolve::<Cfg>(Some(f.path()), &[]).unwrap_err().to_string();
        assert!(
            err.ends_with(":3: unknown key 'large.epoch'; did you mean 'large.epochs'?"),
            "{err}"
        );
    }

    #[test]
    fn unknown_override_key_suggests() {
        let err = resolve::<Cfg>(None, &["larg.lr=1".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "-o larg.lr=1: unknown key 'larg'; did you mean 'large'?"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_key() {
        let err = resolve::<Cfg>(None, &["large.epochs=many".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("defaults with -o overrides: 'large.epochs': invalid type"),
            "{err}"
        );
    }

    #[test]
    fn the_resolved_config_round_trips_through_yaml() {
        let cfg: Cfg = resolve(None, &["large.lr=0.25".into()]).unwrap();
        let back: Cfg = serde_yaml_ng::from_str(&to_yaml(&cfg)).unwrap();
        assert_eq!(back, cfg);
    }
}
