//! Export packages (DESIGN.md section 7): one zip per target runtime with
//! `manifest.json` (the sha256 of every other file), `model/model.onnx`,
//! the target's ONNX Runtime under `lib/`, and a README rendered for the
//! model; with an SDK build, the SDK's files (`sdk-template`'s layout).
//!
//! [`build_package`] exports a checkpoint and packages it; [`write_package`]
//! packages an ONNX model already in memory (tests of the programs that load
//! packages build theirs with it, so they meet the exporter's layout).
//! Reading and verifying a package is `semiclass-package`'s
//! [`Package::open`], the one reader the SDK and the server use too; the zip
//! itself is written by its [`semiclass_package::write_zip`].

mod cuda_needs;
pub mod runtime;
mod write;

use std::path::PathBuf;

use semiclass_manifest::package::Target;

use crate::ExportError;

pub use semiclass_licensing::Keyring;
pub use semiclass_manifest::package::package_file_name;
pub use semiclass_package::Package;
pub use semiclass_sdk_layout::SdkBuild;
pub use write::{Built, PackageRequest, build_int8_package, build_package, write_package};

/// Package-relative path of the model file.
pub const MODEL_PATH: &str = "model/model.onnx";
/// Package-relative folder of the runtime libraries.
pub const LIB_DIR: &str = "lib";
/// Package-relative path of the README.
pub const README_PATH: &str = "README.md";

/// A package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Package(#[from] semiclass_package::PackageError),
    #[error("no ONNX Runtime for {target} given: {help}")]
    NoRuntime { target: Target, help: String },
    #[error("{dir}: not the ONNX Runtime of {target}: {problem}; {help}")]
    RuntimeFiles {
        dir: PathBuf,
        target: Target,
        problem: String,
        help: String,
    },
    #[error("{path}: cannot read the runtime library: {reason}; re-fetch the onnxruntime-gpu wheel (make ort-gpu)", path = path.display())]
    RuntimeLibrary { path: PathBuf, reason: String },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Sdk(#[from] semiclass_sdk_layout::LayoutError),
    #[error(
        "a package with the SDK encrypts its model to the vendor's license keys, and this build has none: make one with `semiclass-license keygen --keyring FILE`, then build with SEMICLASS_LICENSE_KEYRING=FILE (make demo does) or pass --keyring FILE; or export --without-sdk for a server"
    )]
    NoVendorKey,
    #[error("the model could not be encrypted: {0}")]
    Encrypt(String),
    #[error(transparent)]
    Int8(#[from] crate::int8::Int8Error),
    #[error("int8 packages are built for cpu-x86_64 only, not {target}; export {target} in fp32")]
    Int8Target { target: Target },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ed25519_dalek::SigningKey;
    use semiclass_licensing::Keyring;
    use semiclass_licensing::sealing::{
        VENDOR_KEY_CONTEXT, decrypt_model, open_content_key, vendor_box_secret,
    };

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

    /// The vendor of the tests' SDK packages.
    fn vendor() -> SigningKey {
        SigningKey::from_bytes(&[4; 32])
    }

    fn build(dir: &Path, sdk: Option<&SdkBuild>, replace: bool) -> Result<Built, PackageError> {
        let mut keys = Keyring::default();
        keys.insert(vendor().verifying_key());
        build_with_keys(dir, sdk, Some(&keys), replace)
    }

    fn build_with_keys(
        dir: &Path,
        sdk: Option<&SdkBuild>,
        vendor_keys: Option<&Keyring>,
        replace: bool,
    ) -> Result<Built, PackageError> {
        let ckpt = dir.join("lcnet_050.safetensors");
        if !ckpt.exists() {
            testing::checkpoint(dir, "lcnet_050", 32);
        }
        let runtime = cpu_runtime(dir);
        build_package(
            &ckpt,
            &PackageRequest {
                target: Target::CpuX86_64,
                out_dir: &dir.join("out"),
                runtime_dir: Some(&runtime),
                sdk,
                vendor_keys,
                replace,
            },
        )
    }

    #[test]
    fn a_package_round_trips_through_the_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), None, false).unwrap();
        assert_eq!(built.path, dir.path().join("out/lcnet_050-cpu-x86_64.zip"));
        let package = Package::open(&built.path).unwrap();
        let m = &package.manifest;
        // Listed: the runtime library is loaded from the package (issue 16).
        assert!(m.files.contains_key(&m.runtime.library));
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
            semiclass_manifest::checkpoint_file::sha256_hex(model),
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
        semiclass_package::unpack(&built.path, &unpacked).unwrap();
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
        assert_model_is_encrypted_to_the_vendor(&package, dir.path());
        let err = build_with_keys(dir.path(), Some(&SdkBuild::shipping(&sdk)), None, true);
        assert!(matches!(err, Err(PackageError::NoVendorKey)), "{err:?}");
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

    /// The model file is not the model: only the vendor's key opens its
    /// content key, which decrypts it to what the exporter made.
    fn assert_model_is_encrypted_to_the_vendor(package: &Package, dir: &Path) {
        let onnx = crate::export_checkpoint(&dir.join("lcnet_050.safetensors"))
            .unwrap()
            .bytes;
        let m = &package.manifest;
        assert_eq!(m.format_version, 2);
        let encryption = m
            .model
            .encryption
            .as_ref()
            .expect("an SDK package is encrypted");
        let stored = package.read(MODEL_PATH).unwrap();
        assert_ne!(stored, onnx);
        assert!(matches!(
            package.model_bytes(),
            Err(semiclass_package::PackageError::Encrypted { .. })
        ));
        let sealed = &encryption.vendor_keys[0].sealed;
        let key = open_content_key(&vendor_box_secret(&vendor()), sealed, VENDOR_KEY_CONTEXT);
        let opened = decrypt_model(&stored, encryption, &key.unwrap()).unwrap();
        assert_eq!(opened, onnx);
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
