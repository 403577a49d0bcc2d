//! The verify side of semiclass licensing (DESIGN.md section 8): serial
//! numbers, machine fingerprints, activation requests and license files.
//!
//! Nothing here can sign: this crate goes into every SDK, and the private
//! key never leaves the issuer (`semiclass-license-issuer`). The SDK calls
//! [`verify_package`] before it loads a model:
//!
//! ```no_run
//! use semiclass_licensing::{ActivationDir, Environment, verify_package};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let env = Environment::system()?;
//! let activation = ActivationDir::new("/home/me/.local/share/semiclass/my-package");
//! let package = verify_package("/opt/my-package".as_ref(), &activation, &env)?;
//! // Build the ONNX session from `package.model`, the bytes that were checked.
//! # Ok(()) }
//! ```

mod activation;
mod check;
mod digest;
mod error;
pub mod fingerprint;
mod keyring;
mod license;
mod machine_key;
mod request;
pub mod sealing;
mod serial;

pub use activation::{ActivationDir, LICENSE_FILE, MACHINE_KEY_FILE, REQUEST_FILE, STATE_FILE};
pub use check::{
    CheckError, DEFAULT_CLOCK_TOLERANCE_S, Environment, VerifiedPackage, unix_now, verify_package,
};
pub use digest::{is_sha256_hex, random_bytes, sha256_hex};
pub use error::LicenseError;
pub use fingerprint::{
    Fingerprint, FingerprintError, FingerprintSource, MachineBinding, SystemProbe,
};
pub use keyring::{Keyring, KeyringError, PublicKeyEntry, key_id};
pub use license::{
    ARMOR_BEGIN, ARMOR_END, LicensePayload, LicensedModelKey, PAYLOAD_FORMAT, SIGNING_DOMAIN,
    SignedLicense, signing_message,
};
pub use request::{ActivationRequest, REQUEST_FORMAT, RequestError};
pub use serial::{Serial, SerialError};
