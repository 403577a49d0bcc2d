//! The vendor's signing keys. A private key file holds the 32-byte Ed25519
//! seed (base64) and its key id; it is created with mode 0600, never
//! overwritten, and refused when others may read it. The public half goes
//! into the SDK's keyring (`licensing/keys/keyring.json`).

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use semiclass_licensing::{PublicKeyEntry, key_id, random_bytes};
use serde::{Deserialize, Serialize};

use crate::error::IssuerError;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateKeyFile {
    key_id: String,
    private_key: String,
}

/// A new signing key.
pub fn generate() -> SigningKey {
    SigningKey::from_bytes(&random_bytes())
}

/// Writes `key` to a new file readable by its owner only.
pub fn write_private_key(path: &Path, key: &SigningKey) -> Result<(), IssuerError> {
    let file = PrivateKeyFile {
        key_id: key_id(&key.verifying_key()),
        private_key: BASE64.encode(key.to_bytes()),
    };
    let json = serde_json::to_string_pretty(&file).expect("a key file serializes") + "\n";
    write_new(path, json.as_bytes(), 0o600)
}

/// Writes the public half of `key` as a keyring entry.
pub fn write_public_key(path: &Path, key: &SigningKey) -> Result<(), IssuerError> {
    let entry = PublicKeyEntry::new(&key.verifying_key());
    let json = serde_json::to_string_pretty(&entry).expect("an entry serializes") + "\n";
    write_new(path, json.as_bytes(), 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IssuerError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => {
                key_file(path, "already exists; a key file is never overwritten")
            }
            _ => IssuerError::io(path, e),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| IssuerError::io(path, e))
}

fn key_file(path: &Path, reason: &str) -> IssuerError {
    IssuerError::KeyFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads a private key file written by [`write_private_key`].
pub fn read_private_key(path: &Path) -> Result<SigningKey, IssuerError> {
    IssuerError::check_private(path)?;
    let text = fs::read_to_string(path).map_err(|e| IssuerError::io(path, e))?;
    let file: PrivateKeyFile = serde_json::from_str(&text)
        .map_err(|e| key_file(path, &format!("not a private key file: {e}")))?;
    let seed: [u8; 32] = BASE64
        .decode(&file.private_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| key_file(path, "private_key is not 32 bytes of base64"))?;
    let key = SigningKey::from_bytes(&seed);
    if key_id(&key.verifying_key()) != file.key_id {
        return Err(key_file(
            path,
            "key_id does not belong to this key: the file was edited",
        ));
    }
    Ok(key)
}

/// Adds the public half of `key` to a keyring file (a JSON list, created
/// when missing); a key already there is left alone.
pub fn add_to_keyring(path: &Path, key: &SigningKey) -> Result<(), IssuerError> {
    let mut entries: Vec<PublicKeyEntry> = match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| key_file(path, &format!("not a keyring (JSON list): {e}")))?,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(IssuerError::io(path, e)),
    };
    let entry = PublicKeyEntry::new(&key.verifying_key());
    if !entries.contains(&entry) {
        entries.push(entry);
    }
    let json = serde_json::to_string_pretty(&entries).expect("a keyring serializes") + "\n";
    fs::write(path, json).map_err(|e| IssuerError::io(path, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use semiclass_licensing::Keyring;

    use super::*;

    #[test]
    fn private_keys_round_trip_owner_only_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vendor.key");
        let key = generate();
        write_private_key(&path, &key).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private_key(&path).unwrap().to_bytes(), key.to_bytes());
        let err = write_private_key(&path, &generate()).unwrap_err();
        assert!(err.to_string().contains("never overwritten"), "{err}");
        assert_eq!(read_private_key(&path).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vendor.key");
        write_private_key(&path, &generate()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_key(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn keyrings_collect_several_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let (old, new) = (generate(), generate());
        add_to_keyring(&path, &old).unwrap();
        add_to_keyring(&path, &new).unwrap();
        add_to_keyring(&path, &new).unwrap();
        let keyring = Keyring::from_json(&fs::read_to_string(&path).unwrap()).unwrap();
        assert!(keyring.get(&key_id(&old.verifying_key())).is_some());
        assert!(keyring.get(&key_id(&new.verifying_key())).is_some());
        assert_eq!(
            fs::read_to_string(&path).unwrap().matches("key_id").count(),
            2
        );
    }
}
