//! Why a license does not let a model run. Each variant is one kind of
//! refusal, so callers (and the attack tests) can tell them apart, and each
//! message says what the user can do about it.

use std::io;
use std::path::PathBuf;

use semiclass_manifest::checkpoint::rfc3339_utc;

use crate::fingerprint::FingerprintError;
use crate::request::RequestError;

/// A refused license.
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error("{path}: no license is installed: activate this package with its serial (`infer activate --serial XXXX-XXXX-XXXX-XXXX-XXXX`)", path = path.display())]
    NotActivated { path: PathBuf },
    #[error("{path}: no activation was started here: run `infer activate --serial ...` first, then install the license that answers its request", path = path.display())]
    NoPendingRequest { path: PathBuf },
    #[error("{path}: {source}: start the activation again", path = path.display())]
    PendingRequest { path: PathBuf, source: RequestError },
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "license file is damaged or not a semiclass license ({reason}): install the license file exactly as the vendor sent it"
    )]
    Malformed { reason: String },
    #[error(
        "this SDK build trusts no license key: the vendor must add its public key (`semiclass-license keygen --keyring licensing/keys/keyring.json`) and rebuild"
    )]
    NoTrustedKeys,
    #[error(
        "license is signed with key {key_id}, which this SDK does not trust: ask the vendor for a license signed with a current key"
    )]
    UnknownKey { key_id: String },
    #[error(
        "license signature does not match its contents: the file was edited or damaged; install the license file exactly as the vendor sent it"
    )]
    BadSignature,
    #[error(
        "license contents cannot be read ({0}): this SDK may be older than the license; update the SDK"
    )]
    Payload(String),
    #[error(
        "license is for package {licensed}, not for this package ({package}): activate this package with its own serial"
    )]
    WrongPackage { licensed: String, package: String },
    #[error(
        "license was activated for another serial or request: activate again, then install the license that answers the new request"
    )]
    WrongRequest,
    #[error("{path}: this model file (sha256 {sha256}) is not one the license allows: reinstall the package as it was shipped", path = path.display())]
    ModelNotLicensed { path: PathBuf, sha256: String },
    #[error("{path}: this manifest (sha256 {sha256}) is not one the license allows (it was edited): reinstall the package as it was shipped", path = path.display())]
    ManifestNotLicensed { path: PathBuf, sha256: String },
    #[error(
        "license was activated on another machine ({matched} of its {total} machine identifiers match, {needed} needed): activate this machine with your serial"
    )]
    OtherMachine {
        matched: usize,
        needed: usize,
        total: usize,
    },
    #[error("{path}: this activation's machine key cannot be opened: {reason}; activate this package again (`infer activate --serial ...`)", path = path.display())]
    MachineKey { path: PathBuf, reason: String },
    #[error(
        "the license carries no key for this package's encrypted model (it answers an activation made by an older SDK): activate this package again"
    )]
    NoModelKey,
    #[error(
        "the model cannot be decrypted ({reason}): reinstall the package as it was shipped and activate again"
    )]
    ModelKey { reason: String },
    #[error("cannot identify this machine: {0}")]
    Fingerprint(#[from] FingerprintError),
    #[error("license expired at {}: renew it with the vendor", rfc3339_utc(*.expires))]
    Expired { expires: u64 },
    #[error("license was issued at {}, after this machine's time {}: set the system clock right", rfc3339_utc(*.issued), rfc3339_utc(*.now))]
    IssuedInFuture { issued: u64, now: u64 },
    #[error("the system clock ({}) is behind the latest time this license was used ({}): set the system clock right", rfc3339_utc(*.now), rfc3339_utc(*.latest))]
    ClockRollback { now: u64, latest: u64 },
}

impl LicenseError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> LicenseError {
        LicenseError::Io {
            path: path.into(),
            source,
        }
    }
}
