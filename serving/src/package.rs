//! Loading an export package (a folder or its zip) for serving: the
//! manifest is read and checked, and every file it lists must hash as it
//! says before the model is used.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::Role;
use semiclass_manifest::package::{
    LicenseRequirement, MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest, PackagedModel,
    PackagedRuntime, Target,
};
use sha2::{Digest, Sha256};
use zip::ZipArchive;

/// Larger zip entries are refused rather than inflated into memory.
const MAX_ENTRY_BYTES: u64 = 4 << 30;

/// A checked package, ready to be given to ONNX Runtime.
#[derive(Debug)]
pub struct LoadedPackage {
    pub manifest: PackageManifest,
    /// The folder or zip it came from.
    pub source: PathBuf,
    /// The ONNX model's bytes exactly as hashed, so the model cannot be
    /// swapped between the check and the load.
    pub model: Vec<u8>,
    /// The package's own ONNX Runtime library, when it is a folder that
    /// ships one (a zip's library cannot be loaded without unpacking).
    pub runtime_library: Option<PathBuf>,
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable package zip: {reason}", path = path.display())]
    Zip { path: PathBuf, reason: String },
    #[error("{path}: not a valid package manifest: {reason}; re-export the package", path = path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: package file was changed or damaged (sha256 {actual}, the manifest says {expected}); re-export or re-download the package", path = path.display())]
    FileChanged {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Reads and checks the package at `path`: a folder holding
/// `manifest.json`, or a zip holding it at its root or in one top folder.
pub fn load_package(path: &Path) -> Result<LoadedPackage, PackageError> {
    let mut source = if path.is_dir() {
        Source::Dir(path.to_path_buf())
    } else {
        Source::open_zip(path)?
    };
    let (_, manifest_bytes) = source.read(MANIFEST_FILE)?;
    let manifest = parse_manifest(&source.display(MANIFEST_FILE), &manifest_bytes)?;
    let model = verify_files(&manifest, &mut |relative| source.read(relative))?;
    let runtime_library = match &source {
        Source::Dir(dir) if manifest.files.contains_key(&manifest.runtime.library) => {
            Some(dir.join(&manifest.runtime.library))
        }
        _ => None,
    };
    Ok(LoadedPackage {
        manifest,
        source: path.to_path_buf(),
        model,
        runtime_library,
    })
}

/// Reads a package file by its package-relative path: (the name shown in
/// messages, the bytes).
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<(PathBuf, Vec<u8>), PackageError> + 'a;

/// THE manifest check: every listed file must hash as the manifest says.
/// `read` returns a package file's bytes by its package-relative path.
/// Returns the model's bytes.
pub fn verify_files(
    manifest: &PackageManifest,
    read: &mut ReadFile,
) -> Result<Vec<u8>, PackageError> {
    let mut model = Vec::new();
    for (relative, expected) in &manifest.files {
        let (path, bytes) = read(relative)?;
        let actual = sha256_hex(&bytes);
        if actual != *expected {
            return Err(PackageError::FileChanged {
                path,
                expected: expected.clone(),
                actual,
            });
        }
        if *relative == manifest.model.onnx {
            model = bytes;
        }
    }
    Ok(model)
}

/// A manifest for a CPU package made by hand around one ONNX file (tests,
/// benchmarks): `model/model.onnx` with input `input` and output `logits`,
/// ImageNet normalisation, timm's evaluation crop; no file listed yet (see
/// [`seal_folder`]). Exported packages get theirs from the exporter.
pub fn handmade_manifest(
    package_id: &str,
    arch: &str,
    role: Role,
    class_names: Vec<String>,
    input_size: u32,
) -> PackageManifest {
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    PackageManifest {
        format_version: PACKAGE_FORMAT_VERSION,
        package_id: package_id.to_string(),
        target: Target::CpuX86_64,
        model: PackagedModel {
            arch: arch.to_string(),
            role,
            class_names,
            input_size,
            preprocess: PreprocessSpec::for_input(input_size, mean, std),
            onnx: "model/model.onnx".into(),
            opset: 17,
            input_name: "input".into(),
            output_name: "logits".into(),
            checkpoint_sha256: "00".repeat(32),
        },
        runtime: PackagedRuntime {
            version: "1.32.0".into(),
            library: "lib/libonnxruntime.so".into(),
        },
        license: LicenseRequirement { required: false },
        created: "2026-01-01T00:00:00Z".into(),
        files: BTreeMap::new(),
    }
}

/// Lists every file under `dir` but the manifest in `manifest.files` with
/// its sha256, and writes `dir/manifest.json`.
pub fn seal_folder(dir: &Path, mut manifest: PackageManifest) -> io::Result<PackageManifest> {
    manifest.files.clear();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(dir).map_err(io::Error::other)?;
            let relative = relative.to_string_lossy().replace('\\', "/");
            if relative != MANIFEST_FILE {
                manifest
                    .files
                    .insert(relative, sha256_hex(&fs::read(&path)?));
            }
        }
    }
    let json = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)? + "\n";
    fs::write(dir.join(MANIFEST_FILE), json)?;
    Ok(manifest)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<PackageManifest, PackageError> {
    let bad = |reason: String| PackageError::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let manifest: PackageManifest =
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.format_version > PACKAGE_FORMAT_VERSION {
        return Err(bad(format!(
            "format_version {} is newer than this server reads; update semiclass-serve",
            manifest.format_version
        )));
    }
    if let Some(file) = manifest.files.keys().find(|f| !is_inside(f)) {
        return Err(bad(format!("file {file:?} is outside the package")));
    }
    let model = &manifest.model;
    if !manifest.files.contains_key(&model.onnx) {
        return Err(bad(format!(
            "the model {} is not among the listed files",
            model.onnx
        )));
    }
    if model.class_names.is_empty() {
        return Err(bad("the model has no class names".into()));
    }
    if model.preprocess.crop != model.input_size || model.input_size == 0 {
        return Err(bad(format!(
            "preprocessing crops {} px but the model takes {} px",
            model.preprocess.crop, model.input_size
        )));
    }
    Ok(manifest)
}

/// A plain relative path that stays inside the package.
fn is_inside(relative: &str) -> bool {
    !relative.is_empty()
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

enum Source {
    Dir(PathBuf),
    Zip {
        path: PathBuf,
        archive: ZipArchive<File>,
        /// `""` or `"folder/"`: where the manifest sits in the archive.
        root: String,
    },
}

impl Source {
    fn open_zip(path: &Path) -> Result<Source, PackageError> {
        let io_err = |source| PackageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let zip_err = |reason: String| PackageError::Zip {
            path: path.to_path_buf(),
            reason,
        };
        let archive = ZipArchive::new(File::open(path).map_err(io_err)?)
            .map_err(|e| zip_err(format!("{e} (give a package folder or its .zip)")))?;
        let root = archive
            .file_names()
            .filter_map(Result::ok)
            .filter_map(|name| name.strip_suffix(MANIFEST_FILE).map(str::to_string))
            .filter(|root| root.is_empty() || root.matches('/').count() == 1 && root.ends_with('/'))
            .min_by_key(String::len)
            .ok_or_else(|| zip_err(format!("no {MANIFEST_FILE} at its root or in one folder")))?;
        Ok(Source::Zip {
            path: path.to_path_buf(),
            archive,
            root,
        })
    }

    /// How a package file is named in messages.
    fn display(&self, relative: &str) -> PathBuf {
        match self {
            Source::Dir(dir) => dir.join(relative),
            Source::Zip { path, root, .. } => {
                PathBuf::from(format!("{}!{root}{relative}", path.display()))
            }
        }
    }

    fn read(&mut self, relative: &str) -> Result<(PathBuf, Vec<u8>), PackageError> {
        let shown = self.display(relative);
        let io_err = |source| PackageError::Io {
            path: shown.clone(),
            source,
        };
        let bytes = match self {
            Source::Dir(dir) => fs::read(dir.join(relative)).map_err(io_err)?,
            Source::Zip { archive, root, .. } => {
                let entry = archive
                    .by_name(&format!("{root}{relative}"))
                    .map_err(|e| io_err(io::Error::new(io::ErrorKind::NotFound, e)))?;
                let mut bytes = Vec::new();
                entry
                    .take(MAX_ENTRY_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io_err)?;
                if bytes.len() as u64 > MAX_ENTRY_BYTES {
                    return Err(io_err(io::Error::other("entry is larger than 4 GiB")));
                }
                bytes
            }
        };
        Ok((shown, bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A folder package with a fake model (the check does not parse it).
    fn write_dir(dir: &Path) -> PackageManifest {
        fs::create_dir_all(dir.join("model")).unwrap();
        fs::write(dir.join("model/model.onnx"), b"onnx bytes").unwrap();
        fs::write(dir.join("README.md"), b"read me").unwrap();
        let classes = vec!["a".into(), "b".into()];
        let manifest = handmade_manifest("tiny-cpu-x86_64-00", "tiny", Role::Small, classes, 8);
        seal_folder(dir, manifest).unwrap()
    }

    fn zip_dir(dir: &Path, zip_path: &Path, root: &str) {
        let mut zip = zip::ZipWriter::new(File::create(zip_path).unwrap());
        for name in [MANIFEST_FILE, "model/model.onnx", "README.md"] {
            zip.start_file(
                format!("{root}{name}"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zip.write_all(&fs::read(dir.join(name)).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn folders_and_zips_load_with_the_model_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pkg");
        let manifest = write_dir(&dir);
        let loaded = load_package(&dir).unwrap();
        assert_eq!(loaded.manifest, manifest);
        assert_eq!(manifest.files.len(), 2, "{:?}", manifest.files);
        assert_eq!(loaded.model, b"onnx bytes");
        assert_eq!(loaded.runtime_library, None, "the library is not listed");
        for root in ["", "pkg/"] {
            let zip_path = tmp.path().join(format!("p{}.zip", root.len()));
            zip_dir(&dir, &zip_path, root);
            let loaded = load_package(&zip_path).unwrap();
            assert_eq!(loaded.model, b"onnx bytes");
        }
    }

    #[test]
    fn a_changed_file_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        write_dir(tmp.path());
        fs::write(tmp.path().join("README.md"), b"edited").unwrap();
        let err = load_package(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("README.md: package file was changed"), "{err}");
        fs::remove_file(tmp.path().join("README.md")).unwrap();
        let err = load_package(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("README.md: No such file"), "{err}");
    }

    #[test]
    fn manifests_naming_files_outside_or_newer_formats_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut manifest = write_dir(tmp.path());
        manifest.files.insert("../etc/passwd".into(), "00".into());
        let err = parse_manifest(Path::new("m"), &serde_json::to_vec(&manifest).unwrap());
        assert!(err.unwrap_err().to_string().contains("outside"));
        manifest.files.remove("../etc/passwd");
        manifest.format_version = PACKAGE_FORMAT_VERSION + 1;
        let err = parse_manifest(Path::new("m"), &serde_json::to_vec(&manifest).unwrap());
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("update semiclass-serve")
        );
        let err = load_package(&tmp.path().join("missing.zip")).unwrap_err();
        assert!(err.to_string().contains("missing.zip"), "{err}");
    }
}
