//! Building a package zip.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_manifest::checkpoint_file::{read_meta, sha256_file, sha256_hex};
use semiclass_manifest::package::{
    LicenseRequirement, MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest, PackagedModel,
    PackagedRuntime, Target, package_file_name,
};
use semiclass_sdk_layout::{Facts, SdkBuild, model_only_readme, package_files};
use zip::write::SimpleFileOptions;

use super::runtime::{Runtime, find_runtime, runtime_dir};
use super::{LIB_DIR, MODEL_PATH, PackageError, README_PATH, io_error};
use crate::emit::OPSET;
use crate::export::{INPUT_NAME, OUTPUT_NAME};
use crate::fold::FoldReport;
use crate::{OnnxModel, export_checkpoint};

/// What to build.
#[derive(Debug, Clone)]
pub struct PackageRequest<'a> {
    pub checkpoint: &'a Path,
    pub target: Target,
    /// The folder the zip is written to.
    pub out_dir: &'a Path,
    /// The runtime's `capi/` folder; see [`super::runtime::runtime_dir`] for the defaults.
    pub runtime_dir: Option<&'a Path>,
    /// The SDK build whose files (`bin/infer`, `lib/libsemiclass_sdk.so`,
    /// the header, examples and README rendered for this model) join the
    /// package; a package with the SDK requires activation. Without it the
    /// package is the model and its runtime (for a server, or the user's own
    /// ONNX Runtime code).
    pub sdk: Option<&'a SdkBuild>,
    /// Replace an existing zip of the same name instead of refusing.
    pub replace: bool,
}

/// A package written.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub manifest: PackageManifest,
    pub fold: FoldReport,
}

/// One file of the package.
struct Entry {
    path: String,
    content: Content,
    /// Mode 0755 rather than 0644.
    executable: bool,
}

enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Exports `req.checkpoint` and writes its package for `req.target` into
/// `req.out_dir`; returns where. The zip is written under a temporary name
/// and renamed into place, so a failure leaves no partial package, and an
/// existing file is only replaced when `req.replace` says so.
pub fn build_package(req: &PackageRequest) -> Result<Built, PackageError> {
    let meta = read_meta(req.checkpoint).map_err(crate::ExportError::from)?;
    let runtime = find_runtime(req.target, &runtime_dir(req.target, req.runtime_dir)?)?;
    let name = package_file_name(&meta.model, req.target);
    let dest = req.out_dir.join(&name);
    if dest.exists() && !req.replace {
        return Err(PackageError::Exists { path: dest });
    }
    let onnx = export_checkpoint(req.checkpoint)?;
    let mut manifest = manifest(req, &onnx, &runtime);
    let mut entries = vec![Entry {
        path: MODEL_PATH.into(),
        content: Content::Bytes(onnx.bytes.clone()),
        executable: false,
    }];
    entries.extend(runtime_entries(&runtime));
    entries.extend(documents_and_sdk(
        req.sdk,
        &Facts::from_manifest(&manifest),
    )?);
    manifest.files = hashes(&entries)?;
    write_zip(&dest, &manifest, &entries, req.replace)?;
    Ok(Built {
        path: dest,
        manifest,
        fold: onnx.fold,
    })
}

fn runtime_entries(runtime: &Runtime) -> impl Iterator<Item = Entry> + '_ {
    runtime.files().map(|file| Entry {
        path: lib_path(file),
        content: Content::File(file.clone()),
        executable: true,
    })
}

/// The SDK's files (README included) when there is an SDK, else the
/// model-only README: both rendered from `sdk-template`'s templates.
fn documents_and_sdk(sdk: Option<&SdkBuild>, facts: &Facts) -> Result<Vec<Entry>, PackageError> {
    let Some(sdk) = sdk else {
        return Ok(vec![Entry {
            path: README_PATH.into(),
            content: Content::Bytes(model_only_readme(facts)?.into_bytes()),
            executable: false,
        }]);
    };
    let files = package_files(sdk, facts)?;
    Ok(files
        .into_iter()
        .map(|file| Entry {
            path: file.path,
            content: Content::Bytes(file.bytes),
            executable: file.executable,
        })
        .collect())
}

fn lib_path(file: &Path) -> String {
    let name = file
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    format!("{LIB_DIR}/{name}")
}

fn manifest(req: &PackageRequest, onnx: &OnnxModel, runtime: &Runtime) -> PackageManifest {
    let meta = &onnx.meta;
    let model_sha = sha256_hex(&onnx.bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PackageManifest {
        format_version: PACKAGE_FORMAT_VERSION,
        package_id: format!("{}-{}-{}", meta.model, req.target, &model_sha[..8]),
        target: req.target,
        model: PackagedModel {
            arch: meta.model.clone(),
            role: meta.role,
            class_names: meta.class_names.clone(),
            input_size: meta.input_size,
            preprocess: meta.preprocess.clone(),
            onnx: MODEL_PATH.into(),
            opset: OPSET,
            input_name: INPUT_NAME.into(),
            output_name: OUTPUT_NAME.into(),
            checkpoint_sha256: onnx.checkpoint_sha256.clone(),
        },
        runtime: PackagedRuntime {
            version: runtime.version.clone(),
            library: lib_path(&runtime.library),
        },
        license: LicenseRequirement {
            required: req.sdk.is_some(),
        },
        created: rfc3339_utc(now),
        files: BTreeMap::new(),
    }
}

fn hashes(entries: &[Entry]) -> Result<BTreeMap<String, String>, PackageError> {
    let mut files = BTreeMap::new();
    for e in entries {
        let sha = match &e.content {
            Content::Bytes(b) => sha256_hex(b),
            Content::File(p) => sha256_file(p).map_err(crate::ExportError::from)?,
        };
        if files.insert(e.path.clone(), sha).is_some() {
            return Err(PackageError::Zip {
                path: e.path.clone().into(),
                message: "two files with this package path".into(),
            });
        }
    }
    Ok(files)
}

/// Writes the zip next to `dest` and renames it into place.
fn write_zip(
    dest: &Path,
    manifest: &PackageManifest,
    entries: &[Entry],
    replace: bool,
) -> Result<(), PackageError> {
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
    let zip_error = |e: zip::result::ZipError| PackageError::Zip {
        path: tmp.path().to_path_buf(),
        message: e.to_string(),
    };
    let mut zip = zip::ZipWriter::new(tmp.as_file());
    let json = serde_json::to_vec_pretty(manifest).expect("the manifest serializes");
    let manifest_entry = Entry {
        path: MANIFEST_FILE.into(),
        content: Content::Bytes(json),
        executable: false,
    };
    for e in std::iter::once(&manifest_entry).chain(entries) {
        write_entry(&mut zip, e).map_err(|err| match err {
            EntryError::Zip(z) => zip_error(z),
            EntryError::Io(path, error) => PackageError::Io { path, error },
        })?;
    }
    zip.finish()
        .map_err(zip_error)?
        .sync_all()
        .map_err(io_error(tmp.path()))?;
    let persisted = match replace {
        true => tmp.persist(dest).map(|_| ()),
        false => tmp.persist_noclobber(dest).map(|_| ()),
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => PackageError::Exists { path: dest.into() },
        _ => PackageError::Io {
            path: dest.into(),
            error: e.error,
        },
    })
}

enum EntryError {
    Zip(zip::result::ZipError),
    Io(PathBuf, std::io::Error),
}

fn write_entry(zip: &mut zip::ZipWriter<&std::fs::File>, e: &Entry) -> Result<(), EntryError> {
    match &e.content {
        Content::Bytes(bytes) => {
            zip.start_file(e.path.as_str(), options(e, bytes.len() as u64))
                .map_err(EntryError::Zip)?;
            zip.write_all(bytes)
                .map_err(|err| EntryError::Io(e.path.clone().into(), err))
        }
        Content::File(path) => {
            let io = |err| EntryError::Io(path.clone(), err);
            let mut file = std::fs::File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            zip.start_file(e.path.as_str(), options(e, len))
                .map_err(EntryError::Zip)?;
            std::io::copy(&mut file, zip).map(|_| ()).map_err(io)
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
