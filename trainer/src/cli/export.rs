//! `semiclass export CKPT|@nick --target TARGET [--out DIR] [--precision
//! int8 --data DIR]`: the package of a checkpoint for one target runtime,
//! with the offline SDK (the work is the exporter crate's).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use semiclass_exporter::package::{
    Keyring, PackageRequest, SdkBuild, build_int8_package, build_package,
};
use semiclass_manifest::checkpoint_file::read_meta;
use semiclass_manifest::package::Target;
use semiclass_manifest::quantization::{Precision, Quantization};

use super::export_int8::{Int8Args, int8_request};

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
    /// fp32, or int8: a statically quantized model, calibrated on --data's
    /// images and refused when it loses more than 1 top-1 point on val.txt
    /// (cpu-x86_64 only).
    #[arg(long, default_value = "fp32", value_parser = parse_precision)]
    precision: Precision,
    #[command(flatten)]
    int8: Int8Args,
    /// Replace an existing package of the same name; with int8, package it
    /// even when it loses more than 1 top-1 point.
    #[arg(long)]
    force: bool,
}

fn parse_precision(name: &str) -> Result<Precision, String> {
    Precision::parse(name).ok_or_else(|| format!("unknown precision '{name}'; fp32 or int8"))
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
    let request = PackageRequest {
        target: args.target,
        out_dir: &args.out,
        runtime_dir: args.runtime_dir.as_deref(),
        sdk: sdk.as_ref(),
        vendor_keys: Some(&vendor_keys),
        replace: args.force,
    };
    let built = match args.precision {
        Precision::Fp32 => build_package(&checkpoint, &request)?,
        Precision::Int8 => {
            let meta = read_meta(&checkpoint)?;
            let int8 = int8_request(&args.int8, &meta, args.force)?;
            build_int8_package(&checkpoint, &request, &int8)?
        }
    };
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
    if let Some(q) = &m.model.quantization {
        print_quantization(q);
    }
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

fn print_quantization(q: &Quantization) {
    let (c, e) = (&q.calibration, &q.evaluation);
    println!(
        "  int8: calibrated on {} images of {} ({}); on {} images of {}: fp32 top-1 {:.2}%, int8 {:.2}% ({:+.2} points), same top-1 {:.2}%",
        c.images,
        c.source,
        c.method,
        e.images,
        e.source,
        e.fp32_top1 * 100.0,
        e.int8_top1 * 100.0,
        -e.drop_points(),
        e.top1_agreement * 100.0
    );
}

/// The keyring named by `--keyring`, else the one compiled in.
fn vendor_keys(path: Option<&std::path::Path>) -> anyhow::Result<Keyring> {
    let Some(path) = path else {
        return Ok(Keyring::builtin()?);
    };
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Keyring::from_json(&text).with_context(|| path.display().to_string())
}
