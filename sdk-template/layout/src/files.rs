//! Which SDK files go where in a package, and where they come from: the
//! built `infer` and `libsemiclass_sdk.so` from a cargo build folder, the
//! header as written, the README and examples rendered per package.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::facts::Facts;
use crate::render::{RenderError, render};

/// Found in an SDK built with its `test-hooks` feature (its version
/// string), whose clock, machine and keys can be replaced from the
/// environment. Such a build must never be packaged.
pub const TEST_HOOKS_MARKER: &str = "semiclass-sdk-test-hooks-enabled";

/// Where a package file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file of that name in the cargo build folder (`target/release`).
    Built(&'static str),
    /// Copied as is.
    Text(&'static str),
    /// Rendered with the package's [`Facts`].
    Template(&'static str),
}

/// One SDK file of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkFile {
    /// Package-relative path.
    pub path: &'static str,
    pub source: Source,
    pub executable: bool,
}

/// Every SDK file of a package (the exporter adds the manifest, the model
/// and the ONNX Runtime library).
pub const SDK_FILES: &[SdkFile] = &[
    SdkFile {
        path: "bin/infer",
        source: Source::Built("infer"),
        executable: true,
    },
    SdkFile {
        path: "lib/libsemiclass_sdk.so",
        source: Source::Built("libsemiclass_sdk.so"),
        executable: false,
    },
    SdkFile {
        path: "include/semiclass_sdk.h",
        source: Source::Text(include_str!("../../include/semiclass_sdk.h")),
        executable: false,
    },
    SdkFile {
        path: "examples/predict.c",
        source: Source::Template(include_str!("../../templates/examples/predict.c")),
        executable: false,
    },
    SdkFile {
        path: "examples/predict.py",
        source: Source::Template(include_str!("../../templates/examples/predict.py")),
        executable: true,
    },
    SdkFile {
        path: "README.md",
        source: Source::Template(include_str!("../../templates/README.md")),
        executable: false,
    },
];

/// One file to write into a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// Package-relative path.
    pub path: String,
    pub bytes: Vec<u8>,
    /// Mode 0755 rather than 0644.
    pub executable: bool,
}

/// Why the SDK files could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {source}: build the SDK first (`cargo build --release -p semiclass-sdk`)", path = path.display())]
    Missing { path: PathBuf, source: io::Error },
    #[error("{path}: this SDK build has test hooks (a `cargo test` build) that let anyone bypass the license: rebuild with `cargo build --release -p semiclass-sdk` and package that", path = path.display())]
    TestHooks { path: PathBuf },
    #[error("{file}: {source}")]
    Render { file: String, source: RenderError },
}

/// Where the built SDK files (`infer`, `libsemiclass_sdk.so`) are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkBuild {
    /// The cargo build folder, e.g. `target/release`.
    pub dir: PathBuf,
    test_hooks_allowed: bool,
}

impl SdkBuild {
    /// A build to ship: one with test hooks is refused.
    pub fn shipping(dir: impl Into<PathBuf>) -> SdkBuild {
        SdkBuild {
            dir: dir.into(),
            test_hooks_allowed: false,
        }
    }

    /// A `cargo test` build, accepted for tests of the packaging path
    /// itself: anyone can unlock a package made from it through the hooks'
    /// variables, so nothing but a test may ever ask for this.
    pub fn with_test_hooks(dir: impl Into<PathBuf>) -> SdkBuild {
        SdkBuild {
            dir: dir.into(),
            test_hooks_allowed: true,
        }
    }
}

/// The README of a package without the SDK (a model for a server or for
/// the user's own ONNX Runtime code): nothing to activate.
pub fn model_only_readme(facts: &Facts) -> Result<String, LayoutError> {
    render(MODEL_ONLY_README, facts).map_err(|source| LayoutError::Render {
        file: "README.md".to_string(),
        source,
    })
}

const MODEL_ONLY_README: &str = include_str!("../../templates/README-model-only.md");

/// The SDK files of a package: built ones read from `build.dir`, templates
/// rendered with `facts`. Refuses a build that has test hooks unless
/// `build` allows them.
pub fn package_files(build: &SdkBuild, facts: &Facts) -> Result<Vec<PackageFile>, LayoutError> {
    SDK_FILES
        .iter()
        .map(|file| {
            let bytes = match file.source {
                Source::Built(name) => read_built(&build.dir.join(name), build.test_hooks_allowed)?,
                Source::Text(text) => text.as_bytes().to_vec(),
                Source::Template(template) => render(template, facts)
                    .map_err(|source| LayoutError::Render {
                        file: file.path.to_string(),
                        source,
                    })?
                    .into_bytes(),
            };
            Ok(PackageFile {
                path: file.path.to_string(),
                bytes,
                executable: file.executable,
            })
        })
        .collect()
}

fn read_built(path: &Path, test_hooks_allowed: bool) -> Result<Vec<u8>, LayoutError> {
    let bytes = fs::read(path).map_err(|source| LayoutError::Missing {
        path: path.to_path_buf(),
        source,
    })?;
    let marker = TEST_HOOKS_MARKER.as_bytes();
    if !test_hooks_allowed && bytes.windows(marker.len()).any(|w| w == marker) {
        return Err(LayoutError::TestHooks {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The cargo build folder of the running program (`target/release` for a
/// release exporter), where the SDK built alongside it lies.
pub fn sdk_build_dir() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Test and bench binaries live one level down, in `deps/`.
    let dir = exe.parent().unwrap_or(Path::new("."));
    Ok(match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_dir(infer: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("infer"), infer).unwrap();
        fs::write(dir.path().join("libsemiclass_sdk.so"), b"\x7fELF sdk").unwrap();
        dir
    }

    fn facts() -> Facts {
        let mut facts = Facts::default();
        let names = [
            "package_id",
            "target",
            "arch",
            "role",
            "num_classes",
            "class_table",
            "input_size",
            "input_name",
            "output_name",
            "opset",
            "resize",
            "crop",
            "interpolation",
            "mean",
            "std",
            "runtime_version",
            "runtime_library",
            "sdk_version",
            "onnx_path",
            "checkpoint_sha256",
            "created",
            "pip_package",
            "runtime_note",
            "precision_section",
        ];
        for name in names {
            facts.insert(name, &format!("<{name}>"));
        }
        facts
    }

    #[test]
    fn every_sdk_file_is_placed_and_rendered() {
        let dir = build_dir(b"\x7fELF infer");
        let files = package_files(&SdkBuild::shipping(dir.path()), &facts()).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, SDK_FILES.iter().map(|f| f.path).collect::<Vec<_>>());
        assert_eq!(files[0].bytes, b"\x7fELF infer");
        assert!(files[0].executable && !files[1].executable);
        for file in &files {
            let text = String::from_utf8_lossy(&file.bytes);
            assert!(!text.contains("{{package_id}}"), "{}", file.path);
        }
        let readme = String::from_utf8(files.last().unwrap().bytes.clone()).unwrap();
        assert!(readme.contains("<package_id>") && readme.contains("<class_table>"));
        let model_only = model_only_readme(&facts()).unwrap();
        assert!(
            model_only.contains("<onnx_path>") && model_only.contains("nothing needs activating")
        );
    }

    #[test]
    fn a_build_with_test_hooks_or_none_is_refused() {
        let mut infer = b"\x7fELF ".to_vec();
        infer.extend_from_slice(format!("0.1.0 ({TEST_HOOKS_MARKER}: x)").as_bytes());
        let dir = build_dir(&infer);
        let err = package_files(&SdkBuild::shipping(dir.path()), &facts()).unwrap_err();
        assert!(matches!(err, LayoutError::TestHooks { .. }), "{err}");
        let for_tests = package_files(&SdkBuild::with_test_hooks(dir.path()), &facts()).unwrap();
        assert_eq!(for_tests[0].bytes, infer);
        let empty = tempfile::tempdir().unwrap();
        let err = package_files(&SdkBuild::shipping(empty.path()), &facts()).unwrap_err();
        assert!(err.to_string().contains("cargo build --release"), "{err}");
    }
}
