//! `semiclass export`: a trained checkpoint becomes a package whose model
//! runs on the ONNX Runtime library shipped inside it.

use std::path::{Path, PathBuf};

use semiclass_exporter::package::Package;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};

use crate::common::{TinyDataset, semiclass};

/// Trains lcnet_050 at 32 px for one epoch per stage; returns the best checkpoint.
fn trained_checkpoint(data: &TinyDataset, runs: &Path) -> PathBuf {
    let dir = format!("run.dir={}", runs.display());
    let mut args = vec!["train", "--mode", "large", "--data", data.arg(), "-o", &dir];
    for o in [
        "run.name=export",
        "run.device=cpu",
        "data.workers=1",
        "large.model=lcnet_050",
        "large.input_size=32",
        "large.epochs=1",
        "large.ssl.epochs=1",
        "large.batch_size=4",
        "large.ssl.mu=1",
    ] {
        args.extend(["-o", o]);
    }
    let run = semiclass(&args);
    assert_eq!(run.code, 0, "{}", run.all());
    runs.join("export/checkpoints/best.safetensors")
}

/// Loads the package's own ONNX Runtime and runs its model on one image.
fn predict_with_packaged_runtime(unpacked: &Path, package: &Package, image: &[u8]) -> Vec<f32> {
    let m = &package.manifest;
    let env = ort::init_from(unpacked.join(&m.runtime.library))
        .expect("the packaged library loads")
        .build()
        .expect("environment");
    let mut builder = ort::session::Session::builder(&env).unwrap();
    let mut session = builder
        .commit_from_memory(package.model_bytes().unwrap())
        .unwrap();
    let x = preprocess_bytes(image, DecodeLimits::default(), &m.model.preprocess).unwrap();
    let shape = [1, x.shape[0], x.shape[1], x.shape[2]].map(|d| d as i64);
    let input = ort::value::Tensor::from_array((shape, x.data)).unwrap();
    let outputs = session
        .run(ort::inputs![m.model.input_name.as_str() => input])
        .unwrap();
    let (shape, logits) = outputs[m.model.output_name.as_str()]
        .try_extract_tensor::<f32>()
        .unwrap();
    assert_eq!(**shape, [1, 2]);
    logits.to_vec()
}

#[test]
fn a_checkpoint_exports_to_a_package_that_runs_on_its_own_runtime() {
    let data = TinyDataset::new();
    let runs = tempfile::tempdir().unwrap();
    let ckpt = trained_checkpoint(&data, runs.path());
    let out = tempfile::tempdir().unwrap();
    let export = |target: &str, extra: &[&str]| {
        let mut args = vec!["export", ckpt.to_str().unwrap(), "--target", target];
        args.extend(["--out", out.path().to_str().unwrap()]);
        args.extend(extra);
        semiclass(&args)
    };
    // With the SDK the model is encrypted to the vendor's keys: an empty
    // keyring is refused, saying where keys come from.
    let empty = runs.path().join("empty-keyring.json");
    std::fs::write(&empty, "[]").unwrap();
    let keyless = export("cpu-x86_64", &["--keyring", empty.to_str().unwrap()]);
    assert_eq!(keyless.code, 2, "{}", keyless.all());
    assert!(
        keyless.stderr.contains("semiclass-license keygen"),
        "{}",
        keyless.stderr
    );
    let vendor = crate::sdk::Vendor::new(runs.path());
    let keyring = vendor.keyring.to_str().unwrap();
    // The SDK next to this test build has test hooks, which would let anyone
    // unlock the package: the exporter refuses to ship it. (sdk.rs packages
    // it on purpose, through the library.)
    let hooked = export("cpu-x86_64", &["--keyring", keyring]);
    assert_eq!(hooked.code, 2, "{}", hooked.all());
    assert!(
        hooked.stderr.contains("test hooks") && hooked.stderr.contains("cargo build --release"),
        "{}",
        hooked.stderr
    );
    let run = export("cpu-x86_64", &["--without-sdk"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let zip = out.path().join("lcnet_050-cpu-x86_64.zip");
    assert!(
        run.stdout.starts_with(&zip.display().to_string()),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("lcnet_050 (2 classes, 32 px) for cpu-x86_64"),
        "{}",
        run.stdout
    );

    let package = Package::open(&zip).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package.manifest.model.class_names, ["cat", "dog"]);
    let unpacked = out.path().join("unpacked");
    semiclass_package::unpack(&zip, &unpacked).unwrap();
    let image = std::fs::read(data.path().join("images/v0.png")).unwrap();
    let logits = predict_with_packaged_runtime(&unpacked, &package, &image);
    assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");

    let again = export("cpu-x86_64", &["--without-sdk"]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("--force"),
        "{}",
        again.stderr
    );
    assert_eq!(export("cpu-x86_64", &["--without-sdk", "--force"]).code, 0);

    // The CUDA target refuses the CPU build and says where the GPU one comes from.
    let cpu_runtime = unpacked.join("lib");
    let runtime_dir = cpu_runtime.to_str().unwrap();
    let cuda = export(
        "cuda-x86_64",
        &["--without-sdk", "--runtime-dir", runtime_dir],
    );
    assert_eq!(cuda.code, 2, "{}", cuda.all());
    for part in [
        "no libonnxruntime_providers_cuda.so",
        "pip download onnxruntime-gpu",
    ] {
        assert!(cuda.stderr.contains(part), "{}", cuda.stderr);
    }
}

#[test]
fn missing_checkpoints_and_unknown_targets_are_explained() {
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("missing.safetensors");
    let run = semiclass(&[
        "export",
        missing.to_str().unwrap(),
        "--target",
        "cpu-x86_64",
    ]);
    assert_eq!(run.code, 2, "{}", run.all());
    let expected = format!("{}: no such checkpoint file", missing.display());
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    let run = semiclass(&["export", missing.to_str().unwrap(), "--target", "tpu"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let expected = "unknown target 'tpu'; one of cpu-x86_64, cuda-x86_64";
    assert!(run.stderr.contains(expected), "{}", run.stderr);
}
