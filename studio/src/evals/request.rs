//! An evaluation request, checked before it is queued: the checkpoint is
//! one the registry knows, the dataset passed its check, the split exists,
//! and an uploaded list passes `semiclass eval`'s own list check.

use std::path::{Path, PathBuf};

use semiclass_dataset::{CheckOptions, Dataset, check_list, lists, report};
use semiclass_manifest::checkpoint_file::read_meta;
use semiclass_registry::{Registry, Resolved, resolve_checkpoint};

use crate::datasets::pages::find;
use crate::datasets::upload::safe_name;
use crate::error::StudioError;
use crate::jobs::runner::{CommandJob, unique_stamp};
use crate::state::Studio;

/// Problem lines shown for a refused list (all are in the check's JSON).
const MAX_PROBLEM_LINES: usize = 50;

/// What to evaluate on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalSourceChoice {
    Val,
    Test,
    /// An uploaded list: where it was saved, and its name as uploaded.
    List {
        saved: PathBuf,
        uploaded: String,
    },
}

/// The evaluation form, as sent.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// `@nickname` or the path of a recorded checkpoint.
    pub checkpoint: String,
    pub dataset: Option<i64>,
    pub source: EvalSourceChoice,
}

/// The checkpoint `arg` names, when the registry knows it (a mark, or a
/// recorded checkpoint file whose content is unchanged).
pub fn checked_checkpoint(registry: &Registry, arg: &str) -> Result<Resolved, StudioError> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(StudioError::Invalid(
            "choose a checkpoint (a training records them; a mark names one)".into(),
        ));
    }
    let resolved =
        resolve_checkpoint(arg, Ok(registry)).map_err(|e| StudioError::Invalid(e.to_string()))?;
    if resolved.record.is_none() {
        return Err(StudioError::Invalid(format!(
            "{}: not a checkpoint the registry recorded; choose one from the list (a training records its checkpoints)",
            resolved.path.display()
        )));
    }
    Ok(resolved)
}

/// What a job on a checkpoint shows as its configuration: the file and
/// the content it was queued on.
pub fn checkpoint_config(checkpoint: &Resolved) -> String {
    format!(
        "checkpoint: {}\nsha256: {}\n",
        checkpoint.path.display(),
        checkpoint.sha256
    )
}

impl EvalRequest {
    /// The `semiclass eval` job of this request, once every part is
    /// checked; an uploaded list that fails its check is refused with the
    /// check's lines (file:line).
    pub fn job(&self, studio: &Studio) -> Result<CommandJob, StudioError> {
        let checkpoint = checked_checkpoint(&studio.registry()?, &self.checkpoint)?;
        let id = self.dataset.ok_or_else(|| {
            StudioError::Invalid("choose a dataset (the Datasets page adds one)".into())
        })?;
        let dataset = find(studio, id)?;
        if !dataset.check_pass {
            return Err(StudioError::Invalid(format!(
                "{}: its check found errors; fix them and check it again before evaluating on it",
                dataset.path.display()
            )));
        }
        let (on, source_args, classes) = match &self.source {
            EvalSourceChoice::Val => ("val".to_string(), split_args("val"), labels(&dataset.path)?),
            EvalSourceChoice::Test => {
                if !dataset.path.join(lists::TEST_FILE).is_file() {
                    return Err(StudioError::Invalid(format!(
                        "{}: no test.txt; evaluate on val or upload a list",
                        dataset.path.display()
                    )));
                }
                (
                    "test".to_string(),
                    split_args("test"),
                    labels(&dataset.path)?,
                )
            }
            EvalSourceChoice::List { saved, uploaded } => {
                let classes = check_uploaded_list(&dataset.path, saved, uploaded)?;
                (uploaded.clone(), Vec::new(), classes)
            }
        };
        let meta = read_meta(&checkpoint.path).map_err(|e| StudioError::Invalid(e.to_string()))?;
        if let Some(problem) = meta.class_count_problem(&dataset.path, &classes) {
            return Err(StudioError::Invalid(problem));
        }
        let mut source_args = source_args;
        if let EvalSourceChoice::List { saved, uploaded } = &self.source {
            // Kept only now that nothing else can refuse the request.
            let kept = keep_list(saved, uploaded)?;
            source_args = vec!["--list".to_string(), kept.display().to_string()];
        }
        let stem = checkpoint
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("eval-{stem}-{}", unique_stamp());
        let out_dir = studio.data_dir.join("evals").join(&name);
        let shown = checkpoint.nickname.as_ref().map_or_else(
            || checkpoint.path.display().to_string(),
            |n| format!("@{n}"),
        );
        let mut args = vec!["eval".to_string(), shown.clone()];
        args.extend(["--data".into(), dataset.path.display().to_string()]);
        args.extend(source_args);
        args.extend(["--out".into(), out_dir.display().to_string()]);
        Ok(CommandJob {
            kind: "eval",
            title: format!("eval {shown} on {on} of {}", dataset.name),
            config: checkpoint_config(&checkpoint),
            args,
            out_dir,
            name,
        })
    }
}

fn split_args(split: &str) -> Vec<String> {
    vec!["--split".into(), split.into()]
}

/// The classes of the dataset at `root` (label.txt's, by id).
fn labels(root: &Path) -> Result<Vec<String>, StudioError> {
    Ok(Dataset::open(root)
        .map_err(|e| StudioError::Invalid(e.to_string()))?
        .classes)
}

/// The list check `semiclass eval --list` runs; its problems name the
/// list as it was uploaded. The dataset's classes when it passes.
fn check_uploaded_list(
    root: &Path,
    saved: &Path,
    uploaded: &str,
) -> Result<Vec<String>, StudioError> {
    let checked = check_list(root, saved, &CheckOptions::default(), &())
        .map_err(|e| StudioError::Invalid(e.to_string()))?;
    if checked.check_pass {
        return Ok(checked.class_names);
    }
    let stored = saved.display().to_string();
    let mut lines = vec![format!(
        "{uploaded}: {} error(s), {} warning(s); fix the list and upload it again",
        checked.errors, checked.warnings
    )];
    lines.extend(
        report::problem_lines(&checked.problems, MAX_PROBLEM_LINES)
            .into_iter()
            .map(|line| line.replace(&stored, uploaded)),
    );
    Err(StudioError::InvalidMany(lines))
}

/// Moves an accepted list from where it was received to a name made from
/// the uploaded one, next to it (the job reads it there).
fn keep_list(saved: &Path, uploaded: &str) -> Result<PathBuf, StudioError> {
    let stem = uploaded.strip_suffix(".txt").unwrap_or(uploaded);
    let safe = safe_name(stem);
    let kept = saved.with_file_name(format!("{safe}-{}.txt", unique_stamp()));
    std::fs::rename(saved, &kept).map_err(|e| {
        StudioError::Internal(format!("{}: cannot keep the list: {e}", kept.display()))
    })?;
    Ok(kept)
}
