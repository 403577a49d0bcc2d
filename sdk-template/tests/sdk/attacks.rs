//! What an attacker tries against an installed package, through the real
//! `infer` binary: each is refused with its own message.

use std::fs;

use semiclass_licensing::sha256_hex;

use crate::common::*;

#[test]
fn no_license() {
    let vendor = Vendor::new();
    let package = Package::slim("pkg-a", &tiny_model(4));
    let image_dir = tempfile::tempdir().unwrap();
    let image = solid_png(image_dir.path(), "red.png", [255, 0, 0], 32);
    let output = Machine::new("laptop").infer(
        &package,
        &vendor,
        NOW,
        &["predict", image.to_str().unwrap()],
    );
    assert_refused(&output, "no license is installed");
    assert_refused(&output, "infer activate --serial");
}

#[test]
fn a_license_copied_to_another_machine() {
    let scene = Scene::new(None);
    scene.assert_runs(NOW);
    // The attacker copies the whole activation folder to their machine.
    let desktop = Machine::new("desktop");
    let copied = desktop.activation(&scene.package).license_path();
    fs::create_dir_all(copied.parent().unwrap()).unwrap();
    fs::copy(scene.license_path(), &copied).unwrap();
    let output = scene.predict_on(&desktop, &scene.package, NOW);
    assert_refused(&output, "license was activated on another machine");
}

#[test]
fn package_a_license_on_package_b() {
    let scene = Scene::new(None);
    let package_b = Package::slim("pkg-b", &tiny_model(2));
    scene.vendor.sell(&package_b, None);
    let copied = scene.laptop.activation(&package_b).license_path();
    fs::create_dir_all(copied.parent().unwrap()).unwrap();
    fs::copy(scene.license_path(), &copied).unwrap();
    let output = scene.predict_on(&scene.laptop, &package_b, NOW);
    let (a, b) = (
        &scene.package.manifest.package_id,
        &package_b.manifest.package_id,
    );
    assert!(
        a.starts_with("pkg-a-") && b.starts_with("pkg-b-"),
        "{a} {b}"
    );
    assert_refused(
        &output,
        &format!("license is for package {a}, not for this package ({b})"),
    );
}

#[test]
fn a_swapped_model_file() {
    let scene = Scene::new(None);
    scene.assert_runs(NOW);
    let model = scene.package.dir.join("model/model.onnx");
    fs::write(&model, tiny_model(2)).unwrap();
    assert_refused(
        &scene.predict(NOW),
        "model/model.onnx: sha256 differs from manifest.json",
    );
    // Also with the manifest's hash "fixed" to match the new model.
    let manifest_path = scene.package.dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"]["model/model.onnx"] = sha256_hex(&tiny_model(2)).into();
    fs::write(&manifest_path, manifest.to_string()).unwrap();
    assert_refused(&scene.predict(NOW), "is not one the license allows");
}

#[test]
fn an_expired_license() {
    let scene = Scene::new(Some(NOW + 10 * DAY));
    scene.assert_runs(NOW + 9 * DAY);
    assert_refused(
        &scene.predict(NOW + 11 * DAY),
        "license expired at 2026-01-11",
    );
}

#[test]
fn the_clock_set_back() {
    let scene = Scene::new(None);
    scene.assert_runs(NOW + 10 * DAY);
    // Within the day of tolerance (a clock correction) it still runs...
    scene.assert_runs(NOW + 10 * DAY - DAY / 2);
    // ...but not set back by days.
    assert_refused(&scene.predict(NOW + 7 * DAY), "is behind the latest time");
}

#[test]
fn a_changed_byte_of_the_license() {
    let scene = Scene::new(None);
    scene.assert_runs(NOW);
    let original = fs::read(scene.license_path()).unwrap();
    let body = original.iter().position(|&b| b == b'\n').unwrap() + 1;
    let end = original.len() - 40;
    // Spread over the envelope: key id, payload, signature.
    for at in [body + 5, (body + end) / 2, end - 5] {
        let mut edited = original.clone();
        edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
        fs::write(scene.license_path(), &edited).unwrap();
        let output = scene.predict(NOW);
        // Damaged armor or JSON, a signature that fails, or (an edit of the
        // key id) a key nobody trusts: each is refused before any use.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = [
            "exactly as the vendor sent it",
            "which this SDK does not trust",
        ];
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        assert!(
            said.iter().any(|s| stderr.contains(s)),
            "{}",
            describe(&output)
        );
    }
    fs::write(scene.license_path(), &original).unwrap();
    scene.assert_runs(NOW);
}
