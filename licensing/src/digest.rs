//! sha256 in lowercase hex, the form manifests and licenses use.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is 64 lowercase hex digits (a sha256 as written here).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// sha256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The whole file and its sha256: the caller uses exactly the bytes that
/// were hashed, so the file cannot be swapped between check and use.
pub fn read_hashed(path: &Path) -> io::Result<(Vec<u8>, String)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let sha = sha256_hex(&bytes);
    Ok((bytes, sha))
}

/// sha256 of a file, read in pieces (runtime libraries are large).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// `len` random bytes from the operating system, as hex.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // The OS generator only fails on a broken system; nothing sensible can
    // continue without randomness.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_in_lowercase_hex() {
        // `printf abc | sha256sum`
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert!(is_sha256_hex(abc));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc"), b"abc").unwrap();
        assert_eq!(sha256_file(&dir.path().join("abc")).unwrap(), abc);
        assert_eq!(
            read_hashed(&dir.path().join("abc")).unwrap(),
            (b"abc".to_vec(), abc.to_string())
        );
        assert!(!is_sha256_hex(&abc.to_uppercase()));
        assert!(!is_sha256_hex(&abc[1..]));
        let nonce = random_hex(16);
        assert_eq!(nonce.len(), 32);
        assert_ne!(nonce, random_hex(16));
    }
}
