//! The activated machine's X25519 key: made when an activation begins (its
//! public half goes in the request, and the license seals the model's
//! content key to it), kept in the activation folder sealed with a key
//! derived from the machine's identifiers, so that a copied activation
//! folder opens nothing on another machine.
//!
//! This is not a secret from the machine's own users (anyone who can read
//! the identifiers can derive the key, and a root user can read the model
//! out of the process's memory): it binds the model to the machine the way
//! the license does, and keeps it out of a copied or unzipped package.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::StaticSecret;

use crate::error::LicenseError;
use crate::fingerprint::{ComponentKind, Fingerprint};
use crate::sealing::{lock, unlock};

const FORMAT: u32 = 1;
const KDF_SALT: &[u8] = b"semiclass activation key v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    format: u32,
    package_id: String,
    /// The identifiers the sealing key was derived from.
    sealed_with: Vec<ComponentKind>,
    nonce: String,
    ciphertext: String,
}

/// The identifiers that seal the key: the OS install's machine-id where
/// there is one (it does not change when a network card does), else the
/// board's uuid, else every identifier the machine has.
fn sealing_kinds(machine: &Fingerprint) -> Vec<ComponentKind> {
    let has = |kind| machine.components().iter().any(|c| c.kind == kind);
    for kind in [ComponentKind::MachineId, ComponentKind::ProductUuid] {
        if has(kind) {
            return vec![kind];
        }
    }
    let mut kinds: Vec<_> = machine.components().iter().map(|c| c.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The sealing key of `package_id` on `machine` from the identifiers of
/// `kinds`; `None` when the machine has none of them.
fn sealing_key(
    machine: &Fingerprint,
    kinds: &[ComponentKind],
    package_id: &str,
) -> Option<[u8; 32]> {
    let mut parts: Vec<String> = machine
        .components()
        .iter()
        .filter(|c| kinds.contains(&c.kind))
        .map(|c| format!("{}:{}", c.kind.tag(), c.hash))
        .collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort();
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(KDF_SALT), parts.join("\n").as_bytes())
        .expand(package_id.as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Some(key)
}

/// Writes `secret` to `path`, sealed for `package_id` on `machine`.
pub(crate) fn store(
    path: &Path,
    package_id: &str,
    machine: &Fingerprint,
    secret: &StaticSecret,
) -> Result<(), LicenseError> {
    let kinds = sealing_kinds(machine);
    let key = sealing_key(machine, &kinds, package_id)
        .expect("the kinds were taken from this machine's own identifiers");
    let (nonce, ciphertext) = lock(&key, secret.as_bytes(), package_id.as_bytes());
    let stored = StoredKey {
        format: FORMAT,
        package_id: package_id.into(),
        sealed_with: kinds,
        nonce,
        ciphertext,
    };
    let json = serde_json::to_string_pretty(&stored).expect("a stored key serializes");
    crate::activation::write_atomic(path, json.as_bytes())
}

/// The key [`store`] wrote to `path` for `package_id`, opened on `machine`.
pub(crate) fn load(
    path: &Path,
    package_id: &str,
    machine: &Fingerprint,
) -> Result<StaticSecret, LicenseError> {
    let invalid = |reason: &str| LicenseError::MachineKey {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let text = fs::read_to_string(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => invalid("missing (the activation was made by an older SDK)"),
        _ => LicenseError::io(path, e),
    })?;
    let stored: StoredKey = serde_json::from_str(&text).map_err(|_| invalid("damaged"))?;
    if stored.format != FORMAT || stored.package_id != package_id {
        return Err(invalid("it belongs to another package or SDK version"));
    }
    let key = sealing_key(machine, &stored.sealed_with, package_id)
        .ok_or_else(|| invalid("this machine lacks the identifiers it was sealed with"))?;
    let bytes = unlock(
        &key,
        &stored.nonce,
        &stored.ciphertext,
        package_id.as_bytes(),
    )
    .map_err(|_| {
        invalid("it was sealed on another machine, or the machine's identifiers changed")
    })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid("damaged"))?;
    Ok(StaticSecret::from(bytes))
}

#[cfg(test)]
mod tests {
    use x25519_dalek::PublicKey;

    use super::*;
    use crate::sealing::box_keypair;

    fn machine(id: &str, mac: &str) -> Fingerprint {
        Fingerprint::from_raw([(ComponentKind::MachineId, id), (ComponentKind::Mac, mac)]).unwrap()
    }

    #[test]
    fn the_key_opens_on_its_machine_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("activation-key.json");
        let (secret, public) = box_keypair();
        store(&path, "pkg", &machine("m1", "aa"), &secret).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&crate::digest::hex(secret.as_bytes())),
            "{text}"
        );
        // A new network card does not matter; another install does.
        let opened = load(&path, "pkg", &machine("m1", "bb")).unwrap();
        assert_eq!(PublicKey::from(&opened), public);
        for (package, other) in [("pkg", machine("m2", "aa")), ("other", machine("m1", "aa"))] {
            let Err(err) = load(&path, package, &other) else {
                panic!("{package}: opened on another machine or for another package");
            };
            assert!(matches!(err, LicenseError::MachineKey { .. }), "{err}");
            assert!(err.to_string().contains("activate"), "{err}");
        }
    }

    #[test]
    fn a_machine_without_machine_id_seals_with_what_it_has() {
        let macs = Fingerprint::from_raw([(ComponentKind::Mac, "aa"), (ComponentKind::Mac, "bb")])
            .unwrap();
        assert_eq!(sealing_kinds(&macs), vec![ComponentKind::Mac]);
        assert_eq!(
            sealing_kinds(&machine("m", "aa")),
            vec![ComponentKind::MachineId]
        );
    }
}
