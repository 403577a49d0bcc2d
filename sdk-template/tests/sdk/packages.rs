//! Package folders as the exporter would write them, built here: a tiny
//! ONNX model whose answers are known (tiny_model.py), a manifest with the
//! sha256 of every file, the real ONNX Runtime library and the built SDK.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use semiclass_licensing::sha256_hex;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::Role;
use semiclass_manifest::package::{
    LicenseRequirement, MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest, PackagedModel,
    PackagedRuntime, Target,
};
use semiclass_sdk_layout::{Facts, SDK_FILES, Source, render};
use tempfile::TempDir;

use crate::common::{CLASSES, SIZE};

const RUNTIME: &str = "lib/libonnxruntime.so.1.32.0";
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

/// The ONNX Runtime library the packages ship (make test sets it).
pub fn runtime_library() -> PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .expect("set ORT_DYLIB_PATH to the onnxruntime wheel's libonnxruntime.so (make test does)");
    PathBuf::from(path)
}

/// A package folder.
pub struct Package {
    pub dir: PathBuf,
    pub manifest: PackageManifest,
    _temp: TempDir,
}

impl Package {
    /// Model, runtime and manifest only: what licensing checks.
    pub fn slim(id: &str, model: &[u8]) -> Package {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(id);
        fs::create_dir_all(dir.join("model")).unwrap();
        fs::create_dir_all(dir.join("lib")).unwrap();
        fs::write(dir.join("model/model.onnx"), model).unwrap();
        // A link, not a 35 MB copy; it is hashed like any file.
        symlink(runtime_library(), dir.join(RUNTIME)).unwrap();
        let mut package = Package {
            manifest: manifest(id),
            dir,
            _temp: temp,
        };
        package.write_manifest();
        package
    }

    /// A whole package: also `bin/infer`, the C library, header, examples
    /// and README, laid out as `SDK_FILES` says.
    pub fn full(id: &str, model: &[u8]) -> Package {
        let mut package = Package::slim(id, model);
        let facts = Facts::from_manifest(&package.manifest);
        for file in SDK_FILES {
            let path = package.dir.join(file.path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            match file.source {
                Source::Built(name) => drop(fs::copy(built_file(name), &path).unwrap()),
                Source::Text(text) => fs::write(&path, text).unwrap(),
                Source::Template(t) => fs::write(&path, render(t, &facts).unwrap()).unwrap(),
            }
            let mode = if file.executable { 0o755 } else { 0o644 };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        package.write_manifest();
        package
    }

    /// Lists every file with its sha256 and writes manifest.json.
    pub fn write_manifest(&mut self) {
        self.manifest.files = files_below(&self.dir, &self.dir)
            .into_iter()
            .filter(|f| f != MANIFEST_FILE)
            .map(|f| {
                let sha = sha256_hex(&fs::read(self.dir.join(&f)).unwrap());
                (f, sha)
            })
            .collect::<BTreeMap<_, _>>();
        let json = serde_json::to_string_pretty(&self.manifest).unwrap();
        fs::write(self.dir.join(MANIFEST_FILE), json).unwrap();
    }
}

fn files_below(root: &Path, dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_below(root, &path));
        } else {
            let relative = path.strip_prefix(root).unwrap();
            files.push(relative.to_str().unwrap().to_string());
        }
    }
    files
}

fn manifest(id: &str) -> PackageManifest {
    let model = PackagedModel {
        arch: "tiny_colour_net".into(),
        role: Role::Small,
        class_names: CLASSES.map(String::from).to_vec(),
        input_size: SIZE,
        preprocess: PreprocessSpec::for_input(SIZE, [0.5; 3], [0.5; 3]),
        onnx: "model/model.onnx".into(),
        opset: 17,
        input_name: "input".into(),
        output_name: "logits".into(),
        checkpoint_sha256: "00".repeat(32),
    };
    PackageManifest {
        format_version: PACKAGE_FORMAT_VERSION,
        package_id: id.into(),
        target: Target::CpuX86_64,
        model,
        runtime: PackagedRuntime {
            version: "1.32.0".into(),
            library: RUNTIME.into(),
        },
        license: LicenseRequirement { required: true },
        created: "2026-01-01T00:00:00Z".into(),
        files: BTreeMap::new(),
    }
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
