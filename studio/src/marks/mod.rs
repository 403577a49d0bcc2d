//! Marks: nicknames for checkpoints (`@best-on-dataset-A`), kept in the
//! registry with the history of every mark, move and unmark, exactly as
//! `semiclass mark` / `unmark` / `marks --history` keep them.

pub mod pages;

use std::path::Path;

use semiclass_registry::{CheckpointRow, MarkAction, Registry, sha256_file, validate_nickname};

use crate::error::StudioError;

/// What a mark request asks.
#[derive(Debug, Clone)]
pub struct MarkRequest {
    pub nickname: String,
    pub checkpoint: i64,
    pub note: Option<String>,
}

/// Gives (or moves) the nickname to the checkpoint, after checking both:
/// the nickname by the CLI's rule, the checkpoint recorded and its file
/// still holding the recorded content (what `@nick` will load). Nothing
/// changes when a check fails. Hashes the file: call it off the async
/// threads.
pub fn mark(registry: &mut Registry, request: &MarkRequest) -> Result<MarkAction, StudioError> {
    let nick = validate_nickname(request.nickname.trim())
        .map_err(|e| StudioError::Invalid(e.to_string()))?
        .to_string();
    let row = registry.checkpoint(request.checkpoint)?.ok_or_else(|| {
        StudioError::NotFound(format!(
            "no checkpoint {} in the registry; choose one of the list (a run's page lists its checkpoints)",
            request.checkpoint
        ))
    })?;
    check_current(&row)?;
    let note = request
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    Ok(registry.mark(&nick, row.id, note)?)
}

/// The checkpoint's file must still hold the recorded content: an older
/// version of a file rewritten since (a `-last` checkpoint) is not there
/// to be loaded any more, nor is a deleted one.
fn check_current(row: &CheckpointRow) -> Result<(), StudioError> {
    let path = row.path.display();
    let now = sha256_file(&row.path).map_err(|e| {
        StudioError::Conflict(format!(
            "{path}: cannot read the checkpoint {}: {e}; it was moved or deleted",
            row.id
        ))
    })?;
    if now != row.sha256 {
        return Err(StudioError::Conflict(format!(
            "{path}: checkpoint {} is an older version of this file, which was rewritten since; mark its current version (listed on its run's page) instead",
            row.id
        )));
    }
    Ok(())
}

/// Removes a nickname (its history stays).
pub fn unmark(registry: &mut Registry, nickname: &str) -> Result<(), StudioError> {
    let nick =
        validate_nickname(nickname.trim()).map_err(|e| StudioError::Invalid(e.to_string()))?;
    registry.unmark(nick).map_err(|e| match e {
        semiclass_registry::RegistryError::NoSuchMark(_) => StudioError::NotFound(e.to_string()),
        other => other.into(),
    })
}

/// The checkpoints one can mark or pick as a teacher: the latest recorded
/// version of every file the registry's runs saved that is still there,
/// newest run first, each run's `best.safetensors` first.
pub fn current_checkpoints(registry: &Registry) -> Result<Vec<CheckpointRow>, StudioError> {
    let mut out: Vec<CheckpointRow> = Vec::new();
    for run in registry.runs()? {
        let mut latest: Vec<CheckpointRow> = Vec::new();
        // Oldest first: a later version of the same file replaces it.
        for c in registry.checkpoints_of_run(run.id)? {
            match latest.iter_mut().find(|l| l.path == c.path) {
                Some(l) => *l = c,
                None => latest.push(c),
            }
        }
        latest.retain(|c| c.path.is_file());
        latest.sort_by_key(|c| !is_best(&c.path));
        out.extend(latest);
    }
    Ok(out)
}

fn is_best(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "best.safetensors")
}

/// How a checkpoint reads in a list: its run folder, file, model and val top-1.
pub fn describe(c: &CheckpointRow) -> String {
    let top1 = c
        .metrics
        .get("val_top1")
        .map_or_else(String::new, |v| format!(", val top-1 {:.2}%", 100.0 * v));
    format!(
        "{} ({} {}, stage {}{top1})",
        short_path(&c.path),
        c.role,
        c.model,
        c.stage
    )
}

/// The last folders of a checkpoint's path: enough to tell runs apart.
pub fn short_path(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .rev()
        .take(4)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let tail: Vec<&str> = parts.iter().rev().map(String::as_str).collect();
    format!("…/{}", tail.join("/"))
}
