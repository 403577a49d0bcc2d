//! Activation: a checked request in, a signed license out. The offline
//! flow (`semiclass-license sign-request`) and the server's `/v1/activate`
//! both call [`Issuer::activate`].

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use semiclass_licensing::sealing::{
    VENDOR_KEY_CONTEXT, machine_key_context, open_content_key, seal, vendor_box_secret,
};
use semiclass_licensing::{
    ActivationRequest, LicensePayload, LicensedModelKey, MachineBinding, PAYLOAD_FORMAT,
    RequestError, SignedLicense, key_id, signing_message,
};

use crate::db::{IssuerDb, VendorSealedModelKeys};
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
        let grant = IssuerDb::open(&self.db_path)?
            .claim_activation(request, now, |sealed| self.model_keys(request, sealed))?;
        let payload = LicensePayload {
            format: PAYLOAD_FORMAT,
            serial: request.serial,
            package_id: request.package_id.clone(),
            model_sha256s: grant.model_sha256s,
            manifest_sha256s: grant.manifest_sha256s,
            machine: MachineBinding::most(&grant.machine),
            model_keys: grant.model_keys,
            nonce: request.nonce.clone(),
            issued: now,
            expires: grant.expires,
        };
        Ok(self.sign(&payload).to_armored())
    }

    /// Each encrypted model's content key, opened with this issuer's key
    /// and sealed again to the requesting machine's key (inside the
    /// claim's transaction: a refusal here takes no activation slot).
    fn model_keys(
        &self,
        request: &ActivationRequest,
        sealed: VendorSealedModelKeys,
    ) -> Result<Vec<LicensedModelKey>, IssuerError> {
        if sealed.is_empty() {
            return Ok(Vec::new());
        }
        let package = || request.package_id.clone();
        let machine = request
            .machine_public_key()?
            .ok_or_else(|| IssuerError::NoMachineKey { package: package() })?;
        let own_id = key_id(&self.key.verifying_key());
        let secret = vendor_box_secret(&self.key);
        sealed
            .into_iter()
            .map(|(model_sha256, vendor_keys)| {
                let failed = |reason: String| IssuerError::ModelKey {
                    package: package(),
                    reason,
                };
                let ours = vendor_keys.iter().find(|k| k.key_id == own_id).ok_or_else(|| {
                    let ids: Vec<_> = vendor_keys.iter().map(|k| k.key_id.as_str()).collect();
                    failed(format!(
                        "its model's key is sealed to vendor key(s) {}, not to this issuer's key {own_id}: export the package with a keyring that holds this key, or sign with one of those",
                        ids.join(", ")
                    ))
                })?;
                let content_key = open_content_key(&secret, &ours.sealed, VENDOR_KEY_CONTEXT)
                    .map_err(|e| failed(format!("its model's key does not open: {e}")))?;
                let sealed = seal(&machine, &content_key, &machine_key_context(&model_sha256))
                    .map_err(|_| IssuerError::Request(RequestError::MachineKey))?;
                Ok(LicensedModelKey { model_sha256, sealed })
            })
            .collect()
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
