//! The folder where one package's activation lives: the pending request,
//! the installed license and the clock state. The SDK chooses the folder
//! (it must be writable); this module owns what goes in it.
//!
//! The clock state remembers the latest time a license was used, so a
//! clock set back (to stretch an expiring license) is noticed. It is not
//! signed: deleting it forgets that time, but a clock set before the
//! license's issue time is still refused.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::check::{Environment, check_machine, check_time};
use crate::error::LicenseError;
use crate::fingerprint::Fingerprint;
use crate::license::{LicensePayload, SignedLicense};
use crate::machine_key;
use crate::request::ActivationRequest;
use crate::sealing::box_keypair;
use crate::serial::Serial;

/// The installed license.
pub const LICENSE_FILE: &str = "license.lic";
/// The request of an activation in progress.
pub const REQUEST_FILE: &str = "activation-request.json";
/// The latest time seen, for clock rollback detection.
pub const STATE_FILE: &str = "activation-state.json";
/// This machine's key for the package's encrypted model, sealed to the machine.
pub const MACHINE_KEY_FILE: &str = "activation-key.json";

/// One package's activation folder.
#[derive(Debug, Clone)]
pub struct ActivationDir {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockState {
    latest_seen: u64,
}

impl ActivationDir {
    /// The activation kept in `dir` (created when something is written).
    pub fn new(dir: impl Into<PathBuf>) -> ActivationDir {
        ActivationDir { dir: dir.into() }
    }

    /// Path of the installed license file.
    pub fn license_path(&self) -> PathBuf {
        self.dir.join(LICENSE_FILE)
    }

    /// Path of the pending activation request.
    pub fn request_path(&self) -> PathBuf {
        self.dir.join(REQUEST_FILE)
    }

    /// Path of the clock state.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Path of this machine's sealed key.
    pub fn machine_key_path(&self) -> PathBuf {
        self.dir.join(MACHINE_KEY_FILE)
    }

    /// Starts an activation: makes this machine's key for the package
    /// (kept here, sealed to the machine), writes a new request carrying
    /// its public half (replacing a pending one) and returns the request,
    /// to be sent online or carried to the vendor as a file. An installed
    /// license keeps working until the new one replaces it: its key is
    /// replaced only then.
    pub fn begin(
        &self,
        serial: Serial,
        package_id: &str,
        machine: &Fingerprint,
        now: u64,
    ) -> Result<ActivationRequest, LicenseError> {
        let (secret, public) = box_keypair();
        machine_key::store(&self.pending_key_path(), package_id, machine, &secret)?;
        let request = ActivationRequest::new(serial, package_id, machine, &public, now);
        write_atomic(&self.request_path(), request.to_json().as_bytes())?;
        Ok(request)
    }

    /// The key of the pending request, until its license is installed.
    fn pending_key_path(&self) -> PathBuf {
        self.dir.join(format!("pending-{MACHINE_KEY_FILE}"))
    }

    /// This machine's key for `package_id`, opened with the machine's
    /// identifiers.
    pub(crate) fn machine_secret(
        &self,
        package_id: &str,
        machine: &Fingerprint,
    ) -> Result<x25519_dalek::StaticSecret, LicenseError> {
        machine_key::load(&self.machine_key_path(), package_id, machine)
    }

    /// Installs the license that answers the pending request, after checking
    /// its signature, that it answers that very request (serial, package,
    /// nonce, machine) and its dates.
    pub fn install(
        &self,
        license_text: &str,
        env: &Environment,
    ) -> Result<LicensePayload, LicenseError> {
        let pending = self.pending_request()?;
        let payload = SignedLicense::from_armored(license_text)?.verify(&env.keyring)?;
        if payload.package_id != pending.package_id {
            return Err(LicenseError::WrongPackage {
                licensed: payload.package_id,
                package: pending.package_id,
            });
        }
        if payload.serial != pending.serial || payload.nonce != pending.nonce {
            return Err(LicenseError::WrongRequest);
        }
        check_machine(&payload, &pending.machine()?)?;
        check_time(&payload, env, self.latest_seen()?)?;
        // The license seals the model's key to the pending request's key:
        // the two are installed together.
        let pending_key = self.pending_key_path();
        if pending_key.exists() {
            fs::rename(&pending_key, self.machine_key_path())
                .map_err(|e| LicenseError::io(&pending_key, e))?;
        }
        write_atomic(&self.license_path(), license_text.as_bytes())?;
        self.record_time(env.now)?;
        remove_if_present(&self.request_path())?;
        Ok(payload)
    }

    fn pending_request(&self) -> Result<ActivationRequest, LicenseError> {
        let path = self.request_path();
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => LicenseError::NoPendingRequest { path: path.clone() },
            _ => LicenseError::io(&path, e),
        })?;
        ActivationRequest::from_json(&text)
            .map_err(|source| LicenseError::PendingRequest { path, source })
    }

    /// The installed license's text.
    pub fn read_license(&self) -> Result<String, LicenseError> {
        let path = self.license_path();
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => LicenseError::NotActivated { path: path.clone() },
            _ => LicenseError::io(&path, e),
        })?;
        String::from_utf8(bytes).map_err(|_| LicenseError::Malformed {
            reason: "not text".into(),
        })
    }

    /// The latest time a license was used here; `None` before the first use.
    pub(crate) fn latest_seen(&self) -> Result<Option<u64>, LicenseError> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            other => other.map_err(|e| LicenseError::io(&path, e))?,
        };
        let state: ClockState =
            serde_json::from_str(&text).map_err(|e| LicenseError::io(&path, e.into()))?;
        Ok(Some(state.latest_seen))
    }

    /// Remembers `now` unless a later time was already seen.
    pub(crate) fn record_time(&self, now: u64) -> Result<(), LicenseError> {
        let latest_seen = self.latest_seen()?.map_or(now, |latest| latest.max(now));
        let json = serde_json::to_string(&ClockState { latest_seen }).expect("state serializes");
        write_atomic(&self.state_path(), json.as_bytes())
    }
}

/// Writes through a temporary file and a rename, so a crash or a second
/// process never leaves half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LicenseError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| LicenseError::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&temp, bytes).map_err(|e| LicenseError::io(&temp, e))?;
    fs::rename(&temp, path).map_err(|e| LicenseError::io(path, e))
}

fn remove_if_present(path: &Path) -> Result<(), LicenseError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(LicenseError::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_state_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let activation = ActivationDir::new(dir.path().join("activation"));
        assert_eq!(activation.latest_seen().unwrap(), None);
        activation.record_time(200).unwrap();
        activation.record_time(100).unwrap();
        assert_eq!(activation.latest_seen().unwrap(), Some(200));
        fs::write(activation.state_path(), "garbage").unwrap();
        let err = activation.latest_seen().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&activation.state_path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_missing_license_says_how_to_activate() {
        let dir = tempfile::tempdir().unwrap();
        let err = ActivationDir::new(dir.path()).read_license().unwrap_err();
        assert!(matches!(err, LicenseError::NotActivated { .. }));
        assert!(err.to_string().contains("infer activate --serial"), "{err}");
    }
}
