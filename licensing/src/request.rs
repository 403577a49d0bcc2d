//! Activation requests: what a machine sends to the vendor (as a file for
//! offline activation, as the body of `/v1/activate` online). No secrets:
//! the serial, the package, the hashed fingerprint, the public half of the
//! machine's key for the package's encrypted model, a fresh nonce and the
//! time. The license that answers it repeats the nonce.

use serde::{Deserialize, Serialize};
use x25519_dalek::PublicKey;

use crate::digest::{hex, random_bytes};
use crate::fingerprint::{Component, Fingerprint, FingerprintError};
use crate::serial::Serial;

/// The request format written by this code (2: the machine's public key).
pub const REQUEST_FORMAT: u32 = 2;
/// The oldest format still read: an SDK without encrypted models.
const OLDEST_REQUEST_FORMAT: u32 = 1;

/// One activation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationRequest {
    pub format: u32,
    pub serial: Serial,
    pub package_id: String,
    pub fingerprint: Vec<Component>,
    /// The X25519 public key (hex) the license seals the model's key to;
    /// absent in a format-1 request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_key: Option<String>,
    /// 16 random bytes, hex: ties the license to this request.
    pub nonce: String,
    /// Unix seconds on the requesting machine (informative only).
    pub time: u64,
}

/// Why a request file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("activation request is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "activation request format {found} is not {OLDEST_REQUEST_FORMAT} to {REQUEST_FORMAT}: use a matching version of the SDK and the issuer"
    )]
    Format { found: u32 },
    #[error("activation request machine key is not 64 lowercase hex digits of a usable X25519 key")]
    MachineKey,
    #[error("activation request fingerprint: {0}")]
    Fingerprint(#[from] FingerprintError),
    #[error("activation request nonce is not 32 lowercase hex digits")]
    Nonce,
    #[error("activation request has an empty package id")]
    Package,
}

impl ActivationRequest {
    /// A new request with a fresh nonce.
    pub fn new(
        serial: Serial,
        package_id: &str,
        fingerprint: &Fingerprint,
        machine_key: &PublicKey,
        now: u64,
    ) -> ActivationRequest {
        ActivationRequest {
            format: REQUEST_FORMAT,
            serial,
            package_id: package_id.to_string(),
            fingerprint: fingerprint.components().to_vec(),
            machine_key: Some(hex(machine_key.as_bytes())),
            nonce: hex(&random_bytes::<16>()),
            time: now,
        }
    }

    /// The request file's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a request serializes") + "\n"
    }

    /// Reads and checks a request file's text.
    pub fn from_json(text: &str) -> Result<ActivationRequest, RequestError> {
        let request: ActivationRequest = serde_json::from_str(text)?;
        request.check()?;
        Ok(request)
    }

    /// The requesting machine's fingerprint.
    pub fn machine(&self) -> Result<Fingerprint, FingerprintError> {
        Fingerprint::from_components(self.fingerprint.clone())
    }

    /// The machine's public key, when the request carries one.
    pub fn machine_public_key(&self) -> Result<Option<PublicKey>, RequestError> {
        let Some(text) = &self.machine_key else {
            return Ok(None);
        };
        let bytes: [u8; 32] =
            crate::sealing::unhex(text, "machine key").map_err(|_| RequestError::MachineKey)?;
        Ok(Some(PublicKey::from(bytes)))
    }

    fn check(&self) -> Result<(), RequestError> {
        if !(OLDEST_REQUEST_FORMAT..=REQUEST_FORMAT).contains(&self.format) {
            return Err(RequestError::Format { found: self.format });
        }
        // Format 2 always names the key; format 1 never does.
        if (self.format == REQUEST_FORMAT) != self.machine_key.is_some() {
            return Err(RequestError::MachineKey);
        }
        self.machine_public_key()?;
        if self.package_id.trim().is_empty() {
            return Err(RequestError::Package);
        }
        let nonce_ok = self.nonce.len() == 32
            && self
                .nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !nonce_ok {
            return Err(RequestError::Nonce);
        }
        self.machine()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::ComponentKind;

    fn request() -> ActivationRequest {
        let machine =
            Fingerprint::from_raw([(ComponentKind::MachineId, "m1"), (ComponentKind::Mac, "aa")])
                .unwrap();
        let (_, public) = crate::sealing::box_keypair();
        ActivationRequest::new(
            Serial::from_entropy(&[3; 12]),
            "pkg-1",
            &machine,
            &public,
            1_700_000_000,
        )
    }

    #[test]
    fn round_trips_without_raw_identifiers() {
        let request = request();
        let text = request.to_json();
        assert!(!text.contains("\"m1\""), "{text}");
        assert_eq!(ActivationRequest::from_json(&text).unwrap(), request);
        assert_ne!(request.nonce, super::tests::request().nonce);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut bad_nonce = request();
        bad_nonce.nonce = "xyz".into();
        assert!(matches!(
            ActivationRequest::from_json(&bad_nonce.to_json()),
            Err(RequestError::Nonce)
        ));
        let mut empty = request();
        empty.fingerprint.clear();
        let err = ActivationRequest::from_json(&empty.to_json()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Fingerprint(FingerprintError::NoComponents)
            ),
            "{err}"
        );
        let mut no_key = request();
        no_key.machine_key = None;
        assert!(matches!(
            ActivationRequest::from_json(&no_key.to_json()),
            Err(RequestError::MachineKey)
        ));
        let mut bad_key = request();
        bad_key.machine_key = Some("zz".repeat(32));
        assert!(matches!(
            ActivationRequest::from_json(&bad_key.to_json()),
            Err(RequestError::MachineKey)
        ));
        let mut old = no_key;
        old.format = 1;
        assert_eq!(ActivationRequest::from_json(&old.to_json()).unwrap(), old);
        let extra = request().to_json().replacen('{', "{\"secret\": 1,", 1);
        assert!(matches!(
            ActivationRequest::from_json(&extra),
            Err(RequestError::Json(_))
        ));
    }
}
