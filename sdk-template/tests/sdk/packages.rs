//! Packages for the tests, written by the exporter's writer exactly as
//! `semiclass export` writes them and unpacked: a tiny ONNX model whose
//! answers are known (tiny_model.py), the real ONNX Runtime library, and
//! the SDK's files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::SigningKey;
use semiclass_exporter::OnnxModel;
use semiclass_exporter::package::{Keyring, PackageRequest, SdkBuild, write_package};
use semiclass_licensing::sha256_hex;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_manifest::package::{PackageManifest, Target};
use tempfile::TempDir;

use crate::common::{CLASSES, SIZE};

const MODEL_SCRIPT: &str = include_str!("tiny_model.py");

/// The built `infer` (with the test hooks).
pub fn infer_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_infer"))
}

/// A file of this test build of the SDK. Cargo leaves the cdylib of a
/// `cargo test` build in `deps/` (what is next to `infer` may be an older
/// `cargo build` without the hooks), so `deps/` comes first.
pub fn built_file(name: &str) -> PathBuf {
    let dir = infer_exe().parent().unwrap().to_path_buf();
    let in_deps = dir.join("deps").join(name);
    if in_deps.exists() {
        in_deps
    } else {
        dir.join(name)
    }
}

/// The tiny model with logits `scale` x one-hot colour, cached by the
/// script's hash in cargo's test folder (each test may be its own process).
pub fn tiny_model(scale: u32) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-models");
    let key = &sha256_hex(MODEL_SCRIPT.as_bytes())[..16];
    let path = dir.join(format!("tiny-{key}-x{scale}-{SIZE}.onnx"));
    if !path.exists() {
        fs::create_dir_all(&dir).unwrap();
        let script = tempfile::Builder::new()
            .suffix(".py")
            .tempfile_in(&dir)
            .unwrap();
        fs::write(script.path(), MODEL_SCRIPT).unwrap();
        let script = script.path();
        // Tests run in threads and processes at once: each writes its own
        // file and renames it into place.
        let temp = tempfile::Builder::new()
            .tempfile_in(&dir)
            .unwrap()
            .into_temp_path();
        let status = Command::new("python3")
            .arg(script)
            .args([
                temp.to_str().unwrap(),
                &scale.to_string(),
                &SIZE.to_string(),
            ])
            .status()
            .expect("python3 with the onnx module must be on PATH (make test sets up the venv)");
        assert!(status.success(), "tiny_model.py failed");
        temp.persist(&path).unwrap();
    }
    fs::read(&path).unwrap()
}

/// The vendor key every test package's model is sealed to: packages are
/// written before (and apart from) the vendors that sell them, so every
/// test vendor signs with this key (each keeps its own database).
pub fn vendor_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn vendor_keyring() -> Keyring {
    let mut keyring = Keyring::default();
    keyring.insert(vendor_key().verifying_key());
    keyring
}

/// An unpacked package.
pub struct Package {
    pub dir: PathBuf,
    pub manifest: PackageManifest,
    _temp: TempDir,
}

impl Package {
    /// The package of `model` (model name `name`) with placeholder SDK
    /// programs: the tests run this build's `infer` on it with `--package`,
    /// so the package's own copies (hundreds of MB in a debug build) need
    /// not be real.
    pub fn slim(name: &str, model: &[u8]) -> Package {
        let temp = tempfile::tempdir().unwrap();
        let sdk = placeholder_sdk(temp.path());
        Package::write(temp, name, model, &SdkBuild::shipping(sdk))
    }

    /// [`Package::slim`] for cuda-x86_64, shipping the CUDA build of ONNX
    /// Runtime in `runtime` (the onnxruntime-gpu wheel's capi folder).
    pub fn slim_cuda(name: &str, model: &[u8], runtime: &Path) -> Package {
        let temp = tempfile::tempdir().unwrap();
        let sdk = placeholder_sdk(temp.path());
        let target = (Target::CudaX86_64, Some(runtime));
        Package::write_for(temp, name, model, &SdkBuild::shipping(sdk), target)
    }

    /// With this test build's SDK as `bin/infer` and
    /// `lib/libsemiclass_sdk.so`, for the C and Python examples.
    pub fn full(name: &str, model: &[u8]) -> Package {
        let temp = tempfile::tempdir().unwrap();
        let sdk = temp.path().join("test-sdk");
        fs::create_dir_all(&sdk).unwrap();
        for program in ["infer", "libsemiclass_sdk.so"] {
            fs::copy(built_file(program), sdk.join(program)).unwrap();
        }
        Package::write(temp, name, model, &SdkBuild::with_test_hooks(sdk))
    }

    fn write(temp: TempDir, name: &str, model: &[u8], sdk: &SdkBuild) -> Package {
        // The folder of ORT_DYLIB_PATH: the real runtime, which `infer` loads.
        Package::write_for(temp, name, model, sdk, (Target::CpuX86_64, None))
    }

    fn write_for(
        temp: TempDir,
        name: &str,
        model: &[u8],
        sdk: &SdkBuild,
        (target, runtime_dir): (Target, Option<&Path>),
    ) -> Package {
        let classes = CLASSES.map(String::from).to_vec();
        let preprocess = PreprocessSpec::for_input(SIZE, [0.5; 3], [0.5; 3]);
        let meta = CheckpointMeta::untrained(name, classes, SIZE, preprocess, "test");
        let request = PackageRequest {
            target,
            out_dir: &temp.path().join("zips"),
            runtime_dir,
            sdk: Some(sdk),
            vendor_keys: Some(&vendor_keyring()),
            replace: false,
        };
        let built = write_package(&OnnxModel::prebuilt(model.to_vec(), meta), &request)
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = temp.path().join(&built.manifest.package_id);
        semiclass_package::unpack(&built.path, &dir).unwrap();
        Package {
            dir,
            manifest: built.manifest,
            _temp: temp,
        }
    }
}

/// Placeholder SDK programs in `dir`: the tests run this build's `infer`
/// with `--package`, so the package's own copies (hundreds of MB in a debug
/// build) need not be real.
fn placeholder_sdk(dir: &Path) -> PathBuf {
    let sdk = dir.join("placeholder-sdk");
    fs::create_dir_all(&sdk).unwrap();
    for program in ["infer", "libsemiclass_sdk.so"] {
        fs::write(sdk.join(program), b"\x7fELF placeholder").unwrap();
    }
    sdk
}

/// Writes a solid `rgb` PNG of `side` px into `dir`; returns its path.
pub fn solid_png(dir: &Path, name: &str, rgb: [u8; 3], side: u32) -> PathBuf {
    let path = dir.join(name);
    image::RgbImage::from_pixel(side, side, image::Rgb(rgb))
        .save(&path)
        .unwrap();
    path
}

/// The softmax score of the winning class of a solid primary colour under
/// the model of `scale`: logits (scale, 0, 0).
pub fn expected_top1(scale: u32) -> f32 {
    let e = (scale as f32).exp();
    e / (e + 2.0)
}
