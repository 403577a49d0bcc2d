//! A dataset uploaded as a zip: unpacked into a new folder of the studio's
//! own, then checked like a folder added by path. The whole archive is
//! refused before anything is written when one entry could leave its
//! folder (`..`, an absolute path, a symlink), and unpacking stops at the
//! first entry that inflates beyond what it declared or beyond the limits
//! (a decompression bomb), removing what it wrote.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use crate::error::StudioError;

/// Limits of one upload.
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    /// Files (and folders) in the archive.
    pub max_entries: usize,
    /// Bytes of all files once unpacked.
    pub max_unpacked: u64,
    /// How many times its compressed size an entry may inflate to (text
    /// lists and images compress far less than this; bombs far more).
    pub max_ratio: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_entries: 500_000,
            max_unpacked: 20 << 30,
            max_ratio: 200,
        }
    }
}

/// Entries this small may have any ratio (an empty list file compresses
/// "infinitely").
const RATIO_FREE_BYTES: u64 = 1 << 20;

/// A name made of an uploaded file's name that is safe as one path
/// component: letters, digits, `-` and `_` kept, anything else `_`, at
/// most 64 characters (may be empty).
pub fn safe_name(stem: &str) -> String {
    stem.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// Unpacks the zip at `archive` into the new folder `dest` (which must not
/// exist); returns the dataset folder inside it (`dest`, or its only
/// sub-folder when the zip holds one folder).
pub fn unpack(archive: &Path, dest: &Path, limits: ZipLimits) -> Result<PathBuf, StudioError> {
    let file = File::open(archive).map_err(|e| internal(archive, e))?;
    let mut zip = ZipArchive::new(file)
        .map_err(|e| StudioError::Invalid(format!("the upload is not a zip file: {e}")))?;
    let names = safe_names(&mut zip, limits)?;
    std::fs::create_dir(dest).map_err(|e| internal(dest, e))?;
    if let Err(e) = extract(&mut zip, &names, dest, limits) {
        // Only the folder made above: nobody else's files.
        let _ = std::fs::remove_dir_all(dest);
        return Err(e);
    }
    Ok(dataset_root(dest))
}

/// Every entry's path inside the folder, or the reason the archive is
/// refused; checks names and declared sizes before anything is written.
fn safe_names<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    limits: ZipLimits,
) -> Result<Vec<Option<PathBuf>>, StudioError> {
    if zip.len() > limits.max_entries {
        return Err(StudioError::Invalid(format!(
            "the zip holds {} entries, more than the limit of {}",
            zip.len(),
            limits.max_entries
        )));
    }
    let mut names = Vec::with_capacity(zip.len());
    let mut declared = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| StudioError::Invalid(format!("the zip is damaged: {e}")))?;
        let raw = entry
            .name()
            .map_or_else(|_| "(a name that is not UTF-8)".into(), |n| n.into_owned());
        let refuse =
            |why: &str| StudioError::Invalid(format!("{raw}: {why}; nothing was unpacked"));
        if entry.is_symlink() {
            return Err(refuse(
                "a symbolic link in the zip (it could point out of the dataset)",
            ));
        }
        let Some(name) = entry.enclosed_name() else {
            return Err(refuse(
                "this path would leave the dataset folder (`..` or absolute)",
            ));
        };
        if entry.size() > 0 && entry_allowance(entry.size(), entry.compressed_size(), limits) == 0 {
            return Err(refuse(&format!(
                "inflates {} times (over {}): a decompression bomb?",
                entry.size() / entry.compressed_size().max(1),
                limits.max_ratio
            )));
        }
        declared = declared.saturating_add(entry.size());
        if declared > limits.max_unpacked {
            return Err(refuse(&format!(
                "the zip unpacks to more than {} bytes",
                limits.max_unpacked
            )));
        }
        names.push((!entry.is_dir()).then_some(name));
    }
    Ok(names)
}

fn extract<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    names: &[Option<PathBuf>],
    dest: &Path,
    limits: ZipLimits,
) -> Result<(), StudioError> {
    let mut budget = limits.max_unpacked;
    for (i, name) in names.iter().enumerate() {
        let Some(name) = name else { continue };
        let mut entry = zip
            .by_index(i)
            .map_err(|e| StudioError::Invalid(format!("the zip is damaged: {e}")))?;
        let allowed = entry_allowance(entry.size(), entry.compressed_size(), limits).min(budget);
        let path = dest.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| internal(parent, e))?;
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| internal(&path, e))?;
        // One byte past the allowance tells a lying header from an honest one.
        let written = std::io::copy(&mut (&mut entry).take(allowed + 1), &mut out)
            .map_err(|e| StudioError::Invalid(format!("{}: cannot unpack: {e}", name.display())))?;
        if written > allowed || written > entry.size() {
            return Err(StudioError::Invalid(format!(
                "{}: inflates beyond its declared size or the limits (a decompression bomb?); nothing was kept",
                name.display()
            )));
        }
        out.flush().map_err(|e| internal(&path, e))?;
        budget -= written;
    }
    Ok(())
}

/// The most an entry may inflate to: what it declares, unless that is a
/// ratio only a bomb has.
fn entry_allowance(size: u64, compressed: u64, limits: ZipLimits) -> u64 {
    if size > RATIO_FREE_BYTES && size / compressed.max(1) > limits.max_ratio {
        0
    } else {
        size
    }
}

/// `dest`, or its only entry when that is a folder (a zip of the folder).
fn dataset_root(dest: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dest)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [only] if only.is_dir() => only.clone(),
        _ => dest.to_path_buf(),
    }
}

fn internal(path: &Path, e: std::io::Error) -> StudioError {
    StudioError::Internal(format!("{}: {e}", path.display()))
}
