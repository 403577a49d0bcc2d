//! Recording a training in the run registry: the run, its status, every
//! checkpoint saved. The registry is an index, never needed to train: when
//! it cannot be opened or written, training warns once and goes on.
//!
//! The CLI sets where the registry is ([`set_location`]) and brackets a
//! training with [`start_run`] and [`end_run`]; the engine reports each
//! checkpoint it writes ([`checkpoint_saved`], [`checkpoint_copied`]).
//! Without a location (the library used on its own) nothing is recorded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use semiclass_manifest::checkpoint::{CheckpointMeta, Role};
use semiclass_registry::{NewCheckpoint, NewRun, Registry, RegistryError, Resolved, RunStatus};

/// The registry file, or why there is none.
static LOCATION: OnceLock<Result<PathBuf, String>> = OnceLock::new();
/// The run being trained by this process.
static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);
static WARNED: AtomicBool = AtomicBool::new(false);

struct Active {
    registry: Registry,
    run_id: i64,
}

/// Where the registry is (`Err`: why it cannot be located); set once by the CLI.
pub fn set_location(location: Result<PathBuf, String>) {
    let _ = LOCATION.set(location);
}

/// Opens the registry at the location the CLI set.
pub fn open_registry() -> Result<Registry, String> {
    let location = LOCATION
        .get()
        .ok_or("no registry location was set")?
        .as_ref()
        .map_err(Clone::clone)?;
    Registry::open(location).map_err(|e| e.to_string())
}

/// Records a run (or a resumed one) as running.
pub fn start_run(run_dir: &Path, mode: &str, config_yaml: &str) {
    if LOCATION.get().is_none() {
        return;
    }
    let run_dir = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    let started = open_registry().and_then(|mut registry| {
        let run = NewRun {
            run_dir: &run_dir,
            mode,
            config: config_yaml,
        };
        let run_id = registry.begin_run(&run).map_err(|e| e.to_string())?;
        Ok(Active { registry, run_id })
    });
    match started {
        Ok(active) => *lock() = Some(active),
        Err(e) => warn(&e),
    }
}

/// Records how the run ended: `interrupted` tells an `Ok` outcome that
/// stopped early from a finished one; an `Err` is a failure, with its message.
pub fn end_run<T, E: std::fmt::Display>(
    outcome: &Result<T, E>,
    interrupted: impl FnOnce(&T) -> bool,
) {
    let (status, message) = match outcome {
        Ok(o) if interrupted(o) => (RunStatus::Interrupted, None),
        Ok(_) => (RunStatus::Finished, None),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    with_active(|a| a.registry.end_run(a.run_id, status, message.as_deref()));
    *lock() = None;
}

/// Records a checkpoint the engine has just written (`sha256` as returned
/// by `save_checkpoint`).
pub fn checkpoint_saved(path: &Path, sha256: &str, meta: &CheckpointMeta) {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    with_active(|a| {
        a.registry
            .record_checkpoint(&new_checkpoint(&path, sha256, Some(a.run_id), meta))
    });
}

/// Records a checkpoint file written as a copy of another (e.g.
/// `best.safetensors`), reading its metadata and hash from the file.
pub fn checkpoint_copied(path: &Path) {
    if lock().is_none() {
        return;
    }
    let read = crate::checkpoint::read_meta(path)
        .map_err(|e| e.to_string())
        .and_then(|meta| {
            let sha = semiclass_registry::sha256_file(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((meta, sha))
        });
    match read {
        Ok((meta, sha)) => checkpoint_saved(path, &sha, &meta),
        Err(e) => warn(&e),
    }
}

/// The registry id of a resolved checkpoint argument, recording the file
/// first when the registry has not seen this content (a copied file).
pub fn recorded_id(
    registry: &mut Registry,
    resolved: &Resolved,
    meta: &CheckpointMeta,
) -> Result<i64, RegistryError> {
    match &resolved.record {
        Some(record) => Ok(record.id),
        None => registry.record_checkpoint(&new_checkpoint(
            &resolved.path,
            &resolved.sha256,
            None,
            meta,
        )),
    }
}

/// The registry's view of a checkpoint's metadata.
pub fn new_checkpoint<'a>(
    path: &'a Path,
    sha256: &'a str,
    run_id: Option<i64>,
    meta: &'a CheckpointMeta,
) -> NewCheckpoint<'a> {
    NewCheckpoint {
        path,
        sha256,
        run_id,
        model: &meta.model,
        role: match meta.role {
            Role::Large => "large",
            Role::Small => "small",
        },
        stage: &meta.stage,
        epoch: meta.epoch,
        step: meta.step,
        metrics: &meta.metrics,
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Active>> {
    // A panic elsewhere while holding it leaves the data as good as before.
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `write` on the active run; on failure warns and stops recording.
fn with_active<T>(write: impl FnOnce(&mut Active) -> Result<T, semiclass_registry::RegistryError>) {
    let mut active = lock();
    if let Some(a) = active.as_mut()
        && let Err(e) = write(a)
    {
        *active = None;
        warn(&e.to_string());
    }
}

fn warn(message: &str) {
    if !WARNED.swap(true, Ordering::SeqCst) {
        crate::notice!(
            "semiclass: warning: run registry: {message}; training goes on without recording it"
        );
    }
}
