//! Single-image latency of an exported package, the way the SDK and the
//! server run it: read the file, decode and preprocess it with the shared
//! preprocessing crate (the spec from the package's manifest), run ONNX
//! Runtime (2 intra-op threads, batch 1). bench/export_latency.py does the
//! same with Python onnxruntime and Pillow.
//!
//! Usage: export-latency PACKAGE(.zip|dir) ROUNDS IMAGE...
//! Prints the median and the mean milliseconds per image.

use std::time::Instant;

use anyhow::Context;
use ort::session::Session;
use ort::value::Tensor;
use semiclass_exporter::package::Package;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};

/// Runs one image through the whole path; returns the top-1 index.
fn classify(session: &mut Session, package: &Package, image: &str) -> anyhow::Result<usize> {
    let model = &package.manifest.model;
    let bytes = std::fs::read(image).with_context(|| image.to_string())?;
    let x = preprocess_bytes(&bytes, DecodeLimits::default(), &model.preprocess)?;
    let shape = [1, x.shape[0], x.shape[1], x.shape[2]].map(|d| d as i64);
    let input = Tensor::from_array((shape, x.data))?;
    let outputs = session.run(ort::inputs![model.input_name.as_str() => input])?;
    let (_, logits) = outputs[model.output_name.as_str()].try_extract_tensor::<f32>()?;
    let top = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    Ok(top.unwrap_or(0))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(package), Some(rounds)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: export-latency PACKAGE ROUNDS IMAGE...");
    };
    let rounds: usize = rounds.parse().context("ROUNDS")?;
    let images = &args[3..];
    let package = Package::open(package.as_ref())?;
    let lib = std::env::var("ORT_DYLIB_PATH").context("ORT_DYLIB_PATH (make bench sets it)")?;
    let env = ort::init_from(&lib)?.build()?;
    // The builder's errors carry the builder back; drop it for anyhow.
    let builder = Session::builder(&env)?;
    let builder = builder
        .with_intra_threads(2)
        .map_err(ort::Error::<()>::from)?;
    let mut builder = builder
        .with_inter_threads(1)
        .map_err(ort::Error::<()>::from)?;
    let mut session = builder.commit_from_memory(package.model_bytes()?)?;
    for image in images.iter().take(5) {
        classify(&mut session, &package, image)?;
    }
    let mut times = Vec::new();
    for _ in 0..rounds {
        for image in images {
            let start = Instant::now();
            classify(&mut session, &package, image)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    println!("{:.3} {:.3}", times[times.len() / 2], mean);
    Ok(())
}
