//! Building a package zip.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_manifest::checkpoint_file::{read_meta, sha256_file, sha256_hex};
use semiclass_manifest::package::{
    LicenseRequirement, MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest, PackagedModel,
    PackagedRuntime, Target,
};
use zip::write::SimpleFileOptions;

use super::readme::{DEFAULT_README, render, variables};
use super::runtime::{Runtime, find_runtime, runtime_dir};
use super::{LIB_DIR, MODEL_PATH, PackageError, README_PATH, io_error, walk};
use crate::emit::OPSET;
use crate::export::{INPUT_NAME, OUTPUT_NAME};
use crate::fold::FoldReport;
use crate::{OnnxModel, export_checkpoint};

/// The SDK's files (DESIGN.md section 7: `bin/infer`, `lib/libsemiclass_sdk.so`,
/// `include/semiclass_sdk.h`, `examples/`), as built from `sdk-template/`: a
/// folder whose files go into the package under the same relative paths.
/// Files ending in `.tmpl` are rendered with the model's facts (see
/// [`super::render`]) and lose the suffix; a `README.md.tmpl` replaces the
/// default README. A package with an SDK requires activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkFiles {
    pub root: PathBuf,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct PackageRequest<'a> {
    pub checkpoint: &'a Path,
    pub target: Target,
    /// The folder the zip is written to.
    pub out_dir: &'a Path,
    /// The runtime's `capi/` folder; see [`super::runtime::runtime_dir`] for the defaults.
    pub runtime_dir: Option<&'a Path>,
    pub sdk: Option<&'a SdkFiles>,
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
}

enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// `<model>-<target>.zip`.
pub fn package_file_name(arch: &str, target: Target) -> String {
    format!("{arch}-{target}.zip")
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
    let mut entries = vec![Entry {
        path: MODEL_PATH.into(),
        content: Content::Bytes(onnx.bytes.clone()),
    }];
    entries.extend(runtime_entries(&runtime));
    let sdk = match req.sdk {
        Some(sdk) => sdk_entries(sdk)?,
        None => Vec::new(),
    };
    let mut manifest = manifest(req, &onnx, &runtime);
    let vars = variables(&manifest, &name);
    for (path, content) in sdk {
        entries.push(render_entry(path, content, &vars)?);
    }
    if !entries.iter().any(|e| e.path == README_PATH) {
        let readme = render(DEFAULT_README, &vars).expect("the default README renders");
        entries.push(Entry {
            path: README_PATH.into(),
            content: Content::Bytes(readme.into_bytes()),
        });
    }
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
    })
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

/// Every file under the SDK root, by package path.
fn sdk_entries(sdk: &SdkFiles) -> Result<Vec<(String, PathBuf)>, PackageError> {
    let mut out = Vec::new();
    for w in walk(&sdk.root)? {
        if !w.plain {
            let message = "a link or special file; the SDK folder must hold plain files".into();
            return Err(PackageError::Sdk {
                path: w.path,
                message,
            });
        }
        out.push((w.rel, w.path));
    }
    Ok(out)
}

/// An SDK file as a package entry, rendered if it is a template.
fn render_entry(
    path: String,
    file: PathBuf,
    vars: &[(&str, String)],
) -> Result<Entry, PackageError> {
    let sdk_error = |message: String| PackageError::Sdk {
        path: file.clone(),
        message,
    };
    let reserved =
        path == MANIFEST_FILE || path == MODEL_PATH || path.starts_with("lib/libonnxruntime");
    if reserved {
        return Err(sdk_error(format!(
            "'{path}' is a file the exporter writes itself"
        )));
    }
    let Some(target) = path.strip_suffix(".tmpl") else {
        return Ok(Entry {
            path,
            content: Content::File(file),
        });
    };
    let text = std::fs::read_to_string(&file).map_err(io_error(&file))?;
    let rendered = render(&text, vars).map_err(sdk_error)?;
    Ok(Entry {
        path: target.to_string(),
        content: Content::Bytes(rendered.into_bytes()),
    })
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
    zip.start_file(MANIFEST_FILE, options(MANIFEST_FILE, json.len() as u64))
        .map_err(zip_error)?;
    zip.write_all(&json).map_err(io_error(tmp.path()))?;
    for e in entries {
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
            zip.start_file(e.path.as_str(), options(&e.path, bytes.len() as u64))
                .map_err(EntryError::Zip)?;
            zip.write_all(bytes)
                .map_err(|err| EntryError::Io(e.path.clone().into(), err))
        }
        Content::File(path) => {
            let io = |err| EntryError::Io(path.clone(), err);
            let mut file = std::fs::File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            zip.start_file(e.path.as_str(), options(&e.path, len))
                .map_err(EntryError::Zip)?;
            std::io::copy(&mut file, zip).map(|_| ()).map_err(io)
        }
    }
}

/// Deflate at a fast level (float weights barely compress; the libraries
/// do), executables and libraries marked executable, Zip64 when needed.
fn options(path: &str, len: u64) -> SimpleFileOptions {
    let executable = path.starts_with("bin/") || path.contains(".so");
    SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(if executable { 0o755 } else { 0o644 })
        .large_file(len >= u32::MAX as u64)
}
