//! What an attacker tries; each must be refused with its own error kind.

use std::collections::BTreeMap;
use std::fs;

use semiclass_license_issuer::IssuerError;
use semiclass_licensing::{
    ActivationRequest, CheckError, Fingerprint, Keyring, LicenseError, Serial, SerialError,
    SignedLicense, SystemProbe, key_id, sha256_hex, verify_package,
};
use semiclass_manifest::package::{MANIFEST_FILE, PackageManifest};

use crate::common::{Activated, DAY, NOW, Vendor, environment, machine, machine_key};

#[test]
fn a_serial_with_a_typo_is_refused_before_anything_is_sent() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg_a.id, 1, None).to_string();
    let last = serial.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &serial[..serial.len() - 1],
        if last == 'Z' { 'Y' } else { 'Z' }
    );
    assert_eq!(typo.parse::<Serial>(), Err(SerialError::Check));
    // A request file carrying it does not parse either.
    let request = ActivationRequest::new(
        serial.parse().unwrap(),
        &pkg_a.id,
        &machine("m", "eth"),
        &machine_key(),
        NOW,
    );
    let forged = request.to_json().replace(&serial, &typo);
    assert!(ActivationRequest::from_json(&forged).is_err());
}

#[test]
fn a_well_formed_but_unknown_serial_is_refused() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let made_up = Serial::from_entropy(&[0x5a; 12]);
    let err = vendor.refusal(&pkg_a.id, made_up, &machine("m", "eth"));
    assert!(matches!(err, IssuerError::UnknownSerial { .. }), "{err}");
}

#[test]
fn a_revoked_serial_or_another_package_is_refused_by_the_issuer() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let pkg_b = vendor.package("pkg-b", b"model b");
    let serial = vendor.mint(&pkg_a.id, 5, None);
    let err = vendor.refusal(&pkg_b.id, serial, &machine("m", "eth"));
    assert!(matches!(err, IssuerError::WrongPackage { .. }), "{err}");
    vendor.db().revoke(serial, NOW).unwrap();
    let err = vendor.refusal(&pkg_a.id, serial, &machine("m", "eth"));
    assert!(matches!(err, IssuerError::Revoked { .. }), "{err}");
}

#[test]
fn more_activations_than_allowed_are_refused() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg_a.id, 2, None);
    vendor.activate(&pkg_a.id, serial, &machine("one", "eth"), NOW);
    vendor.activate(&pkg_a.id, serial, &machine("two", "eth"), NOW);
    let err = vendor.refusal(&pkg_a.id, serial, &machine("three", "eth"));
    assert!(
        matches!(err, IssuerError::LimitReached { max: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("contact the vendor"), "{err}");
}

/// The pivot found in the security review (issue 16): a machine reads the
/// hashed components of an activated machine from its license file and
/// adds some of them to its own request, hoping to pass for that machine,
/// and each machine so licensed lends its components to the next. With
/// one activation allowed, no machine but the first may end up running the
/// package, and the serial still shows one activation of one.
#[test]
fn borrowing_an_activated_machines_components_licenses_no_other_machine() {
    let a = Activated::new(None);
    let text = fs::read_to_string(a.activation.license_path()).unwrap();
    let first = SignedLicense::from_armored(&text)
        .unwrap()
        .verify(&a.vendor.keyring)
        .unwrap();
    // Whom the next machine borrows from: the first machine, and what the
    // previous machine sent when it was granted.
    let mut lenders = vec![first.machine.components.clone()];
    let (mut refused, mut useless) = (0, 0);
    for i in 0..7 {
        let own = machine(&format!("pivot-{i}"), "eth");
        let mut granted = None;
        for lender in &lenders {
            // `keep` of its own components, MACs first: with its own
            // machine-id too (the review's attack) there are two.
            let own_macs_first = own.components().iter().rev();
            for (take, keep) in [(2, 3), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)] {
                let mut components = lender[..take].to_vec();
                components.extend(own_macs_first.clone().take(keep).cloned());
                // Two machine-ids exceed what a fingerprint may hold.
                let Ok(forged) = Fingerprint::from_components(components) else {
                    refused += 1;
                    continue;
                };
                let activation = a.vendor.activation_dir();
                let request = activation.begin(first.serial, &a.id, &forged, NOW).unwrap();
                let license = match a.vendor.issuer.activate(&request, NOW) {
                    Err(IssuerError::LimitReached { .. }) => {
                        refused += 1;
                        continue;
                    }
                    Err(other) => panic!("unexpected refusal: {other}"),
                    Ok(license) => license,
                };
                // Granted as the first machine activating again: bound to it.
                let payload = activation
                    .install(&license, &a.vendor.env(&forged, NOW))
                    .unwrap();
                assert_eq!(payload.machine, first.machine);
                let err = verify_package(&a.package, &activation, &a.vendor.env(&own, NOW));
                assert!(
                    matches!(
                        err,
                        Err(CheckError::License(LicenseError::OtherMachine { .. }))
                    ),
                    "pivot-{i} ({take} borrowed, {keep} own) runs the package: {err:?}"
                );
                useless += 1;
                granted = Some(forged.components().to_vec());
            }
        }
        lenders.truncate(1);
        lenders.extend(granted);
    }
    assert!(
        refused > 0 && useless > 0,
        "{refused} refused, {useless} useless"
    );
    let records = a.vendor.db().list(Some(&a.id)).unwrap();
    assert_eq!((records[0].activations, records[0].max_activations), (1, 1));
    a.verify(&a.laptop, NOW).unwrap();
}

#[test]
fn the_database_of_serials_is_private_and_refused_once_others_may_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let a = Activated::new(None);
    let db = a.vendor.dir.path().join("issuer.sqlite");
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    let wal = db.with_extension("sqlite-wal");
    assert!(!wal.exists() || mode(&wal) == 0o600, "{:o}", mode(&wal));
    fs::set_permissions(&db, fs::Permissions::from_mode(0o640)).unwrap();
    let serial = a.vendor.db_error();
    assert!(
        matches!(serial, IssuerError::ReadableByOthers { mode: 0o640, .. }),
        "{serial}"
    );
    assert!(serial.to_string().contains("chmod 600"), "{serial}");
    let request = ActivationRequest::new(
        Serial::from_entropy(&[1; 12]),
        &a.id,
        &a.laptop,
        &machine_key(),
        NOW,
    );
    let err = a.vendor.issuer.activate(&request, NOW).unwrap_err();
    assert!(matches!(err, IssuerError::ReadableByOthers { .. }), "{err}");
}

/// The refusal of an edited license file's bytes, by the same steps as
/// `verify_package` takes with the installed file (text, armor, signature).
fn refusal_of(bytes: &[u8], keyring: &Keyring) -> &'static str {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return "malformed";
    };
    match SignedLicense::from_armored(text).and_then(|license| license.verify(keyring)) {
        Err(LicenseError::Malformed { .. }) => "malformed",
        Err(LicenseError::BadSignature) => "bad signature",
        Err(LicenseError::UnknownKey { .. }) => "unknown key",
        Err(other) => panic!("unexpected refusal {other}"),
        Ok(payload) => panic!("an edited license verified: {payload:?}"),
    }
}

#[test]
fn every_changed_byte_of_a_license_is_refused() {
    let a = Activated::new(None);
    let original = fs::read(a.activation.license_path()).unwrap();
    let mut kinds = BTreeMap::new();
    for position in 0..original.len() {
        for mask in [0x01u8, 0x02, 0x20, 0x80] {
            let mut edited = original.clone();
            edited[position] ^= mask;
            *kinds
                .entry(refusal_of(&edited, &a.vendor.keyring))
                .or_insert(0) += 1;
        }
    }
    // All three ways of failing occur, so the edits reached every layer.
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    // The same through the installed file (every 16th byte: file writes are slow).
    for position in (0..original.len()).step_by(16) {
        let mut edited = original.clone();
        edited[position] ^= 0x01;
        fs::write(a.activation.license_path(), &edited).unwrap();
        let err = a.refusal(&a.laptop, NOW);
        let expected = matches!(
            err,
            LicenseError::Malformed { .. }
                | LicenseError::BadSignature
                | LicenseError::UnknownKey { .. }
        );
        assert!(expected, "byte {position}: {err}");
    }
    fs::write(a.activation.license_path(), &original).unwrap();
    a.verify(&a.laptop, NOW).unwrap();
}

#[test]
fn a_license_from_machine_a_is_refused_on_machine_b() {
    let a = Activated::new(None);
    let err = a.refusal(&machine("desktop", "eth"), NOW);
    assert!(
        matches!(
            err,
            LicenseError::OtherMachine {
                matched: 0,
                needed: 2,
                total: 3
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("activate this machine"), "{err}");
    // A machine sharing one identifier of three (a cloned MAC) is still another machine.
    let desktop = machine("desktop", "eth");
    let one_shared = [&a.laptop.components()[..1], &desktop.components()[1..]].concat();
    let err = a.refusal(&Fingerprint::from_components(one_shared).unwrap(), NOW);
    assert!(
        matches!(err, LicenseError::OtherMachine { matched: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_license_for_package_a_is_refused_for_package_b() {
    let a = Activated::new(None);
    let package_b = a.vendor.package("pkg-b", b"model b");
    let err =
        verify_package(&package_b.dir, &a.activation, &a.vendor.env(&a.laptop, NOW)).unwrap_err();
    assert!(
        matches!(err, CheckError::License(LicenseError::WrongPackage { .. })),
        "{err}"
    );
}

#[test]
fn a_swapped_model_file_is_refused() {
    let a = Activated::new(None);
    fs::write(a.package.join("model/model.onnx"), b"a better model").unwrap();
    let err = a.verify(&a.laptop, NOW).unwrap_err();
    assert!(matches!(err, CheckError::Package(_)), "{err}");
    assert!(
        err.to_string().contains("model/model.onnx: sha256 differs"),
        "{err}"
    );
    // The attacker also edits the (unsigned) manifest: the license still says no.
    let path = a.package.join(MANIFEST_FILE);
    let mut manifest: PackageManifest =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    manifest
        .files
        .insert("model/model.onnx".into(), sha256_hex(b"a better model"));
    fs::write(&path, serde_json::to_string(&manifest).unwrap()).unwrap();
    let err = a.refusal(&a.laptop, NOW);
    assert!(
        matches!(err, LicenseError::ModelNotLicensed { .. }),
        "{err}"
    );
}

#[test]
fn an_edited_manifest_is_refused_though_every_file_still_matches_it() {
    let a = Activated::new(None);
    let path = a.package.join(MANIFEST_FILE);
    let original = fs::read_to_string(&path).unwrap();
    let edits: [fn(&mut PackageManifest); 2] = [
        |m| m.model.class_names[0] = "a class the vendor never named".into(),
        |m| m.model.preprocess.mean = [0.0; 3],
    ];
    for edit in edits {
        let mut manifest: PackageManifest = serde_json::from_str(&original).unwrap();
        edit(&mut manifest);
        fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
        let err = a.refusal(&a.laptop, NOW);
        assert!(
            matches!(err, LicenseError::ManifestNotLicensed { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }
    fs::write(&path, &original).unwrap();
    a.verify(&a.laptop, NOW).unwrap();
}

#[test]
fn an_expired_license_is_refused() {
    let a = Activated::new(Some(NOW + 30 * DAY));
    a.verify(&a.laptop, NOW + 29 * DAY).unwrap();
    let err = a.refusal(&a.laptop, NOW + 30 * DAY);
    assert!(matches!(err, LicenseError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("2026-01-31T00:00:00Z"), "{err}");
}

#[test]
fn a_clock_set_back_is_refused() {
    let a = Activated::new(Some(NOW + 30 * DAY));
    a.verify(&a.laptop, NOW + 20 * DAY).unwrap();
    // Within the tolerance (a clock correction) it still runs.
    a.verify(&a.laptop, NOW + 20 * DAY - 3600).unwrap();
    let err = a.refusal(&a.laptop, NOW + 10 * DAY);
    assert!(matches!(err, LicenseError::ClockRollback { .. }), "{err}");
    // Deleting the clock state does not help before the issue time.
    fs::remove_file(a.activation.state_path()).unwrap();
    let err = a.refusal(&a.laptop, NOW - 10 * DAY);
    assert!(matches!(err, LicenseError::IssuedInFuture { .. }), "{err}");
}

#[test]
fn a_key_id_this_sdk_does_not_know_is_refused() {
    let a = Activated::new(None);
    let other = Vendor::new();
    let err = verify_package(&a.package, &a.activation, &other.env(&a.laptop, NOW)).unwrap_err();
    assert!(
        matches!(err, CheckError::License(LicenseError::UnknownKey { .. })),
        "{err}"
    );
    let nobody = environment(&Keyring::default(), &a.laptop, NOW);
    let err = verify_package(&a.package, &a.activation, &nobody).unwrap_err();
    assert!(
        matches!(err, CheckError::License(LicenseError::NoTrustedKeys)),
        "{err}"
    );
}

#[test]
fn a_signature_by_an_untrusted_key_under_a_trusted_key_id_is_refused() {
    let a = Activated::new(None);
    // The forger runs their own issuer for the same package and machine...
    let forger = Vendor::new();
    let pkg_a = forger.package("pkg-a", b"model a");
    let forged = forger.activate(&pkg_a.id, forger.mint(&pkg_a.id, 1, None), &a.laptop, NOW);
    // ...and relabels its license with the vendor's key id.
    let mut license = SignedLicense::from_armored(&forged.read_license().unwrap()).unwrap();
    license.key_id = key_id(&a.vendor.public);
    fs::write(a.activation.license_path(), license.to_armored()).unwrap();
    let err = a.refusal(&a.laptop, NOW);
    assert!(matches!(err, LicenseError::BadSignature), "{err}");
}

#[test]
fn a_license_answering_another_request_is_not_installed() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg_a.id, 2, None);
    let laptop = machine("laptop", "eth");
    let activation = vendor.activation_dir();
    let first = activation.begin(serial, &pkg_a.id, &laptop, NOW).unwrap();
    let license = vendor.issuer.activate(&first, NOW).unwrap();
    activation.begin(serial, &pkg_a.id, &laptop, NOW).unwrap();
    let err = activation
        .install(&license, &vendor.env(&laptop, NOW))
        .unwrap_err();
    assert!(matches!(err, LicenseError::WrongRequest), "{err}");
    assert!(!activation.license_path().exists());
}

#[test]
fn no_license_or_no_fingerprint_says_what_to_do() {
    let a = Activated::new(None);
    let empty = a.vendor.activation_dir();
    let err = verify_package(&a.package, &empty, &a.vendor.env(&a.laptop, NOW)).unwrap_err();
    assert!(
        matches!(err, CheckError::License(LicenseError::NotActivated { .. })),
        "{err}"
    );
    let mut env = a.vendor.env(&a.laptop, NOW);
    let bare = tempfile::tempdir().unwrap();
    env.machine = Box::new(SystemProbe::with_root(
        bare.path(),
        bare.path().join("nvidia-smi"),
    ));
    let err = verify_package(&a.package, &a.activation, &env).unwrap_err();
    assert!(
        matches!(err, CheckError::License(LicenseError::Fingerprint(_))),
        "{err}"
    );
    assert!(err.to_string().contains("/etc/machine-id"), "{err}");
}
