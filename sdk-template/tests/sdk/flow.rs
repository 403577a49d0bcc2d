//! A user's journey: a package that refuses to run, offline activation,
//! then the same predictions from `infer`, the C example and the Python
//! example.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use semiclass_sdk_layout::{Facts, LayoutError, SdkBuild, package_files};

use crate::common::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Compiles the package's C example as its README says: into a folder
/// beside the package, since the package may hold only its listed files.
fn compile_c_example(package: &Path) -> PathBuf {
    let out = package.with_file_name("predict-example");
    fs::create_dir_all(&out).unwrap();
    let rpath = format!("-Wl,-rpath,{}", package.join("lib").display());
    let output = Command::new("cc")
        .current_dir(package)
        .args(["-I", "include", "-o", "../predict-example/predict"])
        .args(["examples/predict.c", "-L", "lib", "-lsemiclass_sdk", &rpath])
        .output()
        .expect("a C compiler (cc) must be installed");
    assert!(output.status.success(), "{}", describe(&output));
    out.join("predict")
}

fn check_json_predictions(stdout: &str, images: &[PathBuf]) {
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), images.len(), "{stdout}");
    for (class, (line, image)) in lines.iter().zip(images).enumerate() {
        assert_eq!(line["image"], image.to_str().unwrap());
        let predictions = line["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), CLASSES.len());
        assert_eq!(predictions[0]["class_id"], class);
        assert_eq!(predictions[0]["name"], CLASSES[class]);
        let score = predictions[0]["score"].as_f64().unwrap() as f32;
        assert!((score - expected_top1(4)).abs() < 1e-3, "{line}");
        let sum: f64 = predictions
            .iter()
            .map(|p| p["score"].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-4, "{line}");
    }
}

#[test]
fn activate_offline_then_predict_from_infer_c_and_python() {
    let vendor = Vendor::new();
    let package = Package::full("tiny-cpu-x86_64-0001", &tiny_model(4));
    let serial = vendor.sell(&package, None);
    let laptop = Machine::new("laptop");
    let images_dir = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = [("red.png", [255, 0, 0]), ("green.png", [0, 255, 0])]
        .into_iter()
        .chain([("blue.png", [0, 0, 255])])
        .map(|(name, rgb)| solid_png(images_dir.path(), name, rgb, 40))
        .collect();
    // bin/infer finds its package as `..`: no --package.
    let infer = package.dir.join("bin/infer");
    let run = |program: &Path, args: &[&str]| {
        let mut command = laptop.command(program, &vendor, NOW);
        command
            .current_dir(&package.dir)
            .args(args)
            .output()
            .unwrap()
    };
    let predict = |program: &Path, args: &[&str]| {
        let mut command = laptop.command(program, &vendor, NOW);
        command.current_dir(&package.dir).args(args).args(&images);
        command.output().unwrap()
    };
    let c_example = compile_c_example(&package.dir);
    let py_example = package.dir.join("examples/predict.py");

    // Not activated: every way in refuses and says how to activate.
    let info = run(&infer, &["info"]);
    assert!(info.status.success(), "{}", describe(&info));
    assert!(
        text(&info.stdout).contains("license      not valid"),
        "{}",
        describe(&info)
    );
    for refused in [
        predict(&infer, &["predict"]),
        predict(&c_example, &["."]),
        predict(Path::new("python3"), &[py_example.to_str().unwrap()]),
    ] {
        assert_refused(&refused, "infer activate --serial");
    }

    let online = run(
        &infer,
        &[
            "activate",
            "--serial",
            &serial.to_string(),
            "--server",
            "http://127.0.0.1:9",
        ],
    );
    // Nothing listens there (the online exchange itself: tests/e2e/sdk.rs).
    assert_refused(&online, "cannot reach the activation server");

    // Offline activation: request file -> vendor -> license file.
    let request = run(
        &infer,
        &["activate", "--serial", &serial.to_string(), "--offline"],
    );
    assert!(request.status.success(), "{}", describe(&request));
    let request_file = laptop.activation(&package).request_path();
    assert!(text(&request.stdout).contains(&request_file.display().to_string()));
    let license_file = images_dir.path().join("license.lic");
    fs::write(&license_file, vendor.sign(&request_file, NOW)).unwrap();
    let license = license_file.to_str().unwrap();
    let installed = run(&infer, &["activate", "--license", license]);
    assert!(
        text(&installed.stdout).contains("license installed"),
        "{}",
        describe(&installed)
    );
    let info = run(&infer, &["info"]);
    let valid = format!("valid on this machine: serial {serial}");
    assert!(text(&info.stdout).contains(&valid), "{}", describe(&info));

    // The same answers from every front end.
    let json = predict(&infer, &["predict", "--json", "--topk", "3"]);
    assert!(json.status.success(), "{}", describe(&json));
    check_json_predictions(&text(&json.stdout), &images);
    let expected = predict(&infer, &["predict"]);
    assert!(
        text(&expected.stdout).contains("1. 蓝色 blue (class 2) 0.9647"),
        "{}",
        describe(&expected)
    );
    let from_c = predict(&c_example, &["."]);
    assert!(from_c.status.success(), "{}", describe(&from_c));
    assert_eq!(text(&from_c.stdout), text(&expected.stdout));
    let from_python = predict(Path::new("python3"), &[py_example.to_str().unwrap()]);
    assert!(from_python.status.success(), "{}", describe(&from_python));
    assert_eq!(text(&from_python.stdout), text(&expected.stdout));
}

#[test]
fn a_bad_image_among_good_ones_is_reported_and_the_rest_predicted() {
    let scene = Scene::new(None);
    let red = &scene.image;
    let broken = red.with_file_name("broken.jpg");
    fs::write(&broken, b"not an image").unwrap();
    let args = [
        "predict",
        "--json",
        red.to_str().unwrap(),
        broken.to_str().unwrap(),
    ];
    let output = scene
        .laptop
        .infer(&scene.package, &scene.vendor, NOW, &args);
    assert_refused(&output, "1 of 2 images could not be classified");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("\"name\":\"red\""), "{stdout}");
    assert!(
        stdout.contains("broken.jpg") && stdout.contains("\"error\""),
        "{stdout}"
    );
}

#[test]
fn the_test_build_of_the_sdk_is_never_packaged() {
    let package = Package::slim("tiny-layout", &tiny_model(4));
    let built = infer_exe().parent().unwrap().to_path_buf();
    let build = SdkBuild::shipping(built);
    let err = package_files(&build, &Facts::from_manifest(&package.manifest)).unwrap_err();
    assert!(matches!(err, LayoutError::TestHooks { .. }), "{err}");
}
