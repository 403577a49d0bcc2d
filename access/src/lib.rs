//! Access secrets shared by the HTTP faces of semiclass (`semiclass-serve`'s
//! API tokens, the studio's login token and session cookies): made from
//! 256 random bits, kept only as their sha256, and checked in constant time.
//! One implementation, so that a fix to one door fixes them all.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use semiclass_licensing::random_bytes;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// A new secret: 256 random bits, URL-safe base64 (43 characters), fit
/// for a URL query, a cookie or a header as it is.
pub fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The sha256 of a secret: what is stored instead of the secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits back into a hash; anything else is `None`.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The hashes of the secrets that open the door.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    hashes: Vec<[u8; 32]>,
}

impl TokenSet {
    /// The secrets whose sha256 are `hashes`.
    pub fn from_hashes(hashes: impl IntoIterator<Item = [u8; 32]>) -> TokenSet {
        TokenSet {
            hashes: hashes.into_iter().collect(),
        }
    }

    /// Lets `secret` in from now on (only its hash is kept).
    pub fn insert(&mut self, secret: &str) {
        self.hashes.push(secret_hash(secret));
    }

    /// Whether no secret can open the door.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `secret` is one of the set. The presented secret's hash is
    /// compared with every stored hash in constant time, without stopping
    /// at a match, so timing tells nothing about how close a guess was.
    pub fn verify(&self, secret: &str) -> bool {
        let presented = secret_hash(secret);
        let mut found = Choice::from(0);
        for hash in &self.hashes {
            found |= hash.ct_eq(&presented);
        }
        found.into()
    }
}

/// The loopback rule: a loopback address is always allowed; any other
/// only once a secret exists that the visitor must present, so a server is
/// never reachable from other machines with an open door.
pub fn may_listen(addr: SocketAddr, secrets_exist: bool) -> bool {
    addr.ip().is_loopback() || secrets_exist
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_and_nothing_close_to_it_does() {
        let secret = new_secret();
        assert_eq!(secret.len(), 43);
        let mut set = TokenSet::default();
        assert!(set.is_empty() && !set.verify(&secret));
        set.insert(&secret);
        assert!(set.verify(&secret));
        assert!(!set.verify(&secret[..42]));
        assert!(!set.verify(""));
        assert_ne!(new_secret(), secret);
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = secret_hash("x");
        assert_eq!(unhex32(&hex(&hash)), Some(hash));
        assert_eq!(unhex32("zz"), None);
        assert!(TokenSet::from_hashes([hash]).verify("x"));
    }

    #[test]
    fn only_loopback_listens_without_a_secret() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let lo6: SocketAddr = "[::1]:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(may_listen(lo, false) && may_listen(lo6, false));
        assert!(!may_listen(any, false));
        assert!(may_listen(any, true));
    }
}
