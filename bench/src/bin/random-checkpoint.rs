//! A checkpoint of a zoo model with random weights (tch's initialisers),
//! as `semiclass train` writes them: what bench/export-latency.sh exports,
//! since latency does not depend on the values.
//!
//! Usage: random-checkpoint MODEL INPUT_SIZE CLASSES OUT.safetensors

use std::path::Path;

use anyhow::Context;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_models::{Model, ModelOptions};
use semiclass_trainer::checkpoint::save_checkpoint;
use semiclass_trainer::nn::Network;
use tch::Device;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, size, classes, out] = args.as_slice() else {
        anyhow::bail!("usage: random-checkpoint MODEL INPUT_SIZE CLASSES OUT.safetensors");
    };
    let size: usize = size.parse().context("INPUT_SIZE")?;
    let classes: usize = classes.parse().context("CLASSES")?;
    tch::manual_seed(0);
    let model = Model::new(name, ModelOptions::new(classes, size))?;
    let preprocess = PreprocessSpec::for_input(size as u32, model.entry.mean, model.entry.std);
    let names = (0..classes).map(|i| format!("class{i}")).collect();
    let meta =
        CheckpointMeta::untrained(model.entry.name, names, size as u32, preprocess, "random");
    let net = Network::new(model, Device::Cpu);
    save_checkpoint(Path::new(out), &net.named_tensors(), &meta)?;
    Ok(())
}
