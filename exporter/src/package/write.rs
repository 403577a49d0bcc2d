//! Building a package: the model, its runtime, the README and (with an SDK
//! build) the SDK's files, written as one zip by `semiclass-package`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semiclass_licensing::Keyring;
use semiclass_licensing::sealing::encrypt_model;
use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_manifest::checkpoint_file::{read_meta, sha256_hex};
use semiclass_manifest::package::{
    CLEAR_PACKAGE_FORMAT_VERSION, LicenseRequirement, ModelEncryption, PACKAGE_FORMAT_VERSION,
    PackageManifest, PackagedModel, PackagedRuntime, Target, package_file_name,
};
use semiclass_manifest::quantization::Precision;
use semiclass_package::{Content, Entry, write_zip};
use semiclass_sdk_layout::{Facts, SdkBuild, model_only_readme, package_files};

use super::runtime::{Runtime, find_runtime, runtime_dir};
use super::{LIB_DIR, MODEL_PATH, PackageError, README_PATH};
use crate::emit::OPSET;
use crate::export::{INPUT_NAME, OUTPUT_NAME};
use crate::fold::FoldReport;
use crate::int8::{Int8Request, export_int8};
use crate::{OnnxModel, export_checkpoint};

/// What to build.
#[derive(Debug, Clone)]
pub struct PackageRequest<'a> {
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
    /// With an SDK, the vendor keys the model's content key is sealed to:
    /// the model file is encrypted, and only a license signed by one of
    /// these keys opens it. Usually the keyring compiled into the SDK build
    /// (`Keyring::builtin`). Not used without an SDK.
    pub vendor_keys: Option<&'a Keyring>,
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

/// Exports `checkpoint` and writes its package for `req.target` into
/// `req.out_dir`; returns where. An existing zip is only replaced when
/// `req.replace` says so, and a failure leaves no partial package.
pub fn build_package(checkpoint: &Path, req: &PackageRequest) -> Result<Built, PackageError> {
    refuse_early(checkpoint, req)?;
    write_package(&export_checkpoint(checkpoint)?, req)
}

/// [`build_package`] with the int8 model of `checkpoint` (calibrated and
/// evaluated by [`crate::int8::export_int8`] on the runtime the package
/// ships); CPU packages only.
pub fn build_int8_package(
    checkpoint: &Path,
    req: &PackageRequest,
    int8: &Int8Request,
) -> Result<Built, PackageError> {
    if req.target != Target::CpuX86_64 {
        return Err(PackageError::Int8Target { target: req.target });
    }
    let runtime = refuse_early(checkpoint, req)?;
    write_package(&export_int8(checkpoint, &runtime.library, int8)?, req)
}

/// What can be refused is refused before the export's minutes; returns
/// the runtime the package will ship.
fn refuse_early(checkpoint: &Path, req: &PackageRequest) -> Result<Runtime, PackageError> {
    let meta = read_meta(checkpoint).map_err(crate::ExportError::from)?;
    destination(&meta.model, req)?;
    let runtime = find_runtime(req.target, &runtime_dir(req.target, req.runtime_dir)?)?;
    if req.sdk.is_some() {
        sealing_keys(req)?;
    }
    Ok(runtime)
}

/// Writes the package of the exported model `onnx` for `req.target` into
/// `req.out_dir`: the one layout every package has, whoever exported it.
pub fn write_package(onnx: &OnnxModel, req: &PackageRequest) -> Result<Built, PackageError> {
    let runtime = find_runtime(req.target, &runtime_dir(req.target, req.runtime_dir)?)?;
    let dest = destination(&onnx.meta.model, req)?;
    let mut manifest = manifest(req, onnx, &runtime);
    let (encryption, model_file) = model_file(onnx, req)?;
    if encryption.is_some() {
        manifest.format_version = PACKAGE_FORMAT_VERSION;
    }
    manifest.model.encryption = encryption;
    let mut entries = vec![Entry {
        path: MODEL_PATH.into(),
        content: Content::Bytes(model_file),
        executable: false,
    }];
    entries.extend(runtime_entries(&runtime));
    entries.extend(documents_and_sdk(
        req.sdk,
        &Facts::from_manifest(&manifest),
    )?);
    let manifest = write_zip(&dest, manifest, &entries, req.replace)?;
    Ok(Built {
        path: dest,
        manifest,
        fold: onnx.fold.clone(),
    })
}

/// The model file's bytes: an SDK package's model encrypted to the vendor
/// keys, else the ONNX model as it is.
fn model_file(
    onnx: &OnnxModel,
    req: &PackageRequest,
) -> Result<(Option<ModelEncryption>, Vec<u8>), PackageError> {
    if req.sdk.is_none() {
        return Ok((None, onnx.bytes.clone()));
    }
    let (encryption, bytes) = encrypt_model(&onnx.bytes, sealing_keys(req)?)
        .map_err(|e| PackageError::Encrypt(e.to_string()))?;
    Ok((Some(encryption), bytes))
}

/// The vendor keys an SDK package's model is sealed to.
fn sealing_keys<'a>(req: &PackageRequest<'a>) -> Result<&'a Keyring, PackageError> {
    req.vendor_keys
        .filter(|keys| !keys.is_empty())
        .ok_or(PackageError::NoVendorKey)
}

/// Where the package of `arch` goes; refused when it exists and may not
/// be replaced.
fn destination(arch: &str, req: &PackageRequest) -> Result<PathBuf, PackageError> {
    let dest = req.out_dir.join(package_file_name(arch, req.target));
    if dest.exists() && !req.replace {
        return Err(semiclass_package::PackageError::Exists { path: dest }.into());
    }
    Ok(dest)
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
        format_version: CLEAR_PACKAGE_FORMAT_VERSION,
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
            encryption: None,
            precision: match onnx.quantization {
                Some(_) => Precision::Int8,
                None => Precision::Fp32,
            },
            quantization: onnx.quantization.clone(),
        },
        runtime: PackagedRuntime {
            version: runtime.version.clone(),
            library: lib_path(&runtime.library),
            cuda: runtime.cuda.clone(),
        },
        license: LicenseRequirement {
            required: req.sdk.is_some(),
        },
        created: rfc3339_utc(now),
        files: BTreeMap::new(),
    }
}
