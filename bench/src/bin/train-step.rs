//! Training-step throughput of a zoo model built with tch: forward,
//! cross-entropy, backward and an SGD (Nesterov) step on a random batch.
//! Prints `images_per_second` for bench/train-step.sh to compare with
//! PyTorch eager on the same timm model (bench/train_step.py).
//!
//! Usage: train-step MODEL INPUT_SIZE [BATCH] [STEPS] [THREADS] [imagenet|compact] [every-tap]

use std::time::Instant;

use anyhow::Context;
use semiclass_models::{Model, ModelOptions, Stem};
use semiclass_trainer::nn::Network;
use semiclass_trainer::optim::{Optimizer, Sgd, decays, zero_grad};
use tch::{Device, Kind, Tensor};

fn arg(args: &[String], i: usize, default: usize) -> anyhow::Result<usize> {
    args.get(i).map_or(Ok(default), |a| {
        a.parse().with_context(|| format!("argument {i}: {a}"))
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .get(1)
        .context("usage: train-step MODEL INPUT_SIZE [BATCH] [STEPS] [THREADS] [imagenet|compact] [every-tap]")?;
    let size = arg(&args, 2, 224)?;
    let (batch, steps, threads) = (arg(&args, 3, 64)?, arg(&args, 4, 10)?, arg(&args, 5, 2)?);
    semiclass_trainer::alloc::tune_for_training();
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let stem = match args.get(6).map(String::as_str) {
        None | Some("imagenet") => Stem::ImageNet,
        Some("compact") => Stem::Compact,
        Some(other) => anyhow::bail!("argument 6: {other}: the stem is imagenet or compact"),
    };
    let options = ModelOptions::new(1000, size).with_stem(stem);
    let net = Network::new(Model::new(name, options)?, Device::Cpu);
    // `every-tap`: convolutions also compute the taps that meet only padding.
    let net = match args.get(7).map(String::as_str) {
        None => net,
        Some("every-tap") => net.with_every_tap(),
        Some(other) => anyhow::bail!("argument 7: {other}: only `every-tap` is known"),
    };
    let params: Vec<(&Tensor, bool)> = net
        .trainable()
        .into_iter()
        .map(|(spec, t)| (t, decays(&spec.shape)))
        .collect();
    let mut sgd = Sgd::new(0.9, true, 1e-4);
    let x = Tensor::randn(
        [batch as i64, 3, size as i64, size as i64],
        (Kind::Float, Device::Cpu),
    );
    let y = Tensor::randint(1000, [batch as i64], (Kind::Int64, Device::Cpu));
    let mut step = || {
        zero_grad(&params);
        let loss = net.forward(&x, true).cross_entropy_for_logits(&y);
        loss.backward();
        sgd.step(&params, 0.01);
    };
    // Warm-up: allocator and kernel selection.
    for _ in 0..3 {
        step();
    }
    let start = Instant::now();
    for _ in 0..steps {
        step();
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{:.2}", (batch * steps) as f64 / seconds);
    Ok(())
}
