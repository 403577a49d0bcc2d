//! Activation: a checked request in, a signed license out. The offline
//! flow (`semiclass-license sign-request`) and the server's `/v1/activate`
//! both call [`Issuer::activate`].

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use semiclass_licensing::{
    ActivationRequest, LicensePayload, MachineBinding, PAYLOAD_FORMAT, SignedLicense, key_id,
    signing_message,
};

use crate::db::IssuerDb;
use crate::error::IssuerError;

/// The vendor's signing key and database.
pub struct Issuer {
    db_path: PathBuf,
    key: SigningKey,
}

impl Issuer {
    /// An issuer signing with `key` against the database at `db_path`
    /// (created if missing).
    pub fn new(db_path: &Path, key: SigningKey) -> Result<Issuer, IssuerError> {
        IssuerDb::open(db_path)?;
        Ok(Issuer {
            db_path: db_path.to_path_buf(),
            key,
        })
    }

    /// Answers an activation request with the text of a license file, or
    /// refuses it (unknown or revoked serial, another package, expired,
    /// activation limit). The same machine activating again gets a fresh
    /// license, bound to the machine as it was first activated, without
    /// taking another slot. Safe to call from many threads
    /// and processes at once: each call has its own connection and
    /// transaction.
    pub fn activate(&self, request: &ActivationRequest, now: u64) -> Result<String, IssuerError> {
        let grant = IssuerDb::open(&self.db_path)?.claim_activation(request, now)?;
        let payload = LicensePayload {
            format: PAYLOAD_FORMAT,
            serial: request.serial,
            package_id: request.package_id.clone(),
            model_sha256s: grant.model_sha256s,
            manifest_sha256s: grant.manifest_sha256s,
            machine: MachineBinding::most(&grant.machine),
            nonce: request.nonce.clone(),
            issued: now,
            expires: grant.expires,
        };
        Ok(self.sign(&payload).to_armored())
    }

    fn sign(&self, payload: &LicensePayload) -> SignedLicense {
        let bytes = serde_json::to_vec(payload).expect("a payload serializes");
        let signature = self.key.sign(&signing_message(&bytes)).to_bytes();
        SignedLicense {
            key_id: key_id(&self.key.verifying_key()),
            payload: bytes,
            signature,
        }
    }
}
