//! The one question the SDK asks before loading a model: given this package
//! folder, the license installed for it and this machine, may the model
//! run? [`verify_package`] answers it in the order of DESIGN.md section 8:
//! the files against the manifest, then the license's signature, package,
//! model hash, machine, dates and clock.

use std::path::{Component as PathComponent, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use std::{fs, io};

use semiclass_manifest::package::{MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest};

use crate::activation::ActivationDir;
use crate::digest::{read_hashed, sha256_file, sha256_hex};
use crate::error::LicenseError;
use crate::fingerprint::{Fingerprint, FingerprintSource, SystemProbe};
use crate::keyring::{Keyring, KeyringError};
use crate::license::{LicensePayload, SignedLicense};

/// How far the clock may go back (or lag behind the issuer's) before it
/// counts as set back: a day absorbs clock corrections and skew between
/// machines, while stretching a license by a day is worth nothing.
pub const DEFAULT_CLOCK_TOLERANCE_S: u64 = 24 * 3600;

/// What a license is checked against; [`Environment::system`] is the real
/// machine, tests build their own.
pub struct Environment {
    pub keyring: Keyring,
    pub machine: Box<dyn FingerprintSource + Send + Sync>,
    /// Unix seconds.
    pub now: u64,
    pub clock_tolerance_s: u64,
}

impl Environment {
    /// The built-in keys, this machine's fingerprint and the system clock.
    pub fn system() -> Result<Environment, KeyringError> {
        Ok(Environment {
            keyring: Keyring::builtin()?,
            machine: Box::new(SystemProbe::default()),
            now: unix_now(),
            clock_tolerance_s: DEFAULT_CLOCK_TOLERANCE_S,
        })
    }
}

/// The system clock in unix seconds (0 before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A package that may run.
#[derive(Debug)]
pub struct VerifiedPackage {
    pub manifest: PackageManifest,
    pub license: LicensePayload,
    /// The ONNX model file.
    pub model_path: PathBuf,
    /// The model's bytes exactly as hashed: load these, not the file again,
    /// so the model cannot be swapped after the check.
    pub model: Vec<u8>,
}

/// Why a package may not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a valid package manifest: {reason}: reinstall the package", path = path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: package file was changed or damaged (sha256 {actual}, the manifest says {expected}): reinstall the package", path = path.display())]
    FileChanged {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    License(#[from] LicenseError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CheckError + '_ {
    move |source| CheckError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the package in `package_dir` may run on this machine under the
/// license installed in `activation`. On success the clock state moves
/// forward to `env.now`. A license is always required: the manifest is not
/// signed, so its `license.required` cannot be trusted to waive the check.
pub fn verify_package(
    package_dir: &Path,
    activation: &ActivationDir,
    env: &Environment,
) -> Result<VerifiedPackage, CheckError> {
    let manifest = read_manifest(package_dir)?;
    let (model_path, model) = check_files(package_dir, &manifest)?;
    let license = SignedLicense::from_armored(&activation.read_license()?)?.verify(&env.keyring)?;
    if license.package_id != manifest.package_id {
        let (licensed, package) = (license.package_id, manifest.package_id);
        return Err(LicenseError::WrongPackage { licensed, package }.into());
    }
    let sha256 = sha256_hex(&model);
    if !license.model_sha256s.contains(&sha256) {
        return Err(LicenseError::ModelNotLicensed {
            path: model_path,
            sha256,
        }
        .into());
    }
    check_machine(
        &license,
        &env.machine
            .fingerprint(manifest.target)
            .map_err(LicenseError::from)?,
    )?;
    check_time(&license, env, activation.latest_seen()?)?;
    activation.record_time(env.now)?;
    Ok(VerifiedPackage {
        manifest,
        license,
        model_path,
        model,
    })
}

/// Reads and checks the shape of a package's manifest, without hashing any
/// file or looking at a license: what `infer info` and activation need to
/// know about a package (its id, target, model facts) before it may run.
pub fn read_manifest(package_dir: &Path) -> Result<PackageManifest, CheckError> {
    let path = package_dir.join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).map_err(io_error(&path))?;
    let bad = |reason: String| CheckError::Manifest {
        path: path.clone(),
        reason,
    };
    let manifest: PackageManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if manifest.format_version > PACKAGE_FORMAT_VERSION {
        return Err(bad(format!(
            "format_version {} is newer than this SDK reads; update the SDK",
            manifest.format_version
        )));
    }
    if let Some(file) = manifest.files.keys().find(|f| !is_inside(f)) {
        return Err(bad(format!("file {file:?} is outside the package")));
    }
    if !manifest.files.contains_key(&manifest.model.onnx) {
        return Err(bad(format!(
            "the model {} is not among the listed files",
            manifest.model.onnx
        )));
    }
    Ok(manifest)
}

/// A plain relative path that stays inside the package.
fn is_inside(relative: &str) -> bool {
    let path = Path::new(relative);
    !relative.is_empty()
        && path
            .components()
            .all(|c| matches!(c, PathComponent::Normal(_)))
}

/// Hashes every listed file; returns the model's path and bytes.
fn check_files(
    package_dir: &Path,
    manifest: &PackageManifest,
) -> Result<(PathBuf, Vec<u8>), CheckError> {
    let mut model = Vec::new();
    for (relative, expected) in &manifest.files {
        let path = package_dir.join(relative);
        let actual = if *relative == manifest.model.onnx {
            let (bytes, sha) = read_hashed(&path).map_err(io_error(&path))?;
            model = bytes;
            sha
        } else {
            sha256_file(&path).map_err(io_error(&path))?
        };
        if actual != *expected {
            return Err(CheckError::FileChanged {
                path,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok((package_dir.join(&manifest.model.onnx), model))
}

/// Whether `machine` is the one the license was activated on.
pub(crate) fn check_machine(
    license: &LicensePayload,
    machine: &Fingerprint,
) -> Result<(), LicenseError> {
    let binding = &license.machine;
    if binding.accepts(machine) {
        return Ok(());
    }
    let (matched, needed, total) = (
        binding.matches(machine),
        binding.min_matches,
        binding.components.len(),
    );
    Err(LicenseError::OtherMachine {
        matched,
        needed,
        total,
    })
}

/// The license's dates against the clock and the latest time seen here.
pub(crate) fn check_time(
    license: &LicensePayload,
    env: &Environment,
    latest_seen: Option<u64>,
) -> Result<(), LicenseError> {
    let now = env.now;
    if let Some(expires) = license.expires.filter(|&expires| now >= expires) {
        return Err(LicenseError::Expired { expires });
    }
    if now.saturating_add(env.clock_tolerance_s) < license.issued {
        return Err(LicenseError::IssuedInFuture {
            issued: license.issued,
            now,
        });
    }
    match latest_seen {
        Some(latest) if now.saturating_add(env.clock_tolerance_s) < latest => {
            Err(LicenseError::ClockRollback { now, latest })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths_stay_inside() {
        assert!(is_inside("model/model.onnx"));
        for outside in ["", "/etc/passwd", "../x", "model/../../x", "./x"] {
            assert!(!is_inside(outside), "{outside}");
        }
    }
}
