//! A vendor, packages and machines for the tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ed25519_dalek::VerifyingKey;
use semiclass_license_issuer::{Issuer, IssuerDb, IssuerError, MintSpec, keys};
use semiclass_licensing::fingerprint::ComponentKind;
use semiclass_licensing::{
    ActivationDir, ActivationRequest, CheckError, DEFAULT_CLOCK_TOLERANCE_S, Environment,
    Fingerprint, Keyring, LicenseError, Serial, VerifiedPackage, sha256_hex, verify_package,
};
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::Role;
use semiclass_manifest::package::{
    LicenseRequirement, MANIFEST_FILE, PACKAGE_FORMAT_VERSION, PackageManifest, PackagedModel,
    PackagedRuntime, Target,
};
use tempfile::TempDir;

/// 2026-01-01T00:00:00Z: the tests' "now".
pub const NOW: u64 = 1_767_225_600;
pub const DAY: u64 = 86_400;

/// A vendor: signing key, database, and the keyring an SDK would trust.
pub struct Vendor {
    pub dir: TempDir,
    pub issuer: Issuer,
    pub keyring: Keyring,
    pub public: VerifyingKey,
}

impl Vendor {
    pub fn new() -> Vendor {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate();
        let mut keyring = Keyring::default();
        keyring.insert(key.verifying_key());
        let issuer = Issuer::new(&dir.path().join("issuer.sqlite"), key.clone()).unwrap();
        Vendor {
            dir,
            issuer,
            keyring,
            public: key.verifying_key(),
        }
    }

    pub fn db(&self) -> IssuerDb {
        IssuerDb::open(&self.dir.path().join("issuer.sqlite")).unwrap()
    }

    /// Writes a package folder holding `model` and registers it.
    pub fn package(&self, name: &str, model: &[u8]) -> PathBuf {
        let dir = self.dir.path().join(name);
        let manifest = write_package(&dir, name, model);
        let sha = &manifest.files[&manifest.model.onnx];
        self.db()
            .add_package(&manifest.package_id, std::slice::from_ref(sha), NOW)
            .unwrap();
        dir
    }

    /// A fresh serial for `package`.
    pub fn mint(&self, package: &str, max_activations: u32, expires: Option<u64>) -> Serial {
        let spec = MintSpec {
            package_id: package.to_string(),
            max_activations,
            expires,
        };
        self.db().mint(&spec, 1, NOW).unwrap()[0]
    }

    /// The machine's environment at `now`, trusting this vendor's key.
    pub fn env(&self, machine: &Fingerprint, now: u64) -> Environment {
        environment(&self.keyring, machine, now)
    }

    /// The offline flow: the machine writes a request, the vendor signs it,
    /// the machine installs the license. Returns the activation folder.
    pub fn activate(
        &self,
        package: &str,
        serial: Serial,
        machine: &Fingerprint,
        now: u64,
    ) -> ActivationDir {
        let activation = self.activation_dir();
        let request = activation.begin(serial, package, machine, now).unwrap();
        let license = self.issuer.activate(&request, now).unwrap();
        activation
            .install(&license, &self.env(machine, now))
            .unwrap();
        activation
    }

    /// Why the issuer refuses to activate `serial` for `package` on `machine`.
    pub fn refusal(&self, package: &str, serial: Serial, machine: &Fingerprint) -> IssuerError {
        let request = ActivationRequest::new(serial, package, machine, NOW);
        self.issuer.activate(&request, NOW).unwrap_err()
    }

    /// A new, empty activation folder (one per machine and package).
    pub fn activation_dir(&self) -> ActivationDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ActivationDir::new(self.dir.path().join(format!("activation-{n}")))
    }
}

/// A package `pkg-a` activated on `laptop` at [`NOW`] with a serial that
/// expires at `expires`: the starting point of most attacks.
pub struct Activated {
    pub vendor: Vendor,
    pub package: PathBuf,
    pub laptop: Fingerprint,
    pub activation: ActivationDir,
}

impl Activated {
    pub fn new(expires: Option<u64>) -> Activated {
        let vendor = Vendor::new();
        let package = vendor.package("pkg-a", b"model a");
        let laptop = machine("laptop", "eth");
        let serial = vendor.mint("pkg-a", 1, expires);
        let activation = vendor.activate("pkg-a", serial, &laptop, NOW);
        Activated {
            vendor,
            package,
            laptop,
            activation,
        }
    }

    /// The license's refusal of the package on `machine` at `now`.
    pub fn refusal(&self, machine: &Fingerprint, now: u64) -> LicenseError {
        match self.verify(machine, now) {
            Err(CheckError::License(err)) => err,
            other => panic!("expected a license refusal, got {other:?}"),
        }
    }

    pub fn verify(&self, machine: &Fingerprint, now: u64) -> Result<VerifiedPackage, CheckError> {
        verify_package(
            &self.package,
            &self.activation,
            &self.vendor.env(machine, now),
        )
    }
}

pub fn environment(keyring: &Keyring, machine: &Fingerprint, now: u64) -> Environment {
    Environment {
        keyring: keyring.clone(),
        machine: Box::new(machine.clone()),
        now,
        clock_tolerance_s: DEFAULT_CLOCK_TOLERANCE_S,
    }
}

/// A machine with a machine-id and two NICs; `nic` renames the second NIC.
pub fn machine(name: &str, nic: &str) -> Fingerprint {
    let id = format!("machine-id-of-{name}");
    let mac1 = format!("mac-1-of-{name}");
    let mac2 = format!("mac-2-of-{name}-{nic}");
    Fingerprint::from_raw([
        (ComponentKind::MachineId, id.as_str()),
        (ComponentKind::Mac, &mac1),
        (ComponentKind::Mac, &mac2),
    ])
    .unwrap()
}

/// A package folder as the exporter writes it, with a fake model.
pub fn write_package(dir: &Path, package_id: &str, model: &[u8]) -> PackageManifest {
    fs::create_dir_all(dir.join("model")).unwrap();
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::write(dir.join("model/model.onnx"), model).unwrap();
    fs::write(dir.join("lib/libonnxruntime.so.1"), b"runtime").unwrap();
    let files = ["model/model.onnx", "lib/libonnxruntime.so.1"]
        .into_iter()
        .map(|f| (f.to_string(), sha256_hex(&fs::read(dir.join(f)).unwrap())))
        .collect::<BTreeMap<_, _>>();
    let manifest = manifest(package_id, files);
    fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    manifest
}

fn manifest(package_id: &str, files: BTreeMap<String, String>) -> PackageManifest {
    let model = PackagedModel {
        arch: "lcnet_050".into(),
        role: Role::Small,
        class_names: vec!["a".into(), "b".into()],
        input_size: 32,
        preprocess: PreprocessSpec::for_input(32, [0.5; 3], [0.5; 3]),
        onnx: "model/model.onnx".into(),
        opset: 17,
        input_name: "input".into(),
        output_name: "logits".into(),
        checkpoint_sha256: "00".repeat(32),
    };
    PackageManifest {
        format_version: PACKAGE_FORMAT_VERSION,
        package_id: package_id.into(),
        target: Target::CpuX86_64,
        model,
        runtime: PackagedRuntime {
            version: "1.22.0".into(),
            library: "lib/libonnxruntime.so.1".into(),
        },
        license: LicenseRequirement { required: true },
        created: "2026-01-01T00:00:00Z".into(),
        files,
    }
}
