//! The training form, generated from the configuration schema the CLI
//! uses: `TrainConfig`'s serialised defaults (`semiclass_config`'s own
//! notion of its schema). A submitted form becomes the `-o key=value`
//! overrides `semiclass train` takes and is resolved by the same
//! `resolve`, so a value the CLI refuses is refused here with its message.

pub mod pages;

use std::path::Path;

use semiclass_config::{TrainConfig, resolve, to_yaml};
use serde_json::Value;

use crate::error::StudioError;

/// Keys the studio sets itself: where the data and the run are (a job
/// trains into the studio's folder), the teacher (its own field) and the
/// resume state (resuming is the job queue's business).
pub const STUDIO_KEYS: &[&str] = &[
    "data.dir",
    "run.dir",
    "run.name",
    "large.resume",
    "small.resume",
    "small.distill.teacher",
];

/// What a training trains (`semiclass train --mode`).
pub const MODES: &[(&str, &str)] = &[
    (
        "joint",
        "joint: the large model semi-supervised, then the small one distilled from it (recommended)",
    ),
    ("large", "large: the large model alone"),
    (
        "small",
        "small: the small model alone, taught by a checkpoint",
    ),
];

/// One parameter: its dotted key and its default as the form shows it
/// (empty for "unset": chosen when the run starts).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub key: String,
    pub default: String,
}

/// The parameters of one section of the configuration (`large.ssl`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldGroup {
    pub name: String,
    pub fields: Vec<Field>,
}

/// Every parameter a user may set, grouped by section, in the schema's order.
pub fn schema() -> Vec<FieldGroup> {
    let defaults = serde_json::to_value(TrainConfig::default()).expect("defaults serialise");
    let mut groups = Vec::new();
    collect(&defaults, "", &mut groups);
    groups.retain(|g| !g.fields.is_empty());
    groups
}

fn collect(value: &Value, prefix: &str, groups: &mut Vec<FieldGroup>) {
    let Value::Object(map) = value else { return };
    let index = groups.len();
    groups.push(FieldGroup {
        name: prefix.to_string(),
        fields: Vec::new(),
    });
    for (key, sub) in map {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if sub.is_object() {
            collect(sub, &full, groups);
        } else if !STUDIO_KEYS.contains(&full.as_str()) {
            groups[index].fields.push(Field {
                key: full,
                default: form_text(sub),
            });
        }
    }
}

/// A default as typed into a form: what `-o key=value` would take.
fn form_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A training request, as the form sends it.
#[derive(Debug, Clone, Default)]
pub struct TrainRequest {
    pub mode: String,
    pub dataset: Option<i64>,
    pub teacher: String,
    /// `(key, value)` of the configuration fields, as typed.
    pub values: Vec<(String, String)>,
}

/// A request that passed every check: the configuration as it will run.
#[derive(Debug, Clone)]
pub struct ResolvedTraining {
    pub mode: String,
    /// The dataset folder (`--data`).
    pub dataset: std::path::PathBuf,
    /// The `-o key=value` overrides of the fields that differ from their
    /// defaults (the studio's own keys are added when the job is made).
    pub overrides: Vec<String>,
    pub config: TrainConfig,
}

impl ResolvedTraining {
    /// The resolved configuration as `semiclass train` saves it.
    pub fn yaml(&self) -> String {
        to_yaml(&self.config)
    }
}

/// Checks a request against the schema and the CLI's rules, with
/// `dataset` as `data.dir`; every problem at once, each as the CLI says it.
pub fn resolve_request(
    request: &TrainRequest,
    dataset: &Path,
) -> Result<ResolvedTraining, StudioError> {
    let mut problems = Vec::new();
    if !MODES.iter().any(|(m, _)| *m == request.mode) {
        problems.push(format!(
            "mode '{}': choose joint, large or small",
            request.mode
        ));
    }
    let teacher = request.teacher.trim();
    if request.mode == "small" && teacher.is_empty() {
        problems.push("--mode small needs a teacher: a checkpoint path or @nickname".into());
    }
    let overrides = overrides(&request.values, &mut problems);
    let mut all = overrides.clone();
    all.push(format!("data.dir={}", dataset.display()));
    if !teacher.is_empty() {
        all.push(format!("small.distill.teacher={teacher}"));
    }
    let config = match resolve::<TrainConfig>(None, &all) {
        Ok(config) => Some(config),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if let Some(config) = &config {
        check_models(config, &request.mode, &mut problems);
    }
    match config {
        Some(config) if problems.is_empty() => Ok(ResolvedTraining {
            mode: request.mode.clone(),
            dataset: dataset.to_path_buf(),
            overrides: with_teacher(overrides, teacher),
            config,
        }),
        _ => Err(StudioError::InvalidMany(problems)),
    }
}

fn with_teacher(mut overrides: Vec<String>, teacher: &str) -> Vec<String> {
    if !teacher.is_empty() {
        overrides.push(format!("small.distill.teacher={teacher}"));
    }
    overrides
}

/// `key=value` for each field that differs from its default; a key the
/// schema lacks or the studio sets itself is a problem.
fn overrides(values: &[(String, String)], problems: &mut Vec<String>) -> Vec<String> {
    let fields: Vec<Field> = schema().into_iter().flat_map(|g| g.fields).collect();
    let mut out = Vec::new();
    for (key, value) in values {
        let value = value.trim();
        if STUDIO_KEYS.contains(&key.as_str()) {
            problems.push(format!("'{key}' is set by the studio, not by the form"));
            continue;
        }
        match fields.iter().find(|f| f.key == *key) {
            Some(field) if field.default == value => {}
            // Emptied: back to "unset", which only optional keys accept
            // (the others get the CLI's message).
            Some(_) if value.is_empty() => out.push(format!("{key}=null")),
            // An unknown key: `resolve` says so, with a "did you mean".
            _ => out.push(format!("{key}={value}")),
        }
    }
    out
}

/// The model names must be in the zoo and fit their input size: the
/// messages `semiclass train` would stop with when building them.
fn check_models(config: &TrainConfig, mode: &str, problems: &mut Vec<String>) {
    let mut models = Vec::new();
    if mode != "small" {
        models.push(("large", &config.large.train));
    }
    if mode != "large" {
        models.push(("small", &config.small.train));
    }
    for (section, train) in models {
        match semiclass_models::find(&train.model) {
            Ok(entry) => {
                if let Err(why) = (entry.arch)(train.input_size) {
                    problems.push(format!("{section}.input_size: {why}"));
                }
            }
            Err(e) => problems.push(format!("{section}.model: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(values: &[(&str, &str)]) -> TrainRequest {
        TrainRequest {
            mode: "large".into(),
            dataset: Some(1),
            teacher: String::new(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_schema_has_every_section_and_hides_the_studios_keys() {
        let groups = schema();
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        for section in [
            "data",
            "run",
            "large",
            "large.ssl",
            "large.selftrain",
            "small",
            "small.distill",
        ] {
            assert!(names.contains(&section), "{section} missing from {names:?}");
        }
        let keys: Vec<&str> = groups
            .iter()
            .flat_map(|g| &g.fields)
            .map(|f| f.key.as_str())
            .collect();
        assert!(keys.contains(&"large.ssl.p_cutoff") && keys.contains(&"small.lr"));
        for key in STUDIO_KEYS {
            assert!(!keys.contains(key), "{key} is the studio's");
        }
        let lr = groups
            .iter()
            .flat_map(|g| &g.fields)
            .find(|f| f.key == "small.lr")
            .unwrap();
        assert_eq!(lr.default, "0.05", "the small model's own default");
    }

    #[test]
    fn only_changed_fields_become_overrides_and_the_cli_resolves_them() {
        let ok = resolve_request(
            &request(&[
                ("large.lr", "0.03"),
                ("large.epochs", "2"),
                ("large.ssl.mu", ""),
            ]),
            Path::new("/data/x"),
        )
        .unwrap();
        assert_eq!(ok.overrides, ["large.epochs=2"]);
        assert_eq!(ok.config.large.train.epochs, Some(2));
        assert!(ok.yaml().contains("dir: /data/x"), "{}", ok.yaml());
    }

    #[test]
    fn bad_values_are_refused_with_the_clis_messages() {
        let err = resolve_request(
            &request(&[("large.ssl.algorithm", "mixmatch")]),
            Path::new("/d"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("large.ssl.algorithm") && err.contains("fixmatch"),
            "{err}"
        );
        let err = resolve_request(&request(&[("large.epoch", "2")]), Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean 'large.epochs'?"), "{err}");
        let err = resolve_request(&request(&[("large.model", "resnet19")]), Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("large.model: "), "{err}");
        let err = resolve_request(&request(&[("run.dir", "/tmp")]), Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("set by the studio"), "{err}");
    }

    #[test]
    fn small_mode_needs_a_teacher() {
        let mut small = request(&[]);
        small.mode = "small".into();
        let err = resolve_request(&small, Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a teacher"), "{err}");
        small.teacher = "@best".into();
        let ok = resolve_request(&small, Path::new("/d")).unwrap();
        assert_eq!(ok.overrides, ["small.distill.teacher=@best"]);
    }
}
