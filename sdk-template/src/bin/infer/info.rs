//! `infer info`: what the package holds and whether it may run here.

use anyhow::Result;
use semiclass_licensing::ActivationDir;
use semiclass_manifest::checkpoint::rfc3339_utc;
use semiclass_manifest::package::PackageManifest;
use semiclass_sdk::{Package, environment};

/// Class names shown before "...".
const SHOWN_CLASSES: usize = 10;

pub fn run(package: &Package, activation: &ActivationDir) -> Result<()> {
    let manifest = &package.manifest;
    describe(manifest);
    println!("package dir  {}", package.dir.display());
    println!("license file {}", activation.license_path().display());
    // The full check, as a prediction would run it; refusal is an answer here.
    let verdict = environment().and_then(|env| {
        Ok(semiclass_licensing::verify_package(
            &package.dir,
            activation,
            &env,
        )?)
    });
    match verdict {
        Ok(verified) => {
            let license = verified.license;
            let expires = license
                .expires
                .map_or_else(|| "never expires".to_string(), rfc3339_utc);
            println!(
                "license      valid on this machine: serial {}, issued {}, {}",
                license.serial,
                rfc3339_utc(license.issued),
                if license.expires.is_some() {
                    format!("expires {expires}")
                } else {
                    expires
                }
            );
        }
        Err(err) => println!("license      not valid: {err}"),
    }
    Ok(())
}

fn describe(manifest: &PackageManifest) {
    let model = &manifest.model;
    let spec = &model.preprocess;
    let names = &model.class_names;
    let mut shown = names
        .iter()
        .take(SHOWN_CLASSES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN_CLASSES {
        shown.push_str(", ...");
    }
    println!("package      {}", manifest.package_id);
    let role = format!("{:?}", model.role).to_lowercase();
    println!(
        "model        {} ({role}), ONNX opset {}",
        model.arch, model.opset
    );
    println!("classes      {}: {shown}", names.len());
    println!(
        "input        {}: float32 [N, 3, {s}, {s}] RGB; resize {}, center crop {}, {}, mean {:?}, std {:?}",
        model.input_name,
        spec.resize,
        spec.crop,
        format!("{:?}", spec.interpolation).to_lowercase(),
        spec.mean,
        spec.std,
        s = model.input_size
    );
    println!(
        "output       {}: float32 [N, {}] (scores before softmax)",
        model.output_name,
        names.len()
    );
    println!(
        "target       {}, ONNX Runtime {} ({})",
        manifest.target, manifest.runtime.version, manifest.runtime.library
    );
}
