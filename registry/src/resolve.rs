//! Turning a checkpoint argument (`PATH` or `@nickname`) into a file whose
//! content is the one the registry recorded. Used wherever a checkpoint is
//! accepted: eval, mark, resume, distillation teacher, export.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{CheckpointRow, Registry, RegistryError, validate_nickname};

/// A checkpoint argument, resolved and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Of the file as it is now (equal to the record's when there is one).
    pub sha256: String,
    /// The nickname it was given by, without `@`.
    pub nickname: Option<String>,
    /// The registry's record of this content, when it has one.
    pub record: Option<CheckpointRow>,
}

/// A checkpoint argument could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "@{nick}: nicknames live in the registry, which cannot be used: {reason}; pass the checkpoint's path instead"
    )]
    NoRegistry { nick: String, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: no such checkpoint file")]
    Missing { path: PathBuf },
    #[error(
        "{path}: the checkpoint named @{nick} is gone (moved or deleted); mark it where it is now with `semiclass mark NEW_PATH {nick}`"
    )]
    MarkedMissing { path: PathBuf, nick: String },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: the file changed since the registry recorded it{named} (sha256 recorded {recorded}, now {now}), so it is not the checkpoint that was {what}; put the recorded file back, or give the new file a name of its own (copy it) and use or mark that"
    )]
    Changed {
        path: PathBuf,
        /// ` as @nick`, or empty.
        named: String,
        what: &'static str,
        recorded: String,
        now: String,
    },
}

/// Resolves `arg`: `@nick` through `registry`, anything else as a path.
/// When the registry recorded the file, its content must be a recorded
/// version (for `@nick`: the marked one); a file changed since is refused.
/// `registry` is the open registry, or why it could not be opened.
pub fn resolve_checkpoint(
    arg: &str,
    registry: Result<&Registry, &str>,
) -> Result<Resolved, ResolveError> {
    if arg.starts_with('@') {
        let nick = validate_nickname(arg)?;
        let registry = registry.map_err(|reason| ResolveError::NoRegistry {
            nick: nick.to_string(),
            reason: reason.to_string(),
        })?;
        return resolve_mark(nick, registry);
    }
    let path = std::path::absolute(arg).map_err(|source| ResolveError::Read {
        path: PathBuf::from(arg),
        source,
    })?;
    let path = path.canonicalize().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ResolveError::Missing { path: path.clone() },
        _ => ResolveError::Read {
            path: path.clone(),
            source,
        },
    })?;
    let sha256 = sha256_file(&path).map_err(|source| ResolveError::Read {
        path: path.clone(),
        source,
    })?;
    let versions = match registry {
        Ok(registry) => registry.checkpoints_at(&path)?,
        Err(_) => Vec::new(),
    };
    let record = versions.iter().find(|v| v.sha256 == sha256).cloned();
    if let (None, Some(latest)) = (&record, versions.first()) {
        return Err(changed(&path, None, &latest.sha256, sha256));
    }
    Ok(Resolved {
        path,
        sha256,
        nickname: None,
        record,
    })
}

fn resolve_mark(nick: &str, registry: &Registry) -> Result<Resolved, ResolveError> {
    let mark = registry
        .marked(nick)?
        .ok_or_else(|| RegistryError::NoSuchMark(nick.to_string()))?;
    let path = mark.checkpoint.path.clone();
    let sha256 = sha256_file(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ResolveError::MarkedMissing {
            path: path.clone(),
            nick: nick.to_string(),
        },
        _ => ResolveError::Read {
            path: path.clone(),
            source,
        },
    })?;
    if sha256 != mark.checkpoint.sha256 {
        return Err(changed(&path, Some(nick), &mark.checkpoint.sha256, sha256));
    }
    Ok(Resolved {
        path,
        sha256,
        nickname: Some(nick.to_string()),
        record: Some(mark.checkpoint),
    })
}

fn changed(path: &Path, nick: Option<&str>, recorded: &str, now: String) -> ResolveError {
    ResolveError::Changed {
        path: path.to_path_buf(),
        named: nick.map(|n| format!(" as @{n}")).unwrap_or_default(),
        what: if nick.is_some() { "marked" } else { "recorded" },
        recorded: recorded.to_string(),
        now,
    }
}

/// The sha256 of a file, lowercase hex (as `sha256sum` prints it).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            let digest = hasher.finalize();
            return Ok(digest.iter().map(|b| format!("{b:02x}")).collect());
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checkpoints::tests::checkpoint;
    use crate::concurrency_tests::temp_registry;

    /// A registry with `dir/a.safetensors` recorded and marked `best`.
    fn marked_file() -> (tempfile::TempDir, Registry, PathBuf) {
        let (dir, mut reg) = temp_registry();
        let path = dir.path().canonicalize().unwrap().join("a.safetensors");
        std::fs::write(&path, b"weights v1").unwrap();
        let sha = sha256_file(&path).unwrap();
        let metrics = BTreeMap::new();
        let id = reg
            .record_checkpoint(&checkpoint(&path, &sha, &metrics))
            .unwrap();
        reg.mark("best", id, None).unwrap();
        (dir, reg, path)
    }

    #[test]
    fn sha256_matches_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_nickname_and_a_recorded_path_resolve_to_the_recorded_file() {
        let (_dir, reg, path) = marked_file();
        let by_nick = resolve_checkpoint("@best", Ok(&reg)).unwrap();
        assert_eq!(by_nick.path, path);
        assert_eq!(by_nick.nickname.as_deref(), Some("best"));
        let by_path = resolve_checkpoint(path.to_str().unwrap(), Ok(&reg)).unwrap();
        assert_eq!(by_path.record, by_nick.record);
        assert!(by_path.record.is_some());
    }

    #[test]
    fn a_changed_file_is_refused_with_both_hashes_and_what_to_do() {
        let (_dir, reg, path) = marked_file();
        let recorded = sha256_file(&path).unwrap();
        std::fs::write(&path, b"weights v2").unwrap();
        let now = sha256_file(&path).unwrap();
        for arg in ["@best", path.to_str().unwrap()] {
            let err = resolve_checkpoint(arg, Ok(&reg)).unwrap_err().to_string();
            assert!(err.starts_with(&path.display().to_string()), "{err}");
            assert!(
                err.contains(&format!("recorded {recorded}, now {now}")),
                "{err}"
            );
            assert!(err.contains("put the recorded file back"), "{err}");
        }
        let err = resolve_checkpoint("@best", Ok(&reg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("as @best"), "{err}");
        // Without a registry a path is taken as it is.
        assert!(resolve_checkpoint(path.to_str().unwrap(), Err("no registry")).is_ok());
    }

    #[test]
    fn missing_files_unknown_nicknames_and_no_registry_are_clear_errors() {
        let (_dir, reg, path) = marked_file();
        let err = resolve_checkpoint("@nope", Ok(&reg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("@nope: no such nickname"), "{err}");
        let err = resolve_checkpoint("@best", Err("disk full"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("disk full; pass the checkpoint's path"),
            "{err}"
        );
        let err = resolve_checkpoint("@bad name", Ok(&reg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has ' '"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = resolve_checkpoint("@best", Ok(&reg))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`semiclass mark NEW_PATH best`"), "{err}");
        let err = resolve_checkpoint(path.to_str().unwrap(), Ok(&reg))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("no such checkpoint file"), "{err}");
    }
}
