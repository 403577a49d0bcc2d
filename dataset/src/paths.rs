//! Image paths from list files: normalised lexically, and never allowed to
//! leave the dataset folder.

use std::fmt;
use std::path::{Path, PathBuf};

/// A path relative to the dataset root, normalised (`./` and inner `..`
/// resolved, `/` separators), so `images/a.jpg` and `./images/x/../a.jpg`
/// name the same image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path under `root`, without touching the file system.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a written path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("absolute path '{0}': paths must be relative to the dataset folder")]
    Absolute(String),
    #[error("path '{0}' leaves the dataset folder through '..'; keep images inside it")]
    Escapes(String),
}

/// Normalises a path as written in a list file.
pub fn normalize(written: &str) -> Result<RelPath, PathError> {
    if written.is_empty() {
        return Err(PathError::Empty);
    }
    if written.starts_with('/') || Path::new(written).is_absolute() {
        return Err(PathError::Absolute(written.to_string()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in written.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes(written.to_string()));
                }
            }
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(RelPath(parts.join("/")))
}

/// Where a listed path really leads, found without opening the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// An existing file inside the dataset folder (symlinks followed).
    Inside(PathBuf),
    /// Nothing exists at that path.
    Missing,
    /// A symlink (at any level) leads outside the dataset folder.
    Outside(PathBuf),
}

/// Resolves `rel` under `canonical_root` (which must already be canonical),
/// following symlinks only to see where they lead.
pub fn resolve(canonical_root: &Path, rel: &RelPath) -> std::io::Result<Resolved> {
    let joined = rel.under(canonical_root);
    match joined.canonicalize() {
        Ok(real) if real.starts_with(canonical_root) => Ok(Resolved::Inside(real)),
        Ok(real) => Ok(Resolved::Outside(real)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Resolved::Missing),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dots_and_repeated_separators() {
        assert_eq!(normalize("images/a.jpg").unwrap().as_str(), "images/a.jpg");
        assert_eq!(
            normalize("./images//x/../a.jpg").unwrap().as_str(),
            "images/a.jpg"
        );
        assert_eq!(
            normalize("images/my photo 1.jpg").unwrap().as_str(),
            "images/my photo 1.jpg"
        );
    }

    #[test]
    fn refuses_paths_that_leave_the_folder() {
        assert!(matches!(
            normalize("../secret.jpg"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            normalize("images/../../x.png"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            normalize("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(normalize("."), Err(PathError::Empty)));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_folder_is_outside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.png"), b"x").unwrap();
        let root = tempfile::tempdir().unwrap();
        let root_real = root.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.png"), root_real.join("link.png"))
            .unwrap();
        std::fs::write(root_real.join("in.png"), b"x").unwrap();
        let link = normalize("link.png").unwrap();
        assert!(matches!(
            resolve(&root_real, &link).unwrap(),
            Resolved::Outside(_)
        ));
        let inside = normalize("in.png").unwrap();
        assert!(matches!(
            resolve(&root_real, &inside).unwrap(),
            Resolved::Inside(_)
        ));
        let missing = normalize("nope.png").unwrap();
        assert_eq!(resolve(&root_real, &missing).unwrap(), Resolved::Missing);
    }
}
