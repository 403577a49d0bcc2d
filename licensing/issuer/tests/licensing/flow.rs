//! The flows that must work: activate, run, re-activate, replace a NIC.

use semiclass_licensing::{CheckError, LicenseError, verify_package};

use crate::common::{Activated, DAY, NOW, Vendor, machine};

#[test]
fn an_activated_machine_may_run_the_package() {
    let a = Activated::new(None);
    assert!(
        !a.activation.request_path().exists(),
        "the install consumes the pending request"
    );
    let verified = a.verify(&a.laptop, NOW + DAY).unwrap();
    assert_eq!(verified.model, b"model a");
    assert_eq!(verified.manifest.package_id, a.id);
    assert_eq!(verified.license.package_id, a.id);
}

#[test]
fn a_changed_nic_still_passes() {
    let a = Activated::new(None);
    let new_nic = machine("laptop", "new-nic");
    let shared = a
        .laptop
        .components()
        .iter()
        .filter(|c| new_nic.components().contains(c))
        .count();
    assert_eq!((shared, a.laptop.components().len()), (2, 3));
    a.verify(&new_nic, NOW).unwrap();
}

#[test]
fn re_activating_the_same_machine_takes_no_new_slot() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg_a.id, 1, None);
    vendor.activate(&pkg_a.id, serial, &machine("laptop", "eth"), NOW);
    vendor.activate(&pkg_a.id, serial, &machine("laptop", "eth"), NOW + DAY);
    // A new NIC is still the same machine: no new slot either.
    vendor.activate(
        &pkg_a.id,
        serial,
        &machine("laptop", "usb-nic"),
        NOW + 2 * DAY,
    );
    let records = vendor.db().list(Some(&pkg_a.id)).unwrap();
    assert_eq!((records[0].activations, records[0].max_activations), (1, 1));
}

#[test]
fn several_key_ids_may_be_trusted_at_once() {
    let a = Activated::new(None);
    let new = Vendor::new();
    let mut env = new.env(&a.laptop, NOW);
    let err = verify_package(&a.package, &a.activation, &env).unwrap_err();
    assert!(
        matches!(err, CheckError::License(LicenseError::UnknownKey { .. })),
        "{err}"
    );
    env.keyring.insert(a.vendor.public);
    verify_package(&a.package, &a.activation, &env).unwrap();
}
