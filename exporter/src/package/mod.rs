//! Export packages (DESIGN.md section 7): one zip per target runtime with
//! `manifest.json` (the sha256 of every other file), `model/model.onnx`,
//! the target's ONNX Runtime under `lib/`, and a README rendered for the
//! model; with an SDK build, the SDK's files (`sdk-template`'s layout).
//!
//! [`build_package`] writes one; [`Package::open`] is the one reader, which
//! checks every file against the manifest before anything is used (the SDK
//! and the server load packages through it).

mod read;
pub mod runtime;
mod write;

use std::path::PathBuf;

use semiclass_manifest::package::Target;

use crate::ExportError;

pub use read::Package;
pub use semiclass_manifest::package::package_file_name;
pub use semiclass_sdk_layout::SdkBuild;
pub use write::{Built, PackageRequest, build_package};

/// Package-relative path of the model file.
pub const MODEL_PATH: &str = "model/model.onnx";
/// Package-relative folder of the runtime libraries.
pub const LIB_DIR: &str = "lib";
/// Package-relative path of the README.
pub const README_PATH: &str = "README.md";

/// A package could not be built or opened.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("no ONNX Runtime for {target} given: {help}")]
    NoRuntime { target: Target, help: String },
    #[error("{dir}: not the ONNX Runtime of {target}: {problem}; {help}")]
    RuntimeFiles {
        dir: PathBuf,
        target: Target,
        problem: String,
        help: String,
    },
    #[error(
        "{path}: already exists; remove it, choose another --out folder, or pass --force to replace it"
    )]
    Exists { path: PathBuf },
    #[error("{path}: {message}")]
    Zip { path: PathBuf, message: String },
    #[error(transparent)]
    Sdk(#[from] semiclass_sdk_layout::LayoutError),
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: not a valid package ({}): {}", problem_count(.problems), .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

fn problem_count(problems: &[String]) -> String {
    match problems.len() {
        1 => "1 problem".into(),
        n => format!("{n} problems"),
    }
}

fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PackageError {
    let path = path.into();
    move |error| PackageError::Io { path, error }
}

/// A file under a folder being walked.
struct Walked {
    /// `/`-separated, relative to the folder.
    rel: String,
    path: PathBuf,
    /// A regular file (not a link, socket, ...).
    plain: bool,
}

/// Every non-folder entry under `root`, links not followed, sorted.
fn walk(root: &std::path::Path) -> Result<Vec<Walked>, PackageError> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            let kind = std::fs::symlink_metadata(&path)
                .map_err(io_error(&path))?
                .file_type();
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).expect("under the root");
            let rel: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            out.push(Walked {
                rel: rel.join("/"),
                path,
                plain: kind.is_file(),
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use semiclass_manifest::package::MANIFEST_FILE;

    use super::*;
    use crate::testing;

    /// A fake CPU runtime folder (the bytes do not matter to packaging).
    fn cpu_runtime(dir: &Path) -> PathBuf {
        let capi = dir.join("capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(
            capi.join("libonnxruntime.so.1.2.3"),
            b"not really a library",
        )
        .unwrap();
        std::fs::write(capi.join("__init__.py"), b"").unwrap();
        capi
    }

    fn build(dir: &Path, sdk: Option<&SdkBuild>, replace: bool) -> Result<Built, PackageError> {
        let ckpt = dir.join("lcnet_050.safetensors");
        if !ckpt.exists() {
            testing::checkpoint(dir, "lcnet_050", 32);
        }
        let runtime = cpu_runtime(dir);
        build_package(&PackageRequest {
            checkpoint: &ckpt,
            target: Target::CpuX86_64,
            out_dir: &dir.join("out"),
            runtime_dir: Some(&runtime),
            sdk,
            replace,
        })
    }

    fn unzip(zip: &Path, to: &Path) {
        let file = std::fs::File::open(zip).unwrap();
        zip::ZipArchive::new(file).unwrap().extract(to).unwrap();
    }

    #[test]
    fn a_package_round_trips_through_the_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), None, false).unwrap();
        assert_eq!(built.path, dir.path().join("out/lcnet_050-cpu-x86_64.zip"));
        let package = Package::open(&built.path).unwrap();
        let m = &package.manifest;
        assert_eq!(m, &built.manifest);
        let files: Vec<&str> = m.files.keys().map(String::as_str).collect();
        assert_eq!(
            files,
            [
                "README.md",
                "lib/libonnxruntime.so.1.2.3",
                "model/model.onnx"
            ]
        );
        assert_eq!(
            (m.runtime.version.as_str(), m.runtime.library.as_str()),
            ("1.2.3", "lib/libonnxruntime.so.1.2.3")
        );
        assert!(!m.license.required);
        assert!(m.package_id.starts_with("lcnet_050-cpu-x86_64-"));
        let model = package.model_bytes().unwrap();
        assert_eq!(crate::emit::OPSET, m.model.opset);
        assert_eq!(
            semiclass_manifest::checkpoint_file::sha256_hex(&model),
            m.files[MODEL_PATH]
        );
        let readme = String::from_utf8(package.read(README_PATH).unwrap()).unwrap();
        for fact in [
            "# lcnet_050 for cpu-x86_64",
            "| 2 | c2 |",
            "`[batch, 3, 32, 32]`",
            "ONNX Runtime 1.2.3",
        ] {
            assert!(readme.contains(fact), "{fact} not in\n{readme}");
        }
        // Unpacked, it verifies the same.
        let unpacked = dir.path().join("unpacked");
        unzip(&built.path, &unpacked);
        assert_eq!(Package::open(&unpacked).unwrap().manifest, built.manifest);
    }

    #[test]
    fn existing_packages_are_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let first = build(dir.path(), None, false).unwrap();
        let err = build(dir.path(), None, false).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        let second = build(dir.path(), None, true).unwrap();
        assert_eq!(first.path, second.path);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["lcnet_050-cpu-x86_64.zip"], "no temporary left");
    }

    #[test]
    fn changed_missing_and_unlisted_files_are_all_refused() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), None, false).unwrap();
        let root = dir.path().join("unpacked");
        unzip(&built.path, &root);
        std::fs::write(root.join(MODEL_PATH), b"swapped model").unwrap();
        std::fs::remove_file(root.join(README_PATH)).unwrap();
        std::fs::write(root.join("lib/extra.so"), b"").unwrap();
        let err = Package::open(&root).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: not a valid package (3 problems): ",
                root.display()
            )),
            "{err}"
        );
        for part in [
            "model/model.onnx: sha256 differs from manifest.json",
            "README.md: listed in manifest.json but missing",
            "lib/extra.so: not listed in manifest.json",
        ] {
            assert!(err.contains(part), "{err}");
        }
        std::fs::remove_file(root.join(MANIFEST_FILE)).unwrap();
        let err = Package::open(&root).unwrap_err().to_string();
        assert!(err.contains("no manifest.json"), "{err}");
    }

    #[test]
    fn a_tampered_zip_and_a_newer_format_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), None, false).unwrap();
        // Rebuild the zip with one entry's bytes changed.
        let root = dir.path().join("unpacked");
        unzip(&built.path, &root);
        let readme = root.join(README_PATH);
        std::fs::write(&readme, b"# edited").unwrap();
        let tampered = dir.path().join("tampered.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&tampered).unwrap());
        for w in walk(&root).unwrap() {
            zip.start_file(w.rel.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut zip, &std::fs::read(&w.path).unwrap()).unwrap();
        }
        zip.finish().unwrap();
        let err = Package::open(&tampered).unwrap_err().to_string();
        assert!(err.contains("README.md: sha256 differs"), "{err}");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(MANIFEST_FILE)).unwrap()).unwrap();
        manifest["format_version"] = 99.into();
        std::fs::write(root.join(MANIFEST_FILE), manifest.to_string()).unwrap();
        let err = Package::open(&root).unwrap_err().to_string();
        assert!(
            err.contains("package format version 99") && err.contains("newer semiclass"),
            "{err}"
        );
        std::fs::write(dir.path().join("junk.zip"), b"not a zip").unwrap();
        let err = Package::open(&dir.path().join("junk.zip"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable package zip"), "{err}");
    }

    #[test]
    fn sdk_files_join_the_package_rendered_and_require_activation() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = dir.path().join("sdk-build");
        std::fs::create_dir_all(&sdk).unwrap();
        std::fs::write(sdk.join("infer"), b"\x7fELF infer").unwrap();
        std::fs::write(sdk.join("libsemiclass_sdk.so"), b"\x7fELF lib").unwrap();
        let built = build(dir.path(), Some(&SdkBuild::shipping(&sdk)), false).unwrap();
        let package = Package::open(&built.path).unwrap();
        assert!(package.manifest.license.required);
        assert_eq!(package.read("bin/infer").unwrap(), b"\x7fELF infer");
        assert_eq!(
            package.read("lib/libsemiclass_sdk.so").unwrap(),
            b"\x7fELF lib"
        );
        let readme = String::from_utf8(package.read(README_PATH).unwrap()).unwrap();
        assert!(
            readme.contains("bin/infer activate --serial") && readme.contains("| 2 | c2 |"),
            "{readme}"
        );
        let example = String::from_utf8(package.read("examples/predict.py").unwrap()).unwrap();
        assert!(!example.contains("{{"), "{example}");
        let modes = zip_modes(&built.path);
        assert_eq!(modes["bin/infer"] & 0o777, 0o755);
        assert_eq!(modes["README.md"] & 0o777, 0o644);

        // A `cargo test` build of the SDK (its test hooks unlock any package) is refused.
        std::fs::write(
            sdk.join("infer"),
            format!("0.1.0 ({})", semiclass_sdk_layout::TEST_HOOKS_MARKER),
        )
        .unwrap();
        let err = build(dir.path(), Some(&SdkBuild::shipping(&sdk)), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("test hooks"), "{err}");
        std::fs::remove_file(sdk.join("infer")).unwrap();
        let err = build(dir.path(), Some(&SdkBuild::shipping(&sdk)), true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cargo build --release -p semiclass-sdk"),
            "{err}"
        );
    }

    fn zip_modes(zip: &Path) -> std::collections::BTreeMap<String, u32> {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
        (0..archive.len())
            .map(|i| {
                let entry = archive.by_index(i).unwrap();
                (
                    entry.name().unwrap().to_string(),
                    entry.unix_mode().unwrap_or(0),
                )
            })
            .collect()
    }
}
