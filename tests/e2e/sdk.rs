//! The offline SDK end to end on real data: a model trained on Fashion-MNIST
//! is exported with the SDK, the vendor mints a serial, this machine
//! activates it offline, and `infer predict` answers on 200 test images
//! exactly what `semiclass eval` measured; then online, against
//! `semiclass-serve`'s `/v1/activate`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use semiclass_dataset::fashion_mnist::{DEBIAN_DIR, read_split};
use semiclass_exporter::package::{PackageRequest, SdkBuild, build_package};
use semiclass_manifest::package::Target;

use crate::common::{Run, binary, command, semiclass, write_idx_split};

const TEST_IMAGES: usize = 200;

/// The first `n` images of the real split `prefix`, as an IDX source of its own.
fn real_subset(source: &Path, out: &Path, prefix: &str, n: usize) {
    let split = read_split(source, prefix).unwrap_or_else(|e| {
        panic!("{e}: the Debian package dataset-fashion-mnist is needed (make test installs it)")
    });
    let pixels = split.images[..n].concat();
    write_idx_split(out, prefix, &pixels, &split.labels[..n]);
}

fn ok(run: Run) -> Run {
    assert_eq!(run.code, 0, "{}", run.all());
    run
}

fn run(command: &mut Command) -> Run {
    command.output().expect("runs").into()
}

/// A dataset of real Fashion-MNIST images (2,000 train, 200 test) and
/// lcnet_050 trained on it for eight epochs; returns (dataset, checkpoint).
fn trained_model(work: &Path) -> (PathBuf, PathBuf) {
    let source = work.join("idx");
    std::fs::create_dir_all(&source).unwrap();
    real_subset(Path::new(DEBIAN_DIR), &source, "train", 2000);
    real_subset(Path::new(DEBIAN_DIR), &source, "t10k", TEST_IMAGES);
    let data = work.join("fmnist");
    let (src, out) = (source.to_str().unwrap(), data.to_str().unwrap());
    let args = [
        "--source",
        src,
        "--val-count",
        "200",
        "--labeled-frac",
        "0.9",
    ];
    ok(semiclass(
        &[&["demo-data", "fashion-mnist", out], &args[..]].concat(),
    ));
    let runs = format!("run.dir={}", work.join("runs").display());
    let mut train = vec!["train", "--mode", "large", "--data", out, "-o", &runs];
    for o in [
        "run.name=sdk",
        "run.device=cpu",
        "large.model=lcnet_050",
        "large.input_size=32",
        "large.epochs=8",
        "large.ssl.epochs=0",
    ] {
        train.extend(["-o", o]);
    }
    ok(semiclass(&train));
    (data, work.join("runs/sdk/checkpoints/best.safetensors"))
}

/// `semiclass eval` on test.txt: image path -> predicted class id.
fn evaluated(data: &Path, checkpoint: &Path, out: &Path) -> BTreeMap<PathBuf, usize> {
    ok(semiclass(&[
        "eval",
        checkpoint.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("path,truth_id,truth,predicted_id,predicted,score")
    );
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (data.join(fields[0]), fields[3].parse().unwrap())
        })
        .collect()
}

/// The package of `checkpoint` with the SDK of this test build (whose test
/// hooks let the test trust its own vendor key), unpacked.
fn exported_with_sdk(checkpoint: &Path, work: &Path, vendor: &Vendor) -> PathBuf {
    let infer = binary("infer");
    let version = ok(run(Command::new(&infer).arg("--version"))).stdout;
    assert!(
        version.contains(semiclass_sdk_layout::TEST_HOOKS_MARKER),
        "{} has no test hooks ({version}): build it with `cargo nextest run --workspace` (make test)",
        infer.display()
    );
    // Cargo leaves the cdylib of a test build in deps/.
    let build = work.join("sdk-build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::copy(&infer, build.join("infer")).unwrap();
    let deps = infer.parent().unwrap().join("deps/libsemiclass_sdk.so");
    std::fs::copy(&deps, build.join("libsemiclass_sdk.so")).unwrap();
    let built = build_package(
        checkpoint,
        &PackageRequest {
            target: Target::CpuX86_64,
            out_dir: &work.join("packages"),
            runtime_dir: None,
            sdk: Some(&SdkBuild::with_test_hooks(build)),
            vendor_keys: Some(&vendor.trusted()),
            replace: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(built.manifest.license.required);
    let dir = work.join("package");
    semiclass_package::unpack(&built.path, &dir).unwrap();
    assert_stock_onnx_runtime_cannot_open(&dir);
    dir
}

/// The vendor's side: a signing key, its keyring and the issuer database.
pub(crate) struct Vendor {
    key: PathBuf,
    pub(crate) keyring: PathBuf,
    db: PathBuf,
}

impl Vendor {
    pub(crate) fn new(dir: &Path) -> Vendor {
        let vendor = Vendor {
            key: dir.join("vendor.key"),
            keyring: dir.join("keyring.json"),
            db: dir.join("issuer.sqlite"),
        };
        vendor.license(&[
            "keygen",
            "--out",
            vendor.key.to_str().unwrap(),
            "--keyring",
            vendor.keyring.to_str().unwrap(),
        ]);
        vendor
    }

    /// The keyring an SDK trusting this vendor carries.
    fn trusted(&self) -> semiclass_exporter::package::Keyring {
        let text = std::fs::read_to_string(&self.keyring).unwrap();
        semiclass_exporter::package::Keyring::from_json(&text).unwrap()
    }

    /// `semiclass-license --db DB ARGS...`
    fn license(&self, args: &[&str]) -> Run {
        ok(run(command("semiclass-license")
            .arg("--db")
            .arg(&self.db)
            .args(args)))
    }
}

/// The attack of issue 16: unzip the package and load its model file with
/// the ONNX Runtime it ships, no SDK, no license. The file is ciphertext:
/// ONNX Runtime refuses it.
fn assert_stock_onnx_runtime_cannot_open(unpacked: &Path) {
    let package = semiclass_package::Package::open(unpacked).unwrap();
    let library = unpacked.join(&package.manifest.runtime.library);
    let env = ort::init_from(library)
        .expect("the packaged library loads")
        .build()
        .expect("environment");
    let loaded = ort::session::Session::builder(&env)
        .unwrap()
        .commit_from_memory(package.stored_model());
    assert!(
        loaded.is_err(),
        "stock ONNX Runtime loaded the packaged model"
    );
}

/// `bin/infer` of the package, trusting `vendor`'s key, keeping its
/// activation in `activations`.
fn infer(package: &Path, vendor: &Vendor, activations: &Path, args: &[&str]) -> Run {
    run(Command::new(package.join("bin/infer"))
        .env("SEMICLASS_TEST_KEYRING", &vendor.keyring)
        .arg("--activation-dir")
        .arg(activations)
        .args(args))
}

#[test]
fn an_exported_model_activated_offline_predicts_what_eval_measured() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (data, checkpoint) = trained_model(work);
    let eval = evaluated(&data, &checkpoint, &work.join("eval"));
    assert_eq!(eval.len(), TEST_IMAGES);
    let classes: std::collections::BTreeSet<&usize> = eval.values().collect();
    assert!(
        classes.len() >= 5,
        "a model that learnt little: {classes:?}"
    );
    let vendor = Vendor::new(work);
    let package = exported_with_sdk(&checkpoint, work, &vendor);
    let activations = work.join("activations");
    let manifest = package.join("manifest.json");
    let images: Vec<&str> = eval.keys().map(|p| p.to_str().unwrap()).collect();
    let predict = [&["predict", "--topk", "1", "--json"], &images[..]].concat();

    let refused = infer(&package, &vendor, &activations, &predict);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains("infer activate"),
        "{}",
        refused.stderr
    );

    vendor.license(&["add-package", manifest.to_str().unwrap()]);
    let id = semiclass_exporter::package::Package::open(&package)
        .unwrap()
        .manifest
        .package_id;
    let serial = vendor.license(&["issue", "--package", &id]).stdout;
    let activate = ["activate", "--serial", serial.trim(), "--offline"];
    let asked = ok(infer(&package, &vendor, &activations, &activate)).stdout;
    let request = asked
        .lines()
        .find_map(|l| l.strip_prefix("activation request written to "))
        .unwrap_or_else(|| panic!("no request path in {asked}"));
    let license = work.join("license.lic");
    let (key, out) = (vendor.key.to_str().unwrap(), license.to_str().unwrap());
    vendor.license(&["sign-request", request, "--key", key, "--out", out]);
    ok(infer(
        &package,
        &vendor,
        &activations,
        &["activate", "--license", out],
    ));

    let answers = ok(infer(&package, &vendor, &activations, &predict)).stdout;
    let predicted: BTreeMap<PathBuf, usize> = answers
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let class = v["predictions"][0]["class_id"].as_u64().unwrap() as usize;
            (PathBuf::from(v["image"].as_str().unwrap()), class)
        })
        .collect();
    assert_eq!(predicted.len(), TEST_IMAGES);
    let differing: Vec<_> = eval
        .iter()
        .filter(|(path, class)| predicted.get(*path) != Some(class))
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {TEST_IMAGES} differ: {differing:?}",
        differing.len()
    );

    // The vendor's server runs a package in clear (an SDK package's model
    // opens only in the SDK) and answers activations for the SDK package.
    let served = exported_for_the_server(&checkpoint, work);
    let online = Online {
        package: &package,
        served: &served,
        id: &id,
        dir: &work.join("online"),
    };
    activates_online(&online, &vendor, images[0]);
}

/// The checkpoint's package without the SDK (`export --without-sdk`),
/// unpacked.
fn exported_for_the_server(checkpoint: &Path, work: &Path) -> PathBuf {
    let built = build_package(
        checkpoint,
        &PackageRequest {
            target: Target::CpuX86_64,
            out_dir: &work.join("server-packages"),
            runtime_dir: None,
            sdk: None,
            vendor_keys: None,
            replace: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(built.manifest.model.encryption.is_none());
    let dir = work.join("server-package");
    semiclass_package::unpack(&built.path, &dir).unwrap();
    dir
}

/// What the online activation test works on: the SDK package `package`
/// (id `id`) activated against a server that runs `served`.
struct Online<'a> {
    package: &'a Path,
    served: &'a Path,
    id: &'a str,
    dir: &'a Path,
}

/// `semiclass-serve` with the vendor's issuer (POST /v1/activate), on a
/// free loopback port; stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(package: &Path, vendor: &Vendor, dir: &Path) -> Server {
        let mut child = command("semiclass-serve")
            .arg("--tokens")
            .arg(dir.join("tokens.json"))
            .args(["serve", "--listen", "127.0.0.1:0", "--package"])
            .arg(package)
            .arg("--issuer-db")
            .arg(&vendor.db)
            .arg("--issuer-key")
            .arg(&vendor.key)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        while let Some(Ok(line)) = lines.next() {
            if let Some(at) = line.find("listening on http://") {
                let addr = line[at + "listening on ".len()..].split_whitespace().next();
                let url = addr.unwrap().to_string();
                // Keep reading its log, so that the pipe never fills up.
                std::thread::spawn(move || lines.for_each(drop));
                return Server { child, url };
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("semiclass-serve did not start:\n{seen}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `infer activate --server` installs the license the server grants, after
/// which the package predicts; a revoked serial is refused with the
/// server's reason.
fn activates_online(online: &Online, vendor: &Vendor, image: &str) {
    let Online {
        package,
        served,
        id,
        dir,
    } = *online;
    std::fs::create_dir_all(dir).unwrap();
    let server = Server::start(served, vendor, dir);
    let activations = dir.join("activations");
    let serials = vendor
        .license(&["issue", "--package", id, "--count", "2"])
        .stdout;
    let serials: Vec<&str> = serials.lines().collect();
    vendor.license(&["revoke", serials[1]]);
    let online = |serial: &str| {
        let args = ["activate", "--serial", serial, "--server", &server.url];
        infer(package, vendor, &activations, &args)
    };

    let refused = online(serials[1]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains("activation refused (HTTP 403)")
            && refused.stderr.contains("revoked"),
        "{}",
        refused.stderr
    );
    let granted = ok(online(serials[0]));
    assert!(
        granted.stdout.contains("license installed"),
        "{}",
        granted.stdout
    );
    let predicted = ok(infer(package, vendor, &activations, &["predict", image]));
    assert!(!predicted.stdout.is_empty());
}
