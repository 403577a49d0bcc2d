//! Writing a package zip: the manifest with every file's sha256 first, then
//! the files, under a temporary name renamed into place, so a failure
//! never leaves a partial package where a complete one was expected.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use semiclass_manifest::checkpoint_file::{sha256_hex, sha256_reader};
use semiclass_manifest::package::{MANIFEST_FILE, PackageManifest};
use zip::write::SimpleFileOptions;

use crate::{PackageError, io_error};

/// One file of a package.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Package-relative, `/`-separated.
    pub path: String,
    pub content: Content,
    /// Mode 0755 rather than 0644.
    pub executable: bool,
}

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Copied from a file (runtime libraries: tens of MB).
    File(PathBuf),
}

/// Lists every entry with its sha256 in `manifest.files` and writes the
/// package zip to `dest`: through a temporary file in the same folder and
/// a rename, replacing an existing file only when `replace` says so.
/// Returns the manifest as written.
pub fn write_zip(
    dest: &Path,
    mut manifest: PackageManifest,
    entries: &[Entry],
    replace: bool,
) -> Result<PackageManifest, PackageError> {
    manifest.files = hashes(entries)?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".semiclass-package-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
    let manifest_entry = Entry {
        path: MANIFEST_FILE.into(),
        content: Content::Bytes(json),
        executable: false,
    };
    let mut zip = zip::ZipWriter::new(tmp.as_file());
    for e in std::iter::once(&manifest_entry).chain(entries) {
        write_entry(&mut zip, e, tmp.path())?;
    }
    zip.finish()
        .map_err(|e| zip_error(tmp.path(), e))?
        .sync_all()
        .map_err(io_error(tmp.path()))?;
    let persisted = match replace {
        true => tmp.persist(dest).map(drop),
        false => tmp.persist_noclobber(dest).map(drop),
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => PackageError::Exists { path: dest.into() },
        _ => io_error(dest)(e.error),
    })?;
    Ok(manifest)
}

/// Unpacks the package zip at `zip` into the folder `dir`, as a user
/// unpacks it before running the SDK (executables keep their mode). Entries
/// that would leave `dir` are refused.
pub fn unpack(zip: &Path, dir: &Path) -> Result<(), PackageError> {
    let file = std::fs::File::open(zip).map_err(io_error(zip))?;
    zip::ZipArchive::new(file)
        .and_then(|mut archive| archive.extract(dir))
        .map_err(|e| zip_error(zip, e))
}

fn zip_error(path: &Path, e: zip::result::ZipError) -> PackageError {
    PackageError::Zip {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn hashes(entries: &[Entry]) -> Result<BTreeMap<String, String>, PackageError> {
    let mut files = BTreeMap::new();
    for e in entries {
        let sha = match &e.content {
            Content::Bytes(b) => sha256_hex(b),
            Content::File(p) => {
                let file = std::fs::File::open(p).map_err(io_error(p))?;
                sha256_reader(file).map_err(io_error(p))?
            }
        };
        if files.insert(e.path.clone(), sha).is_some() {
            return Err(PackageError::Invalid {
                path: e.path.clone().into(),
                problems: vec!["two files with this package path".into()],
            });
        }
    }
    Ok(files)
}

fn write_entry(
    zip: &mut zip::ZipWriter<&std::fs::File>,
    e: &Entry,
    zip_path: &Path,
) -> Result<(), PackageError> {
    match &e.content {
        Content::Bytes(bytes) => {
            zip.start_file(e.path.as_str(), options(e, bytes.len() as u64))
                .map_err(|err| zip_error(zip_path, err))?;
            zip.write_all(bytes).map_err(io_error(zip_path))
        }
        Content::File(path) => {
            let mut file = std::fs::File::open(path).map_err(io_error(path))?;
            let len = file.metadata().map_err(io_error(path))?.len();
            zip.start_file(e.path.as_str(), options(e, len))
                .map_err(|err| zip_error(zip_path, err))?;
            std::io::copy(&mut file, zip)
                .map(drop)
                .map_err(io_error(path))
        }
    }
}

/// Deflate at a fast level (float weights barely compress; the libraries
/// do), Zip64 when needed.
fn options(entry: &Entry, len: u64) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(if entry.executable { 0o755 } else { 0o644 })
        .large_file(len >= u32::MAX as u64)
}
