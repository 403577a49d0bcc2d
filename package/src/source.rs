//! Where a package's files come from: a folder, or a zip holding them at
//! its root or in one top folder (as `zip -r pkg.zip pkg/` makes it).
//! Links and special files are never followed: a package is plain files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use semiclass_manifest::checkpoint_file::{sha256_hex, sha256_reader};
use semiclass_manifest::package::MANIFEST_FILE;
use zip::ZipArchive;

use crate::check::is_inside;
use crate::{MAX_ENTRY_BYTES, MAX_MANIFEST_BYTES, PackageError, io_error};

/// What hashing every file found: package path -> sha256, the bytes of the
/// one file asked to keep, and what is wrong (links, unsafe names, ...).
pub(crate) struct Listing {
    pub found: BTreeMap<String, String>,
    pub kept: Option<Vec<u8>>,
    pub problems: Vec<String>,
}

pub(crate) enum Source {
    Dir(PathBuf),
    Zip {
        path: PathBuf,
        archive: ZipArchive<File>,
        /// `""` or `"folder/"`: where the manifest sits in the archive.
        root: String,
    },
}

impl Source {
    /// The folder or zip at `path`.
    pub fn open(path: &Path) -> Result<Source, PackageError> {
        let meta = std::fs::metadata(path).map_err(io_error(path))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let zip_error = |reason: String| PackageError::Zip {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io_error(path))?;
        let archive = ZipArchive::new(file).map_err(|e| zip_error(e.to_string()))?;
        if archive.has_duplicate_names() {
            return Err(zip_error("two entries have the same name".into()));
        }
        let root = archive
            .file_names()
            .filter_map(Result::ok)
            .filter_map(|name| name.strip_suffix(MANIFEST_FILE).map(str::to_string))
            .filter(|root| root.is_empty() || root.matches('/').count() == 1 && root.ends_with('/'))
            .min_by_key(String::len)
            .unwrap_or_default();
        Ok(Source::Zip {
            path: path.to_path_buf(),
            archive,
            root,
        })
    }

    /// How the package file `rel` is named in messages.
    pub fn shown(&self, rel: &str) -> PathBuf {
        match self {
            Source::Dir(dir) => dir.join(rel),
            Source::Zip { path, root, .. } => {
                PathBuf::from(format!("{}!{root}{rel}", path.display()))
            }
        }
    }

    /// The package folder on disk, for a folder package.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Source::Dir(dir) => Some(dir),
            Source::Zip { .. } => None,
        }
    }

    /// The bytes of `manifest.json`.
    pub fn manifest_bytes(&mut self) -> Result<Vec<u8>, PackageError> {
        let shown = self.shown(MANIFEST_FILE);
        let package = match self {
            Source::Dir(dir) => dir.clone(),
            Source::Zip { path, .. } => path.clone(),
        };
        match self.read(MANIFEST_FILE, MAX_MANIFEST_BYTES) {
            Err(PackageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(PackageError::Invalid {
                    path: package,
                    problems: vec![format!("no {MANIFEST_FILE}")],
                })
            }
            Err(PackageError::Io { source, .. }) => Err(io_error(shown)(source)),
            other => other,
        }
    }

    /// The bytes of the package file `rel`, at most `limit` of them.
    pub fn read(&mut self, rel: &str, limit: u64) -> Result<Vec<u8>, PackageError> {
        let shown = self.shown(rel);
        let too_large =
            || io_error(&shown)(io::Error::other(format!("larger than {} MiB", limit >> 20)));
        let mut bytes = Vec::new();
        match self {
            Source::Dir(dir) => {
                let path = dir.join(rel);
                let kind = std::fs::symlink_metadata(&path).map_err(io_error(&shown))?;
                if !kind.is_file() {
                    let reason = "a link or special file; packages hold plain files";
                    return Err(io_error(&shown)(io::Error::other(reason)));
                }
                let file = File::open(&path).map_err(io_error(&shown))?;
                file.take(limit + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io_error(&shown))?;
            }
            Source::Zip { archive, root, .. } => {
                let entry = archive.by_name(&format!("{root}{rel}")).map_err(|e| {
                    io_error(&shown)(io::Error::new(io::ErrorKind::NotFound, e.to_string()))
                })?;
                entry
                    .take(limit + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io_error(&shown))?;
            }
        }
        match bytes.len() as u64 > limit {
            true => Err(too_large()),
            false => Ok(bytes),
        }
    }

    /// Hashes every file but the manifest; keeps the bytes of `keep`.
    pub fn hash_all(&mut self, keep: &str) -> Result<Listing, PackageError> {
        match self {
            Source::Dir(dir) => hash_dir(dir, keep),
            Source::Zip {
                path,
                archive,
                root,
            } => hash_zip(path, archive, root, keep),
        }
    }
}

/// sha256 of everything `reader` yields, keeping the bytes when asked.
fn hash(mut reader: impl Read, keep: bool) -> io::Result<(String, Option<Vec<u8>>)> {
    if !keep {
        return Ok((sha256_reader(reader)?, None));
    }
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    Ok((sha256_hex(&bytes), Some(bytes)))
}

fn hash_dir(root: &Path, keep: &str) -> Result<Listing, PackageError> {
    let mut listing = Listing {
        found: BTreeMap::new(),
        kept: None,
        problems: Vec::new(),
    };
    for w in walk(root)? {
        if !w.plain {
            listing.problems.push(format!(
                "{}: a link or special file; packages hold plain files",
                w.rel
            ));
            continue;
        }
        if w.rel == MANIFEST_FILE {
            continue;
        }
        let file = File::open(&w.path).map_err(io_error(&w.path))?;
        let (sha, bytes) = hash(file, w.rel == keep).map_err(io_error(&w.path))?;
        if bytes.is_some() {
            listing.kept = bytes;
        }
        listing.found.insert(w.rel, sha);
    }
    Ok(listing)
}

fn hash_zip(
    path: &Path,
    archive: &mut ZipArchive<File>,
    root: &str,
    keep: &str,
) -> Result<Listing, PackageError> {
    let mut listing = Listing {
        found: BTreeMap::new(),
        kept: None,
        problems: Vec::new(),
    };
    let zip_error = |name: &str, e: &dyn std::fmt::Display| PackageError::Zip {
        path: path.to_path_buf(),
        reason: format!("{name}: {e}"),
    };
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| zip_error(&format!("entry {i}"), &e))?;
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            Err(e) => {
                listing
                    .problems
                    .push(format!("entry {i}: an unreadable name ({e})"));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let rel = match name.strip_prefix(root) {
            Some(rel) if entry.enclosed_name().is_some() && is_inside(rel) => rel.to_string(),
            Some(_) => {
                listing.problems.push(format!(
                    "{name}: an unsafe path (absolute or leaving the package)"
                ));
                continue;
            }
            None => {
                listing
                    .problems
                    .push(format!("{name}: outside the package folder {root}"));
                continue;
            }
        };
        if entry.is_symlink() {
            listing
                .problems
                .push(format!("{rel}: a link; packages hold plain files"));
            continue;
        }
        if entry.size() > MAX_ENTRY_BYTES {
            let gib = MAX_ENTRY_BYTES >> 30;
            listing
                .problems
                .push(format!("{rel}: larger than {gib} GiB unpacked"));
            continue;
        }
        if rel == MANIFEST_FILE {
            continue;
        }
        let (sha, bytes) = hash(entry, rel == keep).map_err(|e| zip_error(&rel, &e))?;
        if bytes.is_some() {
            listing.kept = bytes;
        }
        listing.found.insert(rel, sha);
    }
    Ok(listing)
}

/// A file under a folder being walked.
pub(crate) struct Walked {
    /// `/`-separated, relative to the folder.
    pub rel: String,
    pub path: PathBuf,
    /// A regular file (not a link, socket, ...).
    pub plain: bool,
}

/// Every non-folder entry under `root`, links not followed, sorted.
pub(crate) fn walk(root: &Path) -> Result<Vec<Walked>, PackageError> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            let kind = std::fs::symlink_metadata(&path)
                .map_err(io_error(&path))?
                .file_type();
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).expect("walked below the root");
            let rel: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            out.push(Walked {
                rel: rel.join("/"),
                path,
                plain: kind.is_file(),
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}
