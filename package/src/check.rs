//! `manifest.json`, parsed and checked before any file it lists is trusted.

use std::path::{Component, Path};

use semiclass_manifest::package::{
    CLEAR_PACKAGE_FORMAT_VERSION, MANIFEST_FILE, MODEL_CIPHER, PACKAGE_FORMAT_VERSION,
    PackageManifest,
};

use crate::PackageError;
use crate::source::Source;

/// Reads and checks the manifest of the package (folder or zip) at `path`
/// without hashing any file: what a program needs to describe a package or
/// start its activation. Anything that loads the model must use
/// [`crate::Package::open`], which verifies every file.
pub fn read_manifest(path: &Path) -> Result<PackageManifest, PackageError> {
    let mut source = Source::open(path)?;
    let bytes = source.manifest_bytes()?;
    parse_manifest(&source.shown(MANIFEST_FILE), &bytes)
}

/// The manifest in `bytes` (read from `shown`), checked: its format version
/// first (a newer format may not parse as this one), then its shape, then
/// what it says.
pub(crate) fn parse_manifest(shown: &Path, bytes: &[u8]) -> Result<PackageManifest, PackageError> {
    let bad = |reason: String| PackageError::Manifest {
        path: shown.to_path_buf(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("not JSON ({e}); re-export the package")))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    match version {
        None => return Err(bad("no format_version; re-export the package".into())),
        Some(v) if v > u64::from(PACKAGE_FORMAT_VERSION) => {
            return Err(bad(format!(
                "package format version {v}, but this program reads up to {PACKAGE_FORMAT_VERSION}; use a newer semiclass"
            )));
        }
        Some(_) => {}
    }
    let manifest: PackageManifest =
        serde_json::from_value(value).map_err(|e| bad(format!("{e}; re-export the package")))?;
    match problems(&manifest).first() {
        Some(problem) => Err(bad(format!("{problem}; re-export the package"))),
        None => Ok(manifest),
    }
}

/// What is wrong with a well-formed manifest, if anything.
fn problems(manifest: &PackageManifest) -> Vec<String> {
    let mut problems = Vec::new();
    if !is_plain_name(&manifest.package_id) {
        problems.push(format!(
            "package id {:?} is not a plain name",
            manifest.package_id
        ));
    }
    for (file, sha) in &manifest.files {
        if !is_inside(file) || file == MANIFEST_FILE {
            problems.push(format!("file {file:?} is outside the package"));
        } else if !is_sha256_hex(sha) {
            problems.push(format!("{file}: {sha:?} is not a sha256"));
        }
    }
    // Both are loaded: the model into ONNX Runtime, the library into the
    // process. Each must be a listed, hashed file inside the package.
    let named = [
        ("model", &manifest.model.onnx),
        ("runtime library", &manifest.runtime.library),
    ];
    for (what, file) in named {
        if !manifest.files.contains_key(file) {
            problems.push(format!("the {what} {file:?} is not among the listed files"));
        }
    }
    let model = &manifest.model;
    if model.class_names.is_empty() {
        problems.push("the model has no class names".into());
    }
    if model.input_size == 0 || model.preprocess.crop != model.input_size {
        problems.push(format!(
            "preprocessing crops {} px but the model takes {} px",
            model.preprocess.crop, model.input_size
        ));
    }
    problems.extend(encryption_problems(manifest));
    problems
}

/// An encrypted model needs the format that says so and the one cipher;
/// the sealed keys' own bytes are checked when they are opened.
fn encryption_problems(manifest: &PackageManifest) -> Vec<String> {
    let Some(encryption) = &manifest.model.encryption else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if manifest.format_version <= CLEAR_PACKAGE_FORMAT_VERSION {
        problems.push(format!(
            "the model is encrypted but the format version is {}",
            manifest.format_version
        ));
    }
    if encryption.cipher != MODEL_CIPHER {
        problems.push(format!(
            "the model's cipher {:?} is not {MODEL_CIPHER}",
            encryption.cipher
        ));
    }
    if encryption.vendor_keys.is_empty() {
        problems.push("the model is encrypted to no vendor key".into());
    }
    problems
}

/// A `/`-separated relative path that stays inside the package.
pub(crate) fn is_inside(relative: &str) -> bool {
    !relative.is_empty()
        && !relative.contains('\\')
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// One path component: package ids name activation folders and routes.
fn is_plain_name(name: &str) -> bool {
    is_inside(name) && !name.contains('/') && !name.chars().any(char::is_control)
}

/// 64 lowercase hex digits, as manifests write a sha256.
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths_stay_inside() {
        assert!(is_inside("model/model.onnx"));
        for outside in [
            "",
            "/etc/passwd",
            "../x",
            "model/../../x",
            "./x",
            "a\\..\\b",
        ] {
            assert!(!is_inside(outside), "{outside}");
        }
        assert!(is_plain_name("lcnet_050-cpu-x86_64-1a2b3c4d"));
        for bad in ["", "a/b", "..", ".", "a\nb"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
