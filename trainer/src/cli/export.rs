//! `semiclass export CKPT|@nick --target TARGET [--out DIR]`: the package of a
//! checkpoint for one target runtime, with the offline SDK (the work is the
//! exporter crate's).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use semiclass_exporter::package::{Keyring, PackageRequest, SdkBuild, build_package};
use semiclass_manifest::package::Target;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The checkpoint (.safetensors written by `semiclass train`) or @nick.
    checkpoint: String,
    /// The runtime the package is for: cpu-x86_64 or cuda-x86_64.
    #[arg(long, value_parser = parse_target)]
    target: Target,
    /// Folder to write <model>-<target>.zip into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The ONNX Runtime wheel's onnxruntime/capi folder for this target
    /// [default: $SEMICLASS_ORT_CPU_DIR / $SEMICLASS_ORT_CUDA_DIR; for the CPU,
    /// else the folder of $ORT_DYLIB_PATH].
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// The cargo build folder holding the SDK (`infer`,
    /// `libsemiclass_sdk.so`) built with `cargo build --release -p semiclass-sdk`
    /// [default: the folder of this program].
    #[arg(long, conflicts_with = "without_sdk")]
    sdk_dir: Option<PathBuf>,
    /// Leave the SDK out: the model, its runtime and a README, for
    /// `semiclass-serve` or your own ONNX Runtime code (no activation needed).
    #[arg(long)]
    without_sdk: bool,
    /// The vendor keyring (a JSON list from `semiclass-license keygen
    /// --keyring`) whose keys may open the SDK package's encrypted model
    /// [default: the keyring compiled into this build].
    #[arg(long, conflicts_with = "without_sdk")]
    keyring: Option<PathBuf>,
    /// Replace an existing package of the same name.
    #[arg(long)]
    force: bool,
}

fn parse_target(name: &str) -> Result<Target, String> {
    Target::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Target::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown target '{name}'; one of {}", known.join(", "))
    })
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let checkpoint = super::checkpoint_arg(&args.checkpoint)?;
    let sdk = match (args.without_sdk, args.sdk_dir) {
        (true, _) => None,
        (false, Some(dir)) => Some(SdkBuild::shipping(dir)),
        (false, None) => {
            let dir = semiclass_sdk_layout::sdk_build_dir()
                .context("cannot tell where this program is; pass --sdk-dir")?;
            Some(SdkBuild::shipping(dir))
        }
    };
    let vendor_keys = vendor_keys(args.keyring.as_deref())?;
    let built = build_package(
        &checkpoint,
        &PackageRequest {
            target: args.target,
            out_dir: &args.out,
            runtime_dir: args.runtime_dir.as_deref(),
            sdk: sdk.as_ref(),
            vendor_keys: Some(&vendor_keys),
            replace: args.force,
        },
    )?;
    let m = &built.manifest;
    println!("{}", built.path.display());
    println!(
        "  {} ({} classes, {} px) for {}, ONNX Runtime {}, {} BatchNorms folded",
        m.model.arch,
        m.model.class_names.len(),
        m.model.input_size,
        m.target,
        m.runtime.version,
        built.fold.folded
    );
    if m.license.required {
        println!("  with the offline SDK: it runs after `bin/infer activate` with a serial");
    }
    if let Some(encryption) = &m.model.encryption {
        let ids: Vec<&str> = encryption
            .vendor_keys
            .iter()
            .map(|k| k.key_id.as_str())
            .collect();
        println!(
            "  model encrypted; its key opens with the license key(s) {}",
            ids.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The keyring named by `--keyring`, else the one compiled in.
fn vendor_keys(path: Option<&std::path::Path>) -> anyhow::Result<Keyring> {
    let Some(path) = path else {
        return Ok(Keyring::builtin()?);
    };
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Keyring::from_json(&text).with_context(|| path.display().to_string())
}
