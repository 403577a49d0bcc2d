//! Training behaviour of every family: gradients reach every parameter
//! (in-place activations included), BatchNorm statistics move, and
//! dropout / drop-path act only in training.

use semiclass_models::registry::SMALL_MEMBERS;
use semiclass_models::{Model, ModelOptions};
use semiclass_trainer::nn::Network;
use tch::{Device, Kind, Tensor};

fn network(name: &str, size: usize, drop: f64) -> Network {
    tch::manual_seed(0);
    let options = ModelOptions {
        drop_rate: drop,
        drop_path_rate: drop,
        ..ModelOptions::new(5, size)
    };
    Network::new(Model::new(name, options).unwrap(), Device::Cpu)
}

fn batch(size: usize) -> Tensor {
    Tensor::randn([2, 3, size as i64, size as i64], (Kind::Float, Device::Cpu))
}

#[test]
fn every_trainable_parameter_gets_a_finite_gradient() {
    for (name, size) in SMALL_MEMBERS {
        let net = network(name, size, 0.1);
        let labels = Tensor::from_slice(&[0i64, 3]);
        net.forward(&batch(size), true)
            .cross_entropy_for_logits(&labels)
            .backward();
        for (spec, tensor) in net.trainable() {
            let grad = tensor.grad();
            assert!(grad.defined(), "{name}: no gradient for {}", spec.name);
            let finite = grad.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{name}: non-finite gradient for {}", spec.name);
        }
    }
}

#[test]
fn batch_norm_statistics_move_only_in_training() {
    for (name, size) in SMALL_MEMBERS
        .iter()
        .filter(|(n, _)| !n.starts_with("vit") && !n.starts_with("swin"))
    {
        let net = network(name, *size, 0.0);
        let stat = |net: &Network| {
            let (_, t) = net
                .named_tensors()
                .into_iter()
                .find(|(n, _)| n.ends_with("running_mean"))
                .unwrap();
            t.copy()
        };
        let before = stat(&net);
        let _ = tch::no_grad(|| net.forward(&batch(*size), false));
        assert!(
            stat(&net).equal(&before),
            "{name}: eval changed running stats"
        );
        let _ = tch::no_grad(|| net.forward(&batch(*size), true));
        assert!(
            !stat(&net).equal(&before),
            "{name}: training left running stats unchanged"
        );
    }
}

#[test]
fn dropout_and_drop_path_are_random_in_training_and_off_in_eval() {
    for (name, size) in SMALL_MEMBERS {
        let net = network(name, size, 0.5);
        let x = batch(size);
        let (a, b) = tch::no_grad(|| (net.forward(&x, false), net.forward(&x, false)));
        assert!(a.equal(&b), "{name}: eval is not deterministic");
        let (c, d) = tch::no_grad(|| (net.forward(&x, true), net.forward(&x, true)));
        assert!(
            !c.allclose(&d, 1e-6, 1e-6, false),
            "{name}: training ignores dropout/drop-path"
        );
    }
}
