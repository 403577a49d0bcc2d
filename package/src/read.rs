//! [`Package::open`]: the one place a package is verified.

use std::path::{Path, PathBuf};

use semiclass_manifest::checkpoint_file::sha256_hex;
use semiclass_manifest::package::{MANIFEST_FILE, PackageManifest};

use crate::check::parse_manifest;
use crate::source::{Listing, Source};
use crate::{MAX_ENTRY_BYTES, PackageError};

/// A package whose every file was checked against its manifest.
#[derive(Debug)]
pub struct Package {
    pub manifest: PackageManifest,
    /// The zip or folder it was opened from, as given.
    pub path: PathBuf,
    /// sha256 of `manifest.json` as read: it covers every file's hash, so
    /// it names this exact package content.
    pub manifest_sha256: String,
    /// The model file's bytes exactly as hashed.
    model: Vec<u8>,
    /// The folder, for a package unpacked on disk.
    dir: Option<PathBuf>,
    /// How the model file is named in messages.
    model_path: PathBuf,
}

impl Package {
    /// Opens the zip or folder at `path` and checks it: the manifest (see
    /// [`crate::read_manifest`]), then every file: each one it lists must
    /// be there with its sha256, and nothing else may be. All file problems
    /// are reported together.
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        let mut source = Source::open(path)?;
        let manifest_bytes = source.manifest_bytes()?;
        let manifest = parse_manifest(&source.shown(MANIFEST_FILE), &manifest_bytes)?;
        let Listing {
            found,
            kept,
            mut problems,
        } = source.hash_all(&manifest.model.onnx)?;
        problems.extend(compare(&manifest, &found));
        if !problems.is_empty() {
            return Err(PackageError::Invalid {
                path: path.into(),
                problems,
            });
        }
        Ok(Package {
            manifest_sha256: sha256_hex(&manifest_bytes),
            model_path: source.shown(&manifest.model.onnx),
            manifest,
            path: path.into(),
            model: kept.expect("the model is listed and was found, so it was kept"),
            dir: source.dir().map(Path::to_path_buf),
        })
    }

    /// The ONNX model's bytes, exactly as they were hashed: give these to
    /// ONNX Runtime rather than reading the file again. An encrypted model
    /// (an SDK package's) is refused: only the SDK, with a license, opens it.
    pub fn model_bytes(&self) -> Result<&[u8], PackageError> {
        match self.manifest.model.encryption {
            Some(_) => Err(PackageError::Encrypted {
                path: self.model_path.clone(),
            }),
            None => Ok(&self.model),
        }
    }

    /// The model file's bytes as stored in the package, as hashed.
    pub fn stored_model(&self) -> &[u8] {
        &self.model
    }

    /// The stored model's bytes, giving up the package.
    pub fn into_stored_model(self) -> Vec<u8> {
        self.model
    }

    /// The bytes of the package file `rel` (e.g. `README.md`), checked
    /// against the manifest again as they are read.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, PackageError> {
        let invalid = |problem: String| PackageError::Invalid {
            path: self.path.clone(),
            problems: vec![problem],
        };
        let Some(want) = self.manifest.files.get(rel) else {
            return Err(invalid(format!("{rel}: not listed in {MANIFEST_FILE}")));
        };
        let bytes = Source::open(&self.path)?.read(rel, MAX_ENTRY_BYTES)?;
        match sha256_hex(&bytes) == *want {
            true => Ok(bytes),
            false => Err(invalid(changed(rel))),
        }
    }

    /// The ONNX Runtime library the package ships, as an absolute path, for
    /// a package unpacked into a folder (a library cannot be loaded out of
    /// a zip). It was hashed with the rest when the package was opened.
    pub fn runtime_library(&self) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let path = dir.join(&self.manifest.runtime.library);
        Some(std::path::absolute(&path).unwrap_or(path))
    }

    /// Where the model file is (`PACKAGE.zip!model/model.onnx` inside a
    /// zip), for messages.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }
}

fn changed(rel: &str) -> String {
    format!("{rel}: sha256 differs from {MANIFEST_FILE} (the file was changed or is corrupt)")
}

/// Every difference between what the manifest lists and what was found.
fn compare(
    manifest: &PackageManifest,
    found: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, want) in &manifest.files {
        match found.get(rel) {
            None => problems.push(format!("{rel}: listed in {MANIFEST_FILE} but missing")),
            Some(sha) if sha != want => problems.push(changed(rel)),
            Some(_) => {}
        }
    }
    let unlisted = found
        .keys()
        .filter(|rel| !manifest.files.contains_key(*rel));
    problems.extend(unlisted.map(|rel| format!("{rel}: not listed in {MANIFEST_FILE}")));
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use semiclass_manifest::PreprocessSpec;
    use semiclass_manifest::checkpoint::Role;
    use semiclass_manifest::package::{
        LicenseRequirement, PACKAGE_FORMAT_VERSION, PackagedModel, PackagedRuntime, Target,
    };

    use super::*;
    use crate::source::walk;
    use crate::{Content, Entry, write_zip};

    const MODEL: &str = "model/model.onnx";
    const LIBRARY: &str = "lib/libonnxruntime.so.1.2.3";

    /// What the exporter would say about a two-class model (the exporter's
    /// own tests cover how it fills these in).
    fn manifest() -> PackageManifest {
        PackageManifest {
            format_version: PACKAGE_FORMAT_VERSION,
            package_id: "tiny-cpu-x86_64-00000000".into(),
            target: Target::CpuX86_64,
            model: PackagedModel {
                arch: "tiny".into(),
                role: Role::Small,
                class_names: vec!["a".into(), "b".into()],
                input_size: 8,
                preprocess: PreprocessSpec::for_input(8, [0.5; 3], [0.5; 3]),
                onnx: MODEL.into(),
                opset: 17,
                input_name: "input".into(),
                output_name: "logits".into(),
                checkpoint_sha256: "00".repeat(32),
                encryption: None,
                precision: Default::default(),
                quantization: None,
            },
            runtime: PackagedRuntime {
                version: "1.2.3".into(),
                library: LIBRARY.into(),
                cuda: None,
            },
            license: LicenseRequirement { required: false },
            created: "2026-01-01T00:00:00Z".into(),
            files: BTreeMap::new(),
        }
    }

    fn entry(path: &str, bytes: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            content: Content::Bytes(bytes.to_vec()),
            executable: false,
        }
    }

    /// `dir/pkg.zip` holding a fake model, library and README.
    fn package_zip(dir: &Path) -> PathBuf {
        let zip = dir.join("pkg.zip");
        let entries = [
            entry(MODEL, b"onnx bytes"),
            entry(LIBRARY, b"not really a library"),
            entry("README.md", b"# read me"),
        ];
        write_zip(&zip, manifest(), &entries, false).unwrap();
        zip
    }

    /// A zip of the files under `root`, each under `prefix`.
    fn zip_folder(root: &Path, zip: &Path, prefix: &str) {
        let mut writer = zip::ZipWriter::new(std::fs::File::create(zip).unwrap());
        for w in walk(root).unwrap() {
            let name = format!("{prefix}{}", w.rel);
            writer
                .start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(&std::fs::read(&w.path).unwrap()).unwrap();
        }
        writer.finish().unwrap();
    }

    #[test]
    fn zips_and_folders_open_with_the_model_bytes_as_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let zip = package_zip(dir.path());
        let package = Package::open(&zip).unwrap();
        let files: Vec<&str> = package.manifest.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["README.md", LIBRARY, MODEL]);
        assert_eq!(package.model_bytes().unwrap(), b"onnx bytes");
        assert_eq!(package.read("README.md").unwrap(), b"# read me");
        assert_eq!(package.runtime_library(), None, "not loadable out of a zip");
        assert_eq!(
            package.model_path(),
            Path::new(&format!("{}!{MODEL}", zip.display()))
        );
        let unpacked = dir.path().join("unpacked");
        crate::unpack(&zip, &unpacked).unwrap();
        let from_dir = Package::open(&unpacked).unwrap();
        assert_eq!(from_dir.manifest, package.manifest);
        let manifest_sha = sha256_hex(&std::fs::read(unpacked.join(MANIFEST_FILE)).unwrap());
        assert_eq!(from_dir.manifest_sha256, manifest_sha);
        assert_eq!(package.manifest_sha256, manifest_sha);
        let library = from_dir.runtime_library().unwrap();
        assert!(
            library.is_absolute() && library.ends_with(LIBRARY),
            "{library:?}"
        );
        // Zipped again inside one top folder, as `zip -r pkg.zip pkg/` does.
        let nested = dir.path().join("nested.zip");
        zip_folder(&unpacked, &nested, "pkg/");
        assert_eq!(
            Package::open(&nested).unwrap().model_bytes().unwrap(),
            b"onnx bytes"
        );
    }

    #[test]
    fn changed_missing_unlisted_and_linked_files_are_all_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("unpacked");
        crate::unpack(&package_zip(dir.path()), &root).unwrap();
        std::fs::write(root.join(MODEL), b"swapped model").unwrap();
        std::fs::remove_file(root.join("README.md")).unwrap();
        std::fs::write(root.join("lib/extra.so"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("lib/link.so")).unwrap();
        let err = Package::open(&root).unwrap_err().to_string();
        let start = format!("{}: not a valid package (4 problems): ", root.display());
        assert!(err.starts_with(&start), "{err}");
        for part in [
            "model/model.onnx: sha256 differs from manifest.json",
            "README.md: listed in manifest.json but missing",
            "lib/extra.so: not listed in manifest.json",
            "lib/link.so: a link or special file",
            "re-export the package",
        ] {
            assert!(err.contains(part), "{part} not in {err}");
        }
        std::fs::remove_file(root.join(MANIFEST_FILE)).unwrap();
        let err = Package::open(&root).unwrap_err().to_string();
        assert!(err.contains("no manifest.json"), "{err}");
    }

    #[test]
    fn a_tampered_zip_a_newer_format_and_junk_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("unpacked");
        crate::unpack(&package_zip(dir.path()), &root).unwrap();
        std::fs::write(root.join("README.md"), b"# edited").unwrap();
        let tampered = dir.path().join("tampered.zip");
        zip_folder(&root, &tampered, "");
        let err = Package::open(&tampered).unwrap_err().to_string();
        assert!(err.contains("README.md: sha256 differs"), "{err}");
        // Entries beside the package's top folder are not part of it.
        let beside = dir.path().join("beside.zip");
        zip_folder(&root, &beside, "pkg/");
        let mut writer = zip::ZipWriter::new_append(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&beside)
                .unwrap(),
        )
        .unwrap();
        writer
            .start_file("evil.so", zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.finish().unwrap();
        let err = Package::open(&beside).unwrap_err().to_string();
        assert!(
            err.contains("evil.so: outside the package folder pkg/"),
            "{err}"
        );

        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(MANIFEST_FILE)).unwrap()).unwrap();
        json["format_version"] = 99.into();
        std::fs::write(root.join(MANIFEST_FILE), json.to_string()).unwrap();
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
        let err = Package::open(&dir.path().join("absent.zip")).unwrap_err();
        assert!(err.to_string().contains("absent.zip"), "{err}");
    }

    /// Writes `edit(manifest)` as the manifest of an unpacked package.
    fn edited(root: &Path, edit: impl FnOnce(&mut PackageManifest)) -> String {
        let path = root.join(MANIFEST_FILE);
        let mut manifest: PackageManifest =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut manifest);
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        Package::open(root).unwrap_err().to_string()
    }

    #[test]
    fn manifests_naming_files_outside_or_an_unlisted_runtime_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("unpacked");
        crate::unpack(&package_zip(dir.path()), &root).unwrap();
        let err = edited(&root, |m| {
            m.files.insert("../etc/passwd".into(), "00".repeat(32));
        });
        assert!(
            err.contains("\"../etc/passwd\" is outside the package"),
            "{err}"
        );
        // The library ONNX Runtime is loaded from must be a hashed package file.
        let err = edited(&root, |m| {
            m.files.remove("../etc/passwd");
            m.runtime.library = "/usr/lib/libevil.so".into();
        });
        assert!(
            err.contains(
                "the runtime library \"/usr/lib/libevil.so\" is not among the listed files"
            ),
            "{err}"
        );
        let err = edited(&root, |m| {
            m.runtime.library = LIBRARY.into();
            m.model.class_names.clear();
        });
        assert!(
            err.contains("no class names") && err.contains("re-export"),
            "{err}"
        );
        let err = edited(&root, |m| m.package_id = "../x".into());
        assert!(err.contains("not a plain name"), "{err}");
    }

    #[test]
    fn a_zip_is_written_whole_and_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let zip = package_zip(dir.path());
        let again = write_zip(&zip, manifest(), &[entry(MODEL, b"x")], false);
        let err = again.unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        let library = dir.path().join("lib.so");
        std::fs::write(&library, b"library").unwrap();
        let entries = [
            entry(MODEL, b"other"),
            Entry {
                path: LIBRARY.into(),
                content: Content::File(library),
                executable: true,
            },
        ];
        let written = write_zip(&zip, manifest(), &entries, true).unwrap();
        assert_eq!(written.files[LIBRARY], sha256_hex(b"library"));
        assert_eq!(
            Package::open(&zip).unwrap().model_bytes().unwrap(),
            b"other"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");
        let twice = [entry(MODEL, b"a"), entry(MODEL, b"b")];
        let err = write_zip(&zip, manifest(), &twice, true).unwrap_err();
        assert!(
            err.to_string().contains("two files with this package path"),
            "{err}"
        );
    }
}
