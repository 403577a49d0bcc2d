//! `infer predict`: the top-k classes of each image.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use semiclass_licensing::ActivationDir;
use semiclass_sdk::{Device, LoadOptions, Model, Package, Prediction, environment};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Image files (JPEG, PNG, BMP, WebP, GIF, TIFF).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// One JSON object per image and line: {"image", "predictions": [{class_id, name, score}]}.
    #[arg(long)]
    json: bool,
    /// Run a cuda-x86_64 package on the CPU when its GPU cannot be used
    /// (with a warning); without it, `infer` stops and says what is missing.
    #[arg(long)]
    allow_cpu_fallback: bool,
}

#[derive(Serialize)]
struct ImageResult<'a> {
    image: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    predictions: Option<Vec<Prediction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(package: &Package, activation: &ActivationDir, args: Args) -> Result<()> {
    if args.topk == 0 {
        bail!("--topk must be at least 1");
    }
    let options = LoadOptions {
        allow_cpu_fallback: args.allow_cpu_fallback,
    };
    let model = Model::open_with(package, activation, &environment()?, options)?;
    if let Device::CpuFallback(why) = model.device() {
        eprintln!("warning: running on the CPU as --allow-cpu-fallback allows: {why}");
    }
    let mut failed = 0;
    for image in &args.images {
        let answer = predict(&model, image, args.topk);
        if let Err(err) = &answer {
            eprintln!("error: {err:#}");
            failed += 1;
        }
        print(image, answer, args.json);
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified",
            args.images.len()
        );
    }
    Ok(())
}

fn predict(model: &Model, image: &Path, k: usize) -> Result<Vec<Prediction>> {
    let bytes = fs::read(image).with_context(|| image.display().to_string())?;
    model
        .predict(&bytes, k)
        .with_context(|| image.display().to_string())
}

fn print(image: &Path, answer: Result<Vec<Prediction>>, json: bool) {
    match (answer, json) {
        (Ok(predictions), false) => {
            println!("{}", image.display());
            for (rank, p) in predictions.iter().enumerate() {
                println!(
                    "  {}. {} (class {}) {:.4}",
                    rank + 1,
                    p.name,
                    p.class_id,
                    p.score
                );
            }
        }
        (answer, true) => {
            let (predictions, error) = match answer {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            };
            let result = ImageResult {
                image,
                predictions,
                error,
            };
            println!(
                "{}",
                serde_json::to_string(&result).expect("a result serializes")
            );
        }
        (Err(_), false) => {}
    }
}
