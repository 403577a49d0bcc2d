//! Encrypted models (DESIGN.md section 8): the one implementation of the
//! cryptography the exporter, the issuer and the SDK share.
//!
//! An SDK package's model file is the ONNX model encrypted with
//! ChaCha20-Poly1305 under a content key of its own. The key is never
//! written in clear: the exporter seals it to each vendor key of the
//! keyring (so the issuer can open it), and the issuer seals it again, in
//! each license, to the X25519 key of the one machine that activated. The
//! SDK keeps that machine key in the activation folder, itself sealed with
//! a key derived from the machine's identifiers, and decrypts the model
//! into memory for ONNX Runtime: a copied or unzipped package, or a license
//! taken to another machine, opens nothing.
//!
//! Sealing is ECIES: an ephemeral X25519 key, the shared secret through
//! HKDF-SHA256 (salted with both public keys, the caller's context as
//! info), then ChaCha20-Poly1305 with the context as associated data, so a
//! box made for one purpose never opens as another.
//!
//! The vendor's X25519 key is its Ed25519 signing key in Montgomery form:
//! the SDK's keyring already carries it, and the vendor keeps one secret.
//! Using one key pair for Ed25519 signatures and an X25519 KEM was shown
//! sound (Thormarker, "On using the same key pair for Ed25519 and an X25519
//! based KEM", eprint 2021/509); the contexts here keep the two uses apart.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use semiclass_manifest::package::{MODEL_CIPHER, ModelEncryption, SealedBox, VendorSealedKey};
use sha2::Sha256;
pub use x25519_dalek::{PublicKey, StaticSecret};

use crate::digest::{hex, random_bytes};
use crate::keyring::Keyring;

/// Bytes of a content key.
pub const CONTENT_KEY_BYTES: usize = 32;
/// The model file's associated data.
const MODEL_CONTEXT: &[u8] = b"semiclass model v1";
/// A content key sealed to a vendor key.
pub const VENDOR_KEY_CONTEXT: &[u8] = b"semiclass content key for the vendor v1";

/// A content key.
pub type ContentKey = [u8; CONTENT_KEY_BYTES];

/// Why a box or a model could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{0} is not valid hex of the right length")]
    Malformed(&'static str),
    #[error("it does not open with this key (another key, or the bytes were altered)")]
    Open,
    #[error("a public key of low order was given")]
    WeakKey,
    #[error("the keyring holds no key to seal the model's key to")]
    NoVendorKey,
}

/// A fresh X25519 key pair from the operating system's generator.
pub fn box_keypair() -> (StaticSecret, PublicKey) {
    let secret = StaticSecret::from(random_bytes::<32>());
    let public = PublicKey::from(&secret);
    (secret, public)
}

/// A fresh content key.
pub fn content_key() -> ContentKey {
    random_bytes()
}

/// The X25519 public key of a vendor's Ed25519 key.
pub fn vendor_box_public(key: &VerifyingKey) -> PublicKey {
    PublicKey::from(key.to_montgomery().to_bytes())
}

/// The X25519 secret of a vendor's Ed25519 signing key (the scalar half of
/// its expanded secret; X25519 clamps it as Ed25519 does).
pub fn vendor_box_secret(key: &SigningKey) -> StaticSecret {
    StaticSecret::from(key.to_scalar_bytes())
}

/// Seals `secret` to `recipient` for the purpose named by `context`.
pub fn seal(recipient: &PublicKey, secret: &[u8], context: &[u8]) -> Result<SealedBox, SealError> {
    let (ephemeral, ephemeral_public) = box_keypair();
    let shared = ephemeral.diffie_hellman(recipient);
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let cipher = box_cipher(shared.as_bytes(), &ephemeral_public, recipient, context);
    let nonce = random_bytes::<12>();
    let ciphertext = encrypt(&cipher, &nonce, secret, context);
    Ok(SealedBox {
        ephemeral_public: hex(ephemeral_public.as_bytes()),
        nonce: hex(&nonce),
        ciphertext: hex(&ciphertext),
    })
}

/// Opens a box sealed to `secret`'s public key for `context`.
pub fn open(
    secret: &StaticSecret,
    sealed: &SealedBox,
    context: &[u8],
) -> Result<Vec<u8>, SealError> {
    let ephemeral_public = PublicKey::from(unhex::<32>(&sealed.ephemeral_public, "ephemeral key")?);
    let nonce = unhex::<12>(&sealed.nonce, "nonce")?;
    let ciphertext = unhex_vec(&sealed.ciphertext, "ciphertext")?;
    let shared = secret.diffie_hellman(&ephemeral_public);
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let cipher = box_cipher(
        shared.as_bytes(),
        &ephemeral_public,
        &PublicKey::from(secret),
        context,
    );
    decrypt(&cipher, &nonce, &ciphertext, context)
}

/// The context of a content key sealed, in a license, to the activated
/// machine: it names the model file the key opens.
pub fn machine_key_context(model_sha256: &str) -> Vec<u8> {
    [
        b"semiclass content key for a machine v1\0".as_slice(),
        model_sha256.as_bytes(),
    ]
    .concat()
}

/// Encrypts `plain` under a symmetric `key` (fresh nonce); returns the
/// nonce and the ciphertext, hex.
pub(crate) fn lock(key: &[u8; 32], plain: &[u8], aad: &[u8]) -> (String, String) {
    let nonce = random_bytes::<12>();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    (hex(&nonce), hex(&encrypt(&cipher, &nonce, plain, aad)))
}

/// Opens what [`lock`] made.
pub(crate) fn unlock(
    key: &[u8; 32],
    nonce: &str,
    ciphertext: &str,
    aad: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce = unhex::<12>(nonce, "nonce")?;
    let ciphertext = unhex_vec(ciphertext, "ciphertext")?;
    decrypt(
        &ChaCha20Poly1305::new(Key::from_slice(key)),
        &nonce,
        &ciphertext,
        aad,
    )
}

/// Opens a box that must hold a content key.
pub fn open_content_key(
    secret: &StaticSecret,
    sealed: &SealedBox,
    context: &[u8],
) -> Result<ContentKey, SealError> {
    open(secret, sealed, context)?
        .try_into()
        .map_err(|_| SealError::Malformed("content key"))
}

/// Encrypts an ONNX model under a fresh content key sealed to every key of
/// `vendor_keys`; returns what the manifest says and the file's bytes.
pub fn encrypt_model(
    onnx: &[u8],
    vendor_keys: &Keyring,
) -> Result<(ModelEncryption, Vec<u8>), SealError> {
    if vendor_keys.is_empty() {
        return Err(SealError::NoVendorKey);
    }
    let key = content_key();
    let sealed = vendor_keys
        .iter()
        .map(|(key_id, public)| {
            let sealed = seal(&vendor_box_public(public), &key, VENDOR_KEY_CONTEXT)?;
            Ok(VendorSealedKey {
                key_id: key_id.to_string(),
                sealed,
            })
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    let nonce = random_bytes::<12>();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    let stored = encrypt(&cipher, &nonce, onnx, MODEL_CONTEXT);
    let encryption = ModelEncryption {
        cipher: MODEL_CIPHER.into(),
        nonce: hex(&nonce),
        vendor_keys: sealed,
    };
    Ok((encryption, stored))
}

/// The ONNX model inside an encrypted model file.
pub fn decrypt_model(
    stored: &[u8],
    encryption: &ModelEncryption,
    key: &ContentKey,
) -> Result<Vec<u8>, SealError> {
    let nonce = unhex::<12>(&encryption.nonce, "model nonce")?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    decrypt(&cipher, &nonce, stored, MODEL_CONTEXT)
}

/// The AEAD of one box: its key from the shared secret, bound to both
/// public keys and the purpose.
fn box_cipher(
    shared: &[u8; 32],
    ephemeral: &PublicKey,
    recipient: &PublicKey,
    context: &[u8],
) -> ChaCha20Poly1305 {
    let salt = [ephemeral.as_bytes().as_slice(), recipient.as_bytes()].concat();
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(context, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

fn encrypt(cipher: &ChaCha20Poly1305, nonce: &[u8; 12], plain: &[u8], aad: &[u8]) -> Vec<u8> {
    cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg: plain, aad })
        .expect("ChaCha20-Poly1305 encrypts any message below 256 GiB")
}

fn decrypt(
    cipher: &ChaCha20Poly1305,
    nonce: &[u8; 12],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, SealError> {
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| SealError::Open)
}

fn unhex_vec(text: &str, what: &'static str) -> Result<Vec<u8>, SealError> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(SealError::Malformed(what));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|_| SealError::Malformed(what))?;
            let lowercase = pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            match lowercase {
                true => u8::from_str_radix(pair, 16).map_err(|_| SealError::Malformed(what)),
                false => Err(SealError::Malformed(what)),
            }
        })
        .collect()
}

pub(crate) fn unhex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], SealError> {
    unhex_vec(text, what)?
        .try_into()
        .map_err(|_| SealError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_opens_only_with_its_key_and_its_context() {
        let (secret, public) = box_keypair();
        let sealed = seal(&public, b"the content key", b"purpose a").unwrap();
        assert_eq!(
            open(&secret, &sealed, b"purpose a").unwrap(),
            b"the content key"
        );
        assert_eq!(open(&secret, &sealed, b"purpose b"), Err(SealError::Open));
        let (other, _) = box_keypair();
        assert_eq!(open(&other, &sealed, b"purpose a"), Err(SealError::Open));
        let mut altered = sealed.clone();
        let flipped = if altered.ciphertext.starts_with('0') {
            "1"
        } else {
            "0"
        };
        altered.ciphertext.replace_range(0..1, flipped);
        assert_eq!(open(&secret, &altered, b"purpose a"), Err(SealError::Open));
        let mut upper = sealed;
        upper.nonce = upper.nonce.to_uppercase();
        if upper.nonce.bytes().any(|b| b.is_ascii_uppercase()) {
            let refused = open(&secret, &upper, b"purpose a");
            assert_eq!(refused, Err(SealError::Malformed("nonce")));
        }
    }

    #[test]
    fn a_low_order_recipient_is_refused() {
        let zero = PublicKey::from([0u8; 32]);
        assert_eq!(seal(&zero, b"k", b"c"), Err(SealError::WeakKey));
    }

    #[test]
    fn the_vendor_opens_what_was_sealed_to_its_public_key() {
        let signing = SigningKey::from_bytes(&[9; 32]);
        let public = vendor_box_public(&signing.verifying_key());
        assert_eq!(public, PublicKey::from(&vendor_box_secret(&signing)));
        let sealed = seal(&public, &[7; 32], VENDOR_KEY_CONTEXT).unwrap();
        let key = open_content_key(&vendor_box_secret(&signing), &sealed, VENDOR_KEY_CONTEXT);
        assert_eq!(key.unwrap(), [7; 32]);
    }

    #[test]
    fn a_model_round_trips_and_its_file_is_not_the_model() {
        let signing = SigningKey::from_bytes(&[3; 32]);
        let mut keyring = Keyring::default();
        let key_id = keyring.insert(signing.verifying_key());
        let onnx = b"\x08\x07an onnx model's bytes".repeat(100);
        let (encryption, stored) = encrypt_model(&onnx, &keyring).unwrap();
        assert_eq!(stored.len(), onnx.len() + 16);
        assert_ne!(&stored[..16], &onnx[..16]);
        assert_eq!(encryption.vendor_keys.len(), 1);
        assert_eq!(encryption.vendor_keys[0].key_id, key_id);
        let sealed = &encryption.vendor_keys[0].sealed;
        let key =
            open_content_key(&vendor_box_secret(&signing), sealed, VENDOR_KEY_CONTEXT).unwrap();
        assert_eq!(decrypt_model(&stored, &encryption, &key).unwrap(), onnx);
        let mut altered = stored;
        altered[10] ^= 1;
        assert_eq!(
            decrypt_model(&altered, &encryption, &key),
            Err(SealError::Open)
        );
        assert_eq!(
            encrypt_model(&onnx, &Keyring::default()).unwrap_err(),
            SealError::NoVendorKey
        );
    }
}
