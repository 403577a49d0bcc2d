//! The encrypted model (issue 16, item 2): the package's model file is
//! ciphertext, only a license activated on this machine opens it, and the
//! issuer says why it cannot when it cannot.

use std::fs;

use semiclass_license_issuer::IssuerError;
use semiclass_licensing::{ActivationRequest, LicenseError, MACHINE_KEY_FILE};

use crate::common::{Activated, NOW, Vendor, machine, machine_key, write_package_of};

#[test]
fn the_model_file_is_ciphertext_and_a_license_opens_it_in_memory() {
    let a = Activated::new(None);
    let stored = fs::read(a.package.join("model/model.onnx")).unwrap();
    assert!(!stored.windows(7).any(|w| w == b"model a"));
    assert_eq!(a.verify(&a.laptop, NOW).unwrap().model, b"model a");
}

#[test]
fn an_activation_without_its_machine_key_opens_nothing() {
    let a = Activated::new(None);
    let key = a.activation.machine_key_path();
    let sealed = fs::read(&key).unwrap();
    fs::remove_file(&key).unwrap();
    let err = a.refusal(&a.laptop, NOW);
    assert!(matches!(err, LicenseError::MachineKey { .. }), "{err}");
    assert!(
        err.to_string().contains("activate this package again"),
        "{err}"
    );
    // Another activation's key (this machine, another request) does not
    // open this license's model key either.
    let other = a.vendor.activation_dir();
    let serial = a.vendor.mint(&a.id, 1, None);
    other.begin(serial, &a.id, &a.laptop, NOW).unwrap();
    let folder = other.request_path().parent().unwrap().to_path_buf();
    fs::copy(folder.join(format!("pending-{MACHINE_KEY_FILE}")), &key).unwrap();
    let err = a.refusal(&a.laptop, NOW);
    assert!(matches!(err, LicenseError::ModelKey { .. }), "{err}");
    fs::write(&key, sealed).unwrap();
    a.verify(&a.laptop, NOW).unwrap();
}

#[test]
fn a_package_sealed_to_another_vendor_key_gets_no_license() {
    let vendor = Vendor::new();
    let other = Vendor::new();
    let (dir, manifest) = write_package_of(vendor.dir.path(), "pkg-x", b"model x", &other.keyring);
    let package = semiclass_package::Package::open(&dir).unwrap();
    vendor.db().add_package(&package, NOW).unwrap();
    let serial = vendor.mint(&manifest.package_id, 1, None);
    let err = vendor.refusal(&manifest.package_id, serial, &machine("laptop", "eth"));
    assert!(matches!(err, IssuerError::ModelKey { .. }), "{err}");
    assert!(
        err.to_string().contains("not to this issuer's key"),
        "{err}"
    );
    // The refusal took no activation slot of the serial.
    assert_eq!(activations_of(&vendor, &manifest.package_id), 0);
}

/// Activations recorded under the one serial of `package`.
fn activations_of(vendor: &Vendor, package: &str) -> u32 {
    let serials = vendor.db().list(Some(package)).unwrap();
    assert_eq!(serials.len(), 1);
    serials[0].activations
}

#[test]
fn a_request_without_a_machine_key_gets_no_license_for_an_encrypted_model() {
    let vendor = Vendor::new();
    let pkg = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg.id, 1, None);
    let laptop = machine("laptop", "eth");
    let mut old = ActivationRequest::new(serial, &pkg.id, &laptop, &machine_key(), NOW);
    (old.format, old.machine_key) = (1, None);
    let old = ActivationRequest::from_json(&old.to_json()).unwrap();
    let err = vendor.issuer.activate(&old, NOW).unwrap_err();
    assert!(matches!(err, IssuerError::NoMachineKey { .. }), "{err}");
    assert_eq!(err.code(), Some("old_sdk"));
    // Refused before a slot was taken: with one activation allowed, the
    // same serial still activates this machine with a current SDK.
    assert_eq!(activations_of(&vendor, &pkg.id), 0);
    vendor.activate(&pkg.id, serial, &laptop, NOW);
    assert_eq!(activations_of(&vendor, &pkg.id), 1);
}
