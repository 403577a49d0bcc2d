//! Copies the trusted public keys into the build, so that the verify side
//! carries them compiled in (`Keyring::builtin`). The keyring is
//! `keys/keyring.json` unless `SEMICLASS_LICENSE_KEYRING` names another file
//! (an absolute path), which lets a vendor keep their keyring outside the
//! source tree.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    println!("cargo::rerun-if-env-changed=SEMICLASS_LICENSE_KEYRING");
    let source = env::var_os("SEMICLASS_LICENSE_KEYRING")
        .map_or_else(|| PathBuf::from("keys/keyring.json"), PathBuf::from);
    println!("cargo::rerun-if-changed={}", source.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(err) = fs::copy(&source, out.join("keyring.json")) {
        panic!(
            "{}: cannot read the license keyring: {err}",
            source.display()
        );
    }
}
