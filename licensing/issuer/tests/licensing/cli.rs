//! The vendor's command line, end to end: keygen, add-package, issue, list,
//! sign-request, revoke.

use std::path::Path;
use std::process::{Command, Output};

use semiclass_licensing::{ActivationDir, Keyring, Serial, unix_now, verify_package};

use crate::common::{environment, machine, write_package_of};

fn semiclass_license(db: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_semiclass-license"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn the_vendor_flow_from_keygen_to_a_license() {
    let dir = tempfile::tempdir().unwrap();
    let (db, key, keyring) = (
        dir.path().join("issuer.sqlite"),
        dir.path().join("vendor.key"),
        dir.path().join("keyring.json"),
    );
    let keygen = stdout(&semiclass_license(
        &db,
        &[
            "keygen",
            "--out",
            key.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
        ],
    ));
    assert!(keygen.contains("key id "), "{keygen}");
    let again = semiclass_license(&db, &["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));

    let trusted = Keyring::from_json(&std::fs::read_to_string(&keyring).unwrap()).unwrap();
    let (package, manifest) = write_package_of(dir.path(), "pkg-cli", b"model", &trusted);
    let id = manifest.package_id.as_str();
    stdout(&semiclass_license(
        &db,
        &["add-package", package.to_str().unwrap()],
    ));
    let issued = stdout(&semiclass_license(
        &db,
        &[
            "issue",
            "--package",
            id,
            "--count",
            "2",
            "--expires",
            "2099-12-31",
        ],
    ));
    let serials: Vec<Serial> = issued.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(serials.len(), 2);

    let laptop = machine("laptop", "eth");
    let activation = ActivationDir::new(dir.path().join("activation"));
    let now = unix_now();
    activation.begin(serials[0], id, &laptop, now).unwrap();
    let license = dir.path().join("license.lic");
    let request = activation.request_path();
    let args = [
        "sign-request",
        request.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        license.to_str().unwrap(),
    ];
    stdout(&semiclass_license(&db, &args));
    let env = environment(&trusted, &laptop, now);
    activation
        .install(&std::fs::read_to_string(&license).unwrap(), &env)
        .unwrap();
    verify_package(&package, &activation, &env).unwrap();

    let listed = stdout(&semiclass_license(&db, &["list", "--package", id]));
    assert!(
        listed.contains(&format!("{}", serials[0]))
            && listed.contains("1/1")
            && listed.contains("2100-01-01"),
        "{listed}"
    );
    stdout(&semiclass_license(
        &db,
        &["revoke", &serials[1].to_string().to_lowercase()],
    ));
    activation
        .begin(serials[1], id, &machine("desktop", "eth"), now)
        .unwrap();
    let refused = semiclass_license(
        &db,
        &[
            "sign-request",
            request.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("was revoked"));
}

#[test]
fn issuing_for_an_unregistered_package_says_how_to_register() {
    let dir = tempfile::tempdir().unwrap();
    let output = semiclass_license(
        &dir.path().join("issuer.sqlite"),
        &["issue", "--package", "nope", "--count", "1"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("semiclass-license add-package"));
}
