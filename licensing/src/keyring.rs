//! The public keys a build trusts, selected by key id. Several may be valid
//! at once, so a vendor can rotate keys: add the new key, issue with it, and
//! drop the old one once its licenses are gone.
//!
//! The built-in keyring is compiled from `licensing/keys/keyring.json` (or
//! the file named by `SEMICLASS_LICENSE_KEYRING` at build time), a JSON list
//! of [`PublicKeyEntry`] that `semiclass-license keygen --keyring FILE`
//! appends to. Tests build their own [`Keyring`] instead.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;

const BUILTIN: &str = include_str!(concat!(env!("OUT_DIR"), "/keyring.json"));

/// One trusted public key as written in a keyring file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyEntry {
    pub key_id: String,
    /// The 32-byte Ed25519 public key, base64.
    pub public_key: String,
}

impl PublicKeyEntry {
    /// The entry for `key`.
    pub fn new(key: &VerifyingKey) -> PublicKeyEntry {
        PublicKeyEntry {
            key_id: key_id(key),
            public_key: BASE64.encode(key.as_bytes()),
        }
    }

    /// The key, checked against its id.
    pub fn key(&self) -> Result<VerifyingKey, KeyringError> {
        let bad = || KeyringError::BadKey {
            key_id: self.key_id.clone(),
        };
        let bytes: [u8; 32] = BASE64
            .decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        if key.is_weak() || key_id(&key) != self.key_id {
            return Err(bad());
        }
        Ok(key)
    }
}

/// The id of a public key: the first 8 bytes of its sha256, hex. Derived
/// from the key, so an id can never name two different keys.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

/// Why a keyring could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring is not a JSON list of {{key_id, public_key}}: {0}")]
    Json(#[from] serde_json::Error),
    #[error("keyring entry {key_id}: not a valid Ed25519 public key with that id")]
    BadKey { key_id: String },
}

/// Trusted public keys by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Keyring {
    /// The keys compiled into this build.
    pub fn builtin() -> Result<Keyring, KeyringError> {
        Keyring::from_json(BUILTIN)
    }

    /// Reads a keyring file's text.
    pub fn from_json(text: &str) -> Result<Keyring, KeyringError> {
        let entries: Vec<PublicKeyEntry> = serde_json::from_str(text)?;
        let mut keyring = Keyring::default();
        for entry in &entries {
            keyring.insert(entry.key()?);
        }
        Ok(keyring)
    }

    /// Trusts `key`; returns its id.
    pub fn insert(&mut self, key: VerifyingKey) -> String {
        let id = key_id(&key);
        self.keys.insert(id.clone(), key);
        id
    }

    /// The key with this id, if trusted.
    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    /// Every trusted key with its id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &VerifyingKey)> {
        self.keys.iter().map(|(id, key)| (id.as_str(), key))
    }

    /// Whether no key is trusted (a build whose vendor never ran keygen).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn public(seed: u8) -> VerifyingKey {
        SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    #[test]
    fn the_builtin_keyring_parses() {
        Keyring::builtin().unwrap();
    }

    #[test]
    fn entries_round_trip_and_rotate() {
        let entries = vec![
            PublicKeyEntry::new(&public(1)),
            PublicKeyEntry::new(&public(2)),
        ];
        let keyring = Keyring::from_json(&serde_json::to_string(&entries).unwrap()).unwrap();
        assert_eq!(keyring.get(&entries[0].key_id), Some(&public(1)));
        assert_eq!(keyring.get(&entries[1].key_id), Some(&public(2)));
        assert_eq!(entries[0].key_id.len(), 16);
    }

    #[test]
    fn an_id_that_does_not_name_its_key_is_refused() {
        let mut entry = PublicKeyEntry::new(&public(1));
        entry.key_id = key_id(&public(2));
        let json = serde_json::to_string(&[entry]).unwrap();
        assert!(matches!(
            Keyring::from_json(&json),
            Err(KeyringError::BadKey { .. })
        ));
        assert!(matches!(
            Keyring::from_json("{}"),
            Err(KeyringError::Json(_))
        ));
    }
}
