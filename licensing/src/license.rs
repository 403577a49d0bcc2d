//! License files: armored text around base64 of a JSON envelope
//! `{key_id, payload, signature}`. The signature is Ed25519 (strict
//! verification) over a domain-separation prefix and the raw payload bytes,
//! and it is checked before the payload is parsed, so a parser never sees
//! bytes the vendor did not sign.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signature;
use semiclass_manifest::package::SealedBox;
use serde::{Deserialize, Serialize};

use crate::error::LicenseError;
use crate::fingerprint::MachineBinding;
use crate::keyring::Keyring;
use crate::serial::Serial;

/// The first line of a license file.
pub const ARMOR_BEGIN: &str = "-----BEGIN SEMICLASS LICENSE-----";
/// The last line of a license file.
pub const ARMOR_END: &str = "-----END SEMICLASS LICENSE-----";
/// Prefixed to the payload before signing, so that a signature made for
/// anything else with the same key can never pass as a license.
pub const SIGNING_DOMAIN: &[u8] = b"semiclass license v1\0";
/// The payload format written by this code (2: the manifest is signed;
/// 3: the model's content key).
pub const PAYLOAD_FORMAT: u32 = 3;
/// The oldest payload format still read (licenses of packages in clear).
const OLDEST_PAYLOAD_FORMAT: u32 = 2;
const ARMOR_WIDTH: usize = 64;

/// What the vendor signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensePayload {
    pub format: u32,
    pub serial: Serial,
    pub package_id: String,
    /// sha256 of every ONNX model file this license lets run.
    pub model_sha256s: Vec<String>,
    /// sha256 of every `manifest.json` this license lets run: the manifest
    /// says how images are prepared and what the outputs are called, so an
    /// edited one is refused like an edited model.
    pub manifest_sha256s: Vec<String>,
    pub machine: MachineBinding,
    /// The content key of every encrypted model file this license lets
    /// run, sealed to the activated machine's key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_keys: Vec<LicensedModelKey>,
    /// The nonce of the activation request this license answers.
    pub nonce: String,
    /// Unix seconds.
    pub issued: u64,
    /// Unix seconds; `None` for a license that does not expire.
    pub expires: Option<u64>,
}

/// The content key of one encrypted model file, for one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensedModelKey {
    /// sha256 of the encrypted model file (as in the manifest).
    pub model_sha256: String,
    pub sealed: SealedBox,
}

/// The message a license signature covers.
pub fn signing_message(payload: &[u8]) -> Vec<u8> {
    [SIGNING_DOMAIN, payload].concat()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    key_id: String,
    payload: String,
    signature: String,
}

/// A license file taken apart but not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLicense {
    pub key_id: String,
    /// The payload exactly as signed (JSON of [`LicensePayload`]).
    pub payload: Vec<u8>,
    pub signature: [u8; 64],
}

impl SignedLicense {
    /// The license file's text.
    pub fn to_armored(&self) -> String {
        let envelope = Envelope {
            key_id: self.key_id.clone(),
            payload: BASE64.encode(&self.payload),
            signature: BASE64.encode(self.signature),
        };
        let json = serde_json::to_vec(&envelope).expect("an envelope of strings serializes");
        let body = BASE64.encode(json);
        let mut text = format!("{ARMOR_BEGIN}\n");
        for line in body.as_bytes().chunks(ARMOR_WIDTH) {
            text.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
            text.push('\n');
        }
        text + ARMOR_END + "\n"
    }

    /// Takes a license file's text apart. Lines end in `\n` or `\r\n`;
    /// anything else (an edited byte, a stray character) is refused.
    pub fn from_armored(text: &str) -> Result<SignedLicense, LicenseError> {
        let body = armored_body(text)?;
        let json = BASE64
            .decode(body)
            .map_err(|e| malformed(format!("base64: {e}")))?;
        let envelope: Envelope =
            serde_json::from_slice(&json).map_err(|e| malformed(format!("envelope: {e}")))?;
        let payload = BASE64
            .decode(&envelope.payload)
            .map_err(|e| malformed(format!("payload: {e}")))?;
        let signature = BASE64
            .decode(&envelope.signature)
            .ok()
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or_else(|| malformed("signature is not 64 bytes of base64".into()))?;
        Ok(SignedLicense {
            key_id: envelope.key_id,
            payload,
            signature,
        })
    }

    /// Checks the signature with the trusted key named by `key_id`, then
    /// (and only then) parses the payload.
    pub fn verify(&self, keyring: &Keyring) -> Result<LicensePayload, LicenseError> {
        if keyring.is_empty() {
            return Err(LicenseError::NoTrustedKeys);
        }
        let key = keyring
            .get(&self.key_id)
            .ok_or_else(|| LicenseError::UnknownKey {
                key_id: self.key_id.clone(),
            })?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&signing_message(&self.payload), &signature)
            .map_err(|_| LicenseError::BadSignature)?;
        let payload: LicensePayload = serde_json::from_slice(&self.payload)
            .map_err(|e| LicenseError::Payload(e.to_string()))?;
        if !(OLDEST_PAYLOAD_FORMAT..=PAYLOAD_FORMAT).contains(&payload.format) {
            return Err(LicenseError::Payload(format!(
                "format {} is not {OLDEST_PAYLOAD_FORMAT} to {PAYLOAD_FORMAT}",
                payload.format
            )));
        }
        Ok(payload)
    }
}

fn malformed(reason: String) -> LicenseError {
    LicenseError::Malformed { reason }
}

/// The base64 between the armor lines, joined.
fn armored_body(text: &str) -> Result<String, LicenseError> {
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    if lines.next() != Some(ARMOR_BEGIN) {
        return Err(malformed(format!("the first line is not {ARMOR_BEGIN}")));
    }
    let mut body = String::new();
    loop {
        match lines.next() {
            Some(ARMOR_END) => break,
            Some(line) if is_base64_line(line) => body.push_str(line),
            Some(_) => {
                return Err(malformed(
                    "a line between the armor lines is not base64".into(),
                ));
            }
            None => return Err(malformed(format!("no line {ARMOR_END}"))),
        }
    }
    // Only empty lines may follow the end line (an editor's final newline).
    if lines.any(|line| !line.is_empty()) {
        return Err(malformed(format!("text after {ARMOR_END}")));
    }
    Ok(body)
}

fn is_base64_line(line: &str) -> bool {
    !line.is_empty()
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::fingerprint::{ComponentKind, Fingerprint};

    fn payload() -> LicensePayload {
        let machine = Fingerprint::from_raw([(ComponentKind::MachineId, "m1")]).unwrap();
        LicensePayload {
            format: PAYLOAD_FORMAT,
            serial: Serial::from_entropy(&[7; 12]),
            package_id: "lcnet_050-cpu-x86_64-1a2b3c4d".into(),
            model_sha256s: vec!["ab".repeat(32)],
            manifest_sha256s: vec!["cd".repeat(32)],
            machine: MachineBinding::most(&machine),
            model_keys: Vec::new(),
            nonce: "00".repeat(16),
            issued: 1_700_000_000,
            expires: None,
        }
    }

    fn signed(key: &SigningKey, payload: &[u8]) -> SignedLicense {
        let mut keyring = Keyring::default();
        let key_id = keyring.insert(key.verifying_key());
        let signature = key.sign(&signing_message(payload)).to_bytes();
        SignedLicense {
            key_id,
            payload: payload.to_vec(),
            signature,
        }
    }

    #[test]
    fn armor_round_trips_and_verifies() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let license = signed(&key, &serde_json::to_vec(&payload()).unwrap());
        let text = license.to_armored();
        assert!(text.starts_with(ARMOR_BEGIN) && text.ends_with("-----\n"));
        assert!(
            text.lines()
                .all(|l| l.len() <= ARMOR_WIDTH || l.starts_with("-----"))
        );
        let parsed = SignedLicense::from_armored(&text.replace('\n', "\r\n")).unwrap();
        assert_eq!(parsed, license);
        let mut keyring = Keyring::default();
        keyring.insert(key.verifying_key());
        assert_eq!(parsed.verify(&keyring).unwrap(), payload());
    }

    #[test]
    fn a_signature_without_the_domain_prefix_is_refused() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let bytes = serde_json::to_vec(&payload()).unwrap();
        let mut license = signed(&key, &bytes);
        license.signature = key.sign(&bytes).to_bytes();
        let mut keyring = Keyring::default();
        keyring.insert(key.verifying_key());
        assert!(matches!(
            license.verify(&keyring),
            Err(LicenseError::BadSignature)
        ));
    }

    #[test]
    fn a_signed_but_unparseable_payload_is_a_payload_error() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut keyring = Keyring::default();
        keyring.insert(key.verifying_key());
        let err = signed(&key, b"{\"format\": 2}")
            .verify(&keyring)
            .unwrap_err();
        assert!(matches!(err, LicenseError::Payload(_)), "{err}");
    }

    #[test]
    fn text_around_or_inside_the_armor_is_refused() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let text = signed(&key, b"{}").to_armored();
        assert!(SignedLicense::from_armored(&text).is_ok());
        assert!(SignedLicense::from_armored(&format!("{text}\n\n")).is_ok());
        for bad in [
            format!("x{text}"),
            format!("{text}trailing\n"),
            text.replace(ARMOR_END, ""),
            text.replacen('\n', "\n \n", 2),
        ] {
            let err = SignedLicense::from_armored(&bad).unwrap_err();
            assert!(matches!(err, LicenseError::Malformed { .. }), "{err}");
        }
    }
}
