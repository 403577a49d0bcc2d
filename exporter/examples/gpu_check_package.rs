//! For `scripts/gpu-check.sh` only: the exporter's steps without the
//! `semiclass` CLI, whose libtorch (2.13, from the dev venv) cannot travel
//! to a lent GPU machine (its torch is another version, and cargo is not
//! there). Both steps call the exporter's one implementation:
//!
//! `gpu_check_package template OUT.safetensors` writes a random lcnet_050
//! checkpoint at 32 px (the weights' names and the checkpoint metadata the
//! GPU machine's own PyTorch trains and keeps);
//! `gpu_check_package export CKPT TARGET CAPI_DIR OUT_DIR` writes the
//! package of `CKPT` for `TARGET` (cpu-x86_64 or cuda-x86_64) without the SDK.

use std::path::Path;
use std::process::ExitCode;

use semiclass_exporter::package::{PackageRequest, build_package};
use semiclass_exporter::testing;
use semiclass_manifest::package::Target;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["template", out] => template(Path::new(out)),
        ["export", ckpt, target, capi, out] => export(ckpt, target, capi, out),
        _ => Err(
            "usage: gpu_check_package template OUT | export CKPT TARGET CAPI_DIR OUT_DIR".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn template(out: &Path) -> Result<(), String> {
    let dir = out.parent().ok_or("the template needs a folder")?;
    let written = testing::checkpoint(dir, "lcnet_050", 32);
    std::fs::rename(&written, out).map_err(|e| format!("{}: {e}", out.display()))
}

fn export(ckpt: &str, target: &str, capi: &str, out: &str) -> Result<(), String> {
    let target = Target::parse(target).ok_or(format!("{target}: not a target"))?;
    let request = PackageRequest {
        target,
        out_dir: Path::new(out),
        runtime_dir: Some(Path::new(capi)),
        sdk: None,
        vendor_keys: None,
        replace: true,
    };
    let built = build_package(Path::new(ckpt), &request).map_err(|e| e.to_string())?;
    semiclass_package::unpack(&built.path, &Path::new(out).join("unpacked"))
        .map_err(|e| e.to_string())?;
    println!("{}", built.path.display());
    Ok(())
}
