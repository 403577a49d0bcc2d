//! A vendor, packages and machines for the tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ed25519_dalek::VerifyingKey;
use semiclass_exporter::OnnxModel;
use semiclass_exporter::package::{PackageRequest, SdkBuild, write_package};
use semiclass_license_issuer::{Issuer, IssuerDb, IssuerError, MintSpec, keys};
use semiclass_licensing::fingerprint::ComponentKind;
use semiclass_licensing::{
    ActivationDir, ActivationRequest, CheckError, DEFAULT_CLOCK_TOLERANCE_S, Environment,
    Fingerprint, Keyring, LicenseError, Serial, VerifiedPackage, verify_package,
};
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_manifest::package::{PackageManifest, Target};
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

    /// Why the database does not open.
    pub fn db_error(&self) -> IssuerError {
        match IssuerDb::open(&self.dir.path().join("issuer.sqlite")) {
            Ok(_) => panic!("the database opened"),
            Err(e) => e,
        }
    }

    /// Writes the package of a model named `name` holding `model` and
    /// registers it.
    pub fn package(&self, name: &str, model: &[u8]) -> Packaged {
        let (dir, manifest) = write_package_of(self.dir.path(), name, model, &self.keyring);
        let package = semiclass_package::Package::open(&dir).unwrap();
        self.db().add_package(&package, NOW).unwrap();
        Packaged {
            dir,
            id: manifest.package_id,
        }
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
        let request = ActivationRequest::new(serial, package, machine, &machine_key(), NOW);
        self.issuer.activate(&request, NOW).unwrap_err()
    }

    /// A new, empty activation folder (one per machine and package).
    pub fn activation_dir(&self) -> ActivationDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ActivationDir::new(self.dir.path().join(format!("activation-{n}")))
    }
}

/// An unpacked package and its id.
pub struct Packaged {
    pub dir: PathBuf,
    pub id: String,
}

/// A package of model `pkg-a` activated on `laptop` at [`NOW`] with a
/// serial that expires at `expires`: the starting point of most attacks.
pub struct Activated {
    pub vendor: Vendor,
    pub package: PathBuf,
    /// The package's id.
    pub id: String,
    pub laptop: Fingerprint,
    pub activation: ActivationDir,
}

impl Activated {
    pub fn new(expires: Option<u64>) -> Activated {
        let vendor = Vendor::new();
        let Packaged { dir: package, id } = vendor.package("pkg-a", b"model a");
        let laptop = machine("laptop", "eth");
        let serial = vendor.mint(&id, 1, expires);
        let activation = vendor.activate(&id, serial, &laptop, NOW);
        Activated {
            vendor,
            package,
            id,
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

/// The public key of a machine's activation, for requests made by hand.
pub fn machine_key() -> semiclass_licensing::sealing::PublicKey {
    semiclass_licensing::sealing::box_keypair().1
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

/// The package of a model named `name` whose ONNX file holds `model` (the
/// license checks never parse it), written by the exporter's writer with
/// the SDK's layout and unpacked under `dir`. Its runtime library and SDK
/// programs are placeholders: nothing here loads them.
pub fn write_package_of(
    dir: &Path,
    name: &str,
    model: &[u8],
    vendor_keys: &Keyring,
) -> (PathBuf, PackageManifest) {
    let placeholders = dir.join("placeholders");
    fs::create_dir_all(&placeholders).unwrap();
    for file in ["libonnxruntime.so.1.32.0", "infer", "libsemiclass_sdk.so"] {
        fs::write(placeholders.join(file), b"placeholder").unwrap();
    }
    let classes = vec!["a".to_string(), "b".to_string()];
    let preprocess = PreprocessSpec::for_input(32, [0.5; 3], [0.5; 3]);
    let meta = CheckpointMeta::untrained(name, classes, 32, preprocess, "test");
    let request = PackageRequest {
        target: Target::CpuX86_64,
        out_dir: &dir.join("zips"),
        runtime_dir: Some(&placeholders),
        sdk: Some(&SdkBuild::shipping(&placeholders)),
        vendor_keys: Some(vendor_keys),
        replace: true,
    };
    let built = write_package(&OnnxModel::prebuilt(model.to_vec(), meta), &request)
        .unwrap_or_else(|e| panic!("{e}"));
    let unpacked = dir.join(&built.manifest.package_id);
    semiclass_package::unpack(&built.path, &unpacked).unwrap();
    (unpacked, built.manifest)
}
