//! Opening a package: a zip as written by the exporter, or the folder it
//! was unpacked into. Every file is checked against `manifest.json` before
//! the package is handed out, and again whenever a file is read, so what is
//! loaded is what was exported.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use semiclass_manifest::checkpoint_file::{sha256_hex, sha256_reader};
use semiclass_manifest::package::{MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest};

use super::{PackageError, io_error, walk};

/// A verified package.
#[derive(Debug)]
pub struct Package {
    pub manifest: PackageManifest,
    /// The zip or folder it was opened from.
    pub path: PathBuf,
    zipped: bool,
}

impl Package {
    /// Opens the zip or folder at `path` and checks every file: each one
    /// `manifest.json` lists must be present with its sha256, and no other
    /// file may be there. All problems are reported together.
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        let meta = std::fs::metadata(path).map_err(io_error(path))?;
        let zipped = !meta.is_dir();
        let (found, mut problems) = match zipped {
            true => hash_zip(path)?,
            false => hash_dir(path)?,
        };
        let manifest_path = path.join(MANIFEST_FILE);
        let Some(manifest_bytes) = found.get(MANIFEST_FILE).map(|(_, b)| b) else {
            problems.insert(0, format!("no {MANIFEST_FILE}"));
            return Err(PackageError::Invalid {
                path: path.into(),
                problems,
            });
        };
        let manifest = parse_manifest(
            &manifest_path,
            manifest_bytes.as_deref().unwrap_or_default(),
        )?;
        problems.extend(compare(&manifest, &found));
        if !problems.is_empty() {
            return Err(PackageError::Invalid {
                path: path.into(),
                problems,
            });
        }
        Ok(Package {
            manifest,
            path: path.into(),
            zipped,
        })
    }

    /// The bytes of the package file `rel` (e.g. `model/model.onnx`),
    /// checked against the manifest again as they are read.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, PackageError> {
        let invalid = |problem: String| PackageError::Invalid {
            path: self.path.clone(),
            problems: vec![problem],
        };
        let Some(want) = self.manifest.files.get(rel) else {
            return Err(invalid(format!("{rel}: not listed in {MANIFEST_FILE}")));
        };
        let bytes = match self.zipped {
            true => read_zip_entry(&self.path, rel)?,
            false => std::fs::read(self.path.join(rel)).map_err(io_error(self.path.join(rel)))?,
        };
        match sha256_hex(&bytes) == *want {
            true => Ok(bytes),
            false => Err(invalid(changed(rel))),
        }
    }

    /// The ONNX model file's bytes.
    pub fn model_bytes(&self) -> Result<Vec<u8>, PackageError> {
        self.read(&self.manifest.model.onnx)
    }
}

/// Package path -> (sha256, bytes kept only for the manifest).
type Found = BTreeMap<String, (String, Option<Vec<u8>>)>;

fn changed(rel: &str) -> String {
    format!("{rel}: sha256 differs from {MANIFEST_FILE} (the file was changed or is corrupt)")
}

fn compare(manifest: &PackageManifest, found: &Found) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, want) in &manifest.files {
        match found.get(rel) {
            None => problems.push(format!("{rel}: listed in {MANIFEST_FILE} but missing")),
            Some((sha, _)) if sha != want => problems.push(changed(rel)),
            Some(_) => {}
        }
    }
    let unknown = found
        .keys()
        .filter(|rel| *rel != MANIFEST_FILE && !manifest.files.contains_key(*rel));
    problems.extend(unknown.map(|rel| format!("{rel}: not listed in {MANIFEST_FILE}")));
    for named in [&manifest.model.onnx, &manifest.runtime.library] {
        if !manifest.files.contains_key(named) {
            problems.push(format!(
                "{MANIFEST_FILE} names {named} but does not list its sha256"
            ));
        }
    }
    problems
}

fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<PackageManifest, PackageError> {
    let bad = |message: String| PackageError::Manifest {
        path: path.into(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    // The version first: a newer format may not parse as this one.
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    match version {
        None => return Err(bad("no format_version".into())),
        Some(v) if v > u64::from(PACKAGE_FORMAT_VERSION) => {
            return Err(bad(format!(
                "package format version {v}, but this semiclass reads up to {PACKAGE_FORMAT_VERSION}; use a newer semiclass"
            )));
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

fn hash_zip(path: &Path) -> Result<(Found, Vec<String>), PackageError> {
    let zip_error = |e: zip::result::ZipError| PackageError::Zip {
        path: path.into(),
        message: format!("not a readable package zip: {e}"),
    };
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    let (mut found, mut problems) = (Found::new(), Vec::new());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_error)?;
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            Err(e) => {
                problems.push(format!("entry {i}: an unreadable name ({e})"));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        if entry.enclosed_name().is_none() || name.contains('\\') {
            problems.push(format!(
                "{name}: an unsafe path (absolute or leaving the package)"
            ));
            continue;
        }
        if entry.is_symlink() {
            problems.push(format!("{name}: a link; packages hold plain files"));
            continue;
        }
        let mut keep = (name == MANIFEST_FILE).then(Vec::new);
        let sha = match keep.as_mut() {
            Some(buf) => entry.read_to_end(buf).map(|_| sha256_hex(buf)),
            None => sha256_reader(&mut entry),
        }
        .map_err(|e| PackageError::Zip {
            path: path.into(),
            message: format!("{name}: {e}"),
        })?;
        found.insert(name, (sha, keep));
    }
    Ok((found, problems))
}

fn read_zip_entry(path: &Path, rel: &str) -> Result<Vec<u8>, PackageError> {
    let zip_error = |e: zip::result::ZipError| PackageError::Zip {
        path: path.into(),
        message: format!("{rel}: {e}"),
    };
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    let mut entry = archive.by_name(rel).map_err(zip_error)?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(io_error(path))?;
    Ok(bytes)
}

fn hash_dir(root: &Path) -> Result<(Found, Vec<String>), PackageError> {
    let (mut found, mut problems) = (Found::new(), Vec::new());
    for w in walk(root)? {
        if !w.plain {
            problems.push(format!(
                "{}: a link or special file; packages hold plain files",
                w.rel
            ));
        } else if w.rel == MANIFEST_FILE {
            let bytes = std::fs::read(&w.path).map_err(io_error(&w.path))?;
            found.insert(w.rel, (sha256_hex(&bytes), Some(bytes)));
        } else {
            let file = std::fs::File::open(&w.path).map_err(io_error(&w.path))?;
            let sha = sha256_reader(file).map_err(io_error(&w.path))?;
            found.insert(w.rel, (sha, None));
        }
    }
    Ok((found, problems))
}
