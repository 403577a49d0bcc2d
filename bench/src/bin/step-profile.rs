//! Where a training step's time goes (forward, backward, optimizer), for
//! tuning the trainer against PyTorch eager. Usage: step-profile MODEL SIZE
use std::time::Instant;

use semiclass_models::{Model, ModelOptions};
use semiclass_trainer::nn::Network;
use semiclass_trainer::optim::{Optimizer, Sgd, decays, zero_grad};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args[2].parse()?;
    semiclass_trainer::alloc::tune_for_training();
    tch::set_num_threads(2);
    let options = ModelOptions::new(1000, size);
    let net = Network::new(Model::new(&args[1], options)?, Device::Cpu);
    let params: Vec<(&Tensor, bool)> = net
        .trainable()
        .into_iter()
        .map(|(s, t)| (t, decays(&s.shape)))
        .collect();
    let mut sgd = Sgd::new(0.9, true, 1e-4);
    let x = Tensor::randn(
        [64, 3, size as i64, size as i64],
        (Kind::Float, Device::Cpu),
    );
    let y = Tensor::randint(1000, [64], (Kind::Int64, Device::Cpu));
    let mut t = [0f64; 4];
    for i in 0..13 {
        let a = Instant::now();
        zero_grad(&params);
        let b = Instant::now();
        let loss = net.forward(&x, true).cross_entropy_for_logits(&y);
        let c = Instant::now();
        loss.backward();
        let d = Instant::now();
        sgd.step(&params, 0.01);
        let e = Instant::now();
        if i >= 3 {
            for (k, (s, f)) in [(a, b), (b, c), (c, d), (d, e)].iter().enumerate() {
                t[k] += (*f - *s).as_secs_f64() * 100.0; // ms per step over 10 steps
            }
        }
    }
    println!(
        "zero_grad {:.1} ms, forward {:.1} ms, backward {:.1} ms, sgd {:.1} ms",
        t[0], t[1], t[2], t[3]
    );
    Ok(())
}
