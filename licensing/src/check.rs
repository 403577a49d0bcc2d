//! The one question the SDK asks before loading a model: given this package
//! folder, the license installed for it and this machine, may the model
//! run? [`verify_package`] answers it in the order of DESIGN.md section 8:
//! the files against the manifest (the one package reader,
//! `semiclass-package`), then the license's signature, package, model
//! hash, machine, dates and clock; last, an encrypted model is decrypted
//! with the key the license sealed to this machine.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use semiclass_manifest::package::{MANIFEST_FILE, PackageManifest};
use semiclass_package::{Package, PackageError};

use crate::activation::ActivationDir;
use crate::digest::sha256_hex;
use crate::error::LicenseError;
use crate::fingerprint::{Fingerprint, FingerprintSource, SystemProbe};
use crate::keyring::{Keyring, KeyringError};
use crate::license::{LicensePayload, SignedLicense};
use crate::sealing::{ContentKey, SealError, decrypt_model, machine_key_context, open_content_key};

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
    /// The ONNX model file, for messages.
    pub model_path: PathBuf,
    /// The ONNX model: the bytes exactly as hashed, decrypted when the
    /// package's model is encrypted. Load these, not the file again, so the
    /// model cannot be swapped after the check and never lies decrypted on
    /// disk.
    pub model: Vec<u8>,
    /// The ONNX Runtime library the package ships (hashed with the rest).
    pub runtime_library: Option<PathBuf>,
}

/// Why a package may not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    License(#[from] LicenseError),
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
    let package = Package::open(package_dir)?;
    let manifest = package.manifest.clone();
    let license = SignedLicense::from_armored(&activation.read_license()?)?.verify(&env.keyring)?;
    if license.package_id != manifest.package_id {
        let (licensed, package) = (license.package_id, manifest.package_id);
        return Err(LicenseError::WrongPackage { licensed, package }.into());
    }
    let model_path = package.model_path().to_path_buf();
    let sha256 = sha256_hex(package.stored_model());
    if !license.model_sha256s.contains(&sha256) {
        return Err(LicenseError::ModelNotLicensed {
            path: model_path,
            sha256,
        }
        .into());
    }
    if !license.manifest_sha256s.contains(&package.manifest_sha256) {
        return Err(LicenseError::ManifestNotLicensed {
            path: package.path.join(MANIFEST_FILE),
            sha256: package.manifest_sha256.clone(),
        }
        .into());
    }
    let machine = env
        .machine
        .fingerprint(manifest.target)
        .map_err(LicenseError::from)?;
    check_machine(&license, &machine)?;
    check_time(&license, env, activation.latest_seen()?)?;
    activation.record_time(env.now)?;
    let runtime_library = package.runtime_library();
    let stored = package.into_stored_model();
    let model = match &manifest.model.encryption {
        None => stored,
        Some(encryption) => {
            let key = model_key(
                &license,
                &sha256,
                activation,
                &manifest.package_id,
                &machine,
            )?;
            decrypt_model(&stored, encryption, &key).map_err(model_key_error)?
        }
    };
    Ok(VerifiedPackage {
        manifest,
        license,
        model_path,
        model,
        runtime_library,
    })
}

/// The content key of the model file `model_sha256`, opened with this
/// machine's key.
fn model_key(
    license: &LicensePayload,
    model_sha256: &str,
    activation: &ActivationDir,
    package_id: &str,
    machine: &Fingerprint,
) -> Result<ContentKey, LicenseError> {
    let licensed = license
        .model_keys
        .iter()
        .find(|k| k.model_sha256 == model_sha256)
        .ok_or(LicenseError::NoModelKey)?;
    let secret = activation.machine_secret(package_id, machine)?;
    open_content_key(
        &secret,
        &licensed.sealed,
        &machine_key_context(model_sha256),
    )
    .map_err(model_key_error)
}

fn model_key_error(err: SealError) -> LicenseError {
    LicenseError::ModelKey {
        reason: err.to_string(),
    }
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
