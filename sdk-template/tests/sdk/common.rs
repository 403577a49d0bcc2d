//! A vendor, machines, an activated package and the `infer` binary for
//! the tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use semiclass_license_issuer::{Issuer, IssuerDb, MintSpec};
use semiclass_licensing::fingerprint::ComponentKind;
use semiclass_licensing::{
    ActivationDir, ActivationRequest, DEFAULT_CLOCK_TOLERANCE_S, Environment, Fingerprint, Keyring,
    PublicKeyEntry, Serial,
};
use semiclass_sdk::ACTIVATIONS_DIR;
use tempfile::TempDir;

pub use crate::packages::*;

/// 2026-01-01T00:00:00Z: the tests' "now".
pub const NOW: u64 = 1_767_225_600;
pub const DAY: u64 = 86_400;
pub const CLASSES: [&str; 3] = ["red", "green", "蓝色 blue"];
pub const SIZE: u32 = 32;

/// A vendor: its key (trusted through the keyring file), issuer database.
pub struct Vendor {
    pub dir: TempDir,
    pub issuer: Issuer,
    pub keyring: Keyring,
    pub keyring_file: PathBuf,
}

impl Vendor {
    pub fn new() -> Vendor {
        let dir = tempfile::tempdir().unwrap();
        let key = vendor_key();
        let mut keyring = Keyring::default();
        keyring.insert(key.verifying_key());
        let keyring_file = dir.path().join("keyring.json");
        let entries = [PublicKeyEntry::new(&key.verifying_key())];
        fs::write(&keyring_file, serde_json::to_string(&entries).unwrap()).unwrap();
        let issuer = Issuer::new(&dir.path().join("issuer.sqlite"), key).unwrap();
        Vendor {
            dir,
            issuer,
            keyring,
            keyring_file,
        }
    }

    fn db(&self) -> IssuerDb {
        IssuerDb::open(&self.dir.path().join("issuer.sqlite")).unwrap()
    }

    /// Registers `package` and mints a serial for it.
    pub fn sell(&self, package: &Package, expires: Option<u64>) -> Serial {
        let id = &package.manifest.package_id;
        let opened = semiclass_package::Package::open(&package.dir).unwrap();
        self.db().add_package(&opened, NOW).unwrap();
        let spec = MintSpec {
            package_id: id.clone(),
            max_activations: 3,
            expires,
        };
        self.db().mint(&spec, 1, NOW).unwrap()[0]
    }

    /// `semiclass-license sign-request`: the license text for a request file.
    pub fn sign(&self, request_file: &Path, now: u64) -> String {
        let request = ActivationRequest::from_json(&fs::read_to_string(request_file).unwrap());
        self.issuer.activate(&request.unwrap(), now).unwrap()
    }

    /// The offline activation of `package` on `machine` at `now`, done with
    /// the library (the CLI flow has its own test).
    pub fn activate(&self, package: &Package, machine: &Machine, serial: Serial, now: u64) {
        let activation = machine.activation(package);
        let id = &package.manifest.package_id;
        let request = activation
            .begin(serial, id, &machine.fingerprint, now)
            .unwrap();
        let license = self.issuer.activate(&request, now).unwrap();
        let env = Environment {
            keyring: self.keyring.clone(),
            machine: Box::new(machine.fingerprint.clone()),
            now,
            clock_tolerance_s: DEFAULT_CLOCK_TOLERANCE_S,
        };
        activation.install(&license, &env).unwrap();
    }
}

/// A machine (fingerprint) with its user's data folder.
pub struct Machine {
    pub fingerprint: Fingerprint,
    pub home: TempDir,
}

impl Machine {
    pub fn new(name: &str) -> Machine {
        let (id, mac) = (format!("machine-id-{name}"), format!("mac-{name}"));
        let fingerprint = Fingerprint::from_raw([
            (ComponentKind::MachineId, id.as_str()),
            (ComponentKind::Mac, mac.as_str()),
        ])
        .unwrap();
        Machine {
            fingerprint,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Where `infer` keeps `package`'s activation by default on this machine.
    pub fn activation(&self, package: &Package) -> ActivationDir {
        let id = &package.manifest.package_id;
        ActivationDir::new(self.home.path().join(ACTIVATIONS_DIR).join(id))
    }

    /// `program` run as this machine at `now`, trusting `vendor`'s key.
    pub fn command(&self, program: &Path, vendor: &Vendor, now: u64) -> Command {
        let mut command = Command::new(program);
        let components = serde_json::to_string(self.fingerprint.components()).unwrap();
        // As on a user's machine: no build folder on the library path
        // (cargo's test runner puts target/debug there, whose
        // libsemiclass_sdk.so is not this test build's).
        command
            .env_remove("LD_LIBRARY_PATH")
            .env("XDG_DATA_HOME", self.home.path())
            .env("SEMICLASS_TEST_KEYRING", &vendor.keyring_file)
            .env("SEMICLASS_TEST_MACHINE", components)
            .env("SEMICLASS_TEST_NOW", now.to_string());
        command
    }

    /// `infer --package DIR ARGS...` as this machine at `now`.
    pub fn infer(&self, package: &Package, vendor: &Vendor, now: u64, args: &[&str]) -> Output {
        self.command(&infer_exe(), vendor, now)
            .arg("--package")
            .arg(&package.dir)
            .args(args)
            .output()
            .unwrap()
    }
}

/// stdout and stderr as text, with the exit code, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that `output` is a refusal (exit 2) whose message has `needle`.
pub fn assert_refused(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(output));
    assert!(
        stderr.contains(needle),
        "expected {needle:?}\n{}",
        describe(output)
    );
}

/// A package activated on a laptop at [`NOW`], and an image to classify.
pub struct Scene {
    pub vendor: Vendor,
    pub package: Package,
    pub laptop: Machine,
    pub image: PathBuf,
    _images: tempfile::TempDir,
}

impl Scene {
    pub fn new(expires: Option<u64>) -> Scene {
        let vendor = Vendor::new();
        let package = Package::slim("pkg-a", &tiny_model(4));
        let serial = vendor.sell(&package, expires);
        let laptop = Machine::new("laptop");
        vendor.activate(&package, &laptop, serial, NOW);
        let images = tempfile::tempdir().unwrap();
        let image = solid_png(images.path(), "red.png", [255, 0, 0], 32);
        Scene {
            vendor,
            package,
            laptop,
            image,
            _images: images,
        }
    }

    /// `infer predict` of the red image on `machine` at `now`.
    pub fn predict_on(&self, machine: &Machine, package: &Package, now: u64) -> Output {
        let image = self.image.to_str().unwrap();
        machine.infer(package, &self.vendor, now, &["predict", "--json", image])
    }

    pub fn predict(&self, now: u64) -> Output {
        self.predict_on(&self.laptop, &self.package, now)
    }

    pub fn assert_runs(&self, now: u64) {
        let output = self.predict(now);
        assert!(output.status.success(), "{}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("\"name\":\"red\""));
    }

    pub fn license_path(&self) -> PathBuf {
        self.laptop.activation(&self.package).license_path()
    }
}
