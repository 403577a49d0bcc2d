//! Hex, sha256 and random bytes in the forms manifests and licenses use.

pub use semiclass_manifest::checkpoint_file::sha256_hex;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is 64 lowercase hex digits (a sha256 as written here).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `N` bytes from the operating system's generator: the one source of
/// keys, nonces, serials and tokens in the licensing crates and the server.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator only fails on a broken system; nothing sensible can
    // continue without randomness.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
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
        assert!(!is_sha256_hex(&abc.to_uppercase()));
        assert!(!is_sha256_hex(&abc[1..]));
        let nonce = random_bytes::<16>();
        assert_ne!(nonce, random_bytes::<16>());
    }
}
