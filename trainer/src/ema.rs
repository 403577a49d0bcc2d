//! Exponential moving average of a network's weights, as timm's
//! `ModelEmaV3` keeps it: every tensor of the state dict, BatchNorm running
//! statistics included, is averaged (not copied), and an optional warmup
//! keeps the average from remembering the first, untrained weights.
//!
//! Evaluation on the average runs on the training network itself:
//! [`Ema::with_weights`] swaps the values in, runs the closure and swaps
//! them back, even if the closure panics. That needs no second model in
//! memory, and the network's tensors stay the same objects (the optimizer
//! and autograd see nothing of it).

use tch::Tensor;

use crate::nn::Network;

/// Every name in [`Ema::state`] starts with this.
pub const STATE_PREFIX: &str = "ema.";

/// Saved EMA state that does not fit the network.
#[derive(Debug, thiserror::Error)]
pub enum EmaError {
    #[error(
        "EMA state does not fit the model: {details}; was it saved for another model or input size?"
    )]
    Mismatch { details: String },
    #[error("EMA state '{name}': {message}")]
    Tensor { name: String, message: String },
}

/// The moving average and its settings.
pub struct Ema {
    /// Decay once warmed up, e.g. 0.9998.
    pub decay: f64,
    /// Ramp the decay up as `1 - (1 + step)^-warmup_power` (timm's
    /// `use_warmup`, with `warmup_gamma` 1).
    pub warmup: bool,
    /// timm's default 2/3 reaches 0.999 after 31.6k steps; 3/4 (10k steps)
    /// suits shorter runs.
    pub warmup_power: f64,
    names: Vec<String>,
    values: Vec<Tensor>,
}

impl Ema {
    /// Starts from a copy of every tensor of `net` (warmup power 2/3).
    pub fn new(net: &Network, decay: f64, warmup: bool) -> Ema {
        let (names, values) = tch::no_grad(|| {
            net.named_tensors()
                .into_iter()
                .map(|(name, t)| (name.to_string(), t.detach().copy()))
                .unzip()
        });
        Ema {
            decay,
            warmup,
            warmup_power: 2.0 / 3.0,
            names,
            values,
        }
    }

    /// The decay used by the update after optimizer step `step` (1 after
    /// the first update), as `ModelEmaV3.get_decay`: 0 up to step 1, so
    /// the average starts as a copy of the trained weights.
    pub fn decay_at(&self, step: u64) -> f64 {
        let step = step.saturating_sub(1);
        if step == 0 {
            return 0.0;
        }
        if !self.warmup {
            return self.decay;
        }
        let warm = 1.0 - (1.0 + step as f64).powf(-self.warmup_power);
        warm.clamp(0.0, self.decay)
    }

    /// Moves the average towards `net`'s current tensors: `ema += (1 -
    /// decay) * (net - ema)`, in place. `net` must be the network the
    /// average was made from.
    pub fn update(&mut self, net: &Network, step: u64) {
        let weight = 1.0 - self.decay_at(step);
        tch::no_grad(|| {
            let own = self.values.iter_mut().zip(&self.names);
            for ((ema, own_name), (name, t)) in own.zip(net.named_tensors()) {
                debug_assert_eq!(own_name, name, "not the network the EMA was made from");
                if ema.is_floating_point() {
                    let _ = ema.lerp_(t, weight);
                } else {
                    ema.copy_(t);
                }
            }
        });
    }

    /// The averaged tensors, in the network's order and names.
    pub fn tensors(&self) -> Vec<(&str, &Tensor)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(&self.values)
            .collect()
    }

    /// Overwrites `net`'s tensors with the average (e.g. to finish training
    /// on the EMA weights).
    pub fn copy_into(&self, net: &mut Network) {
        tch::no_grad(|| {
            for (ema, (_, t)) in self.values.iter().zip(net.named_tensors()) {
                t.shallow_clone().copy_(ema);
            }
        });
    }

    /// Exchanges the values of `net` and the average, in place; a second
    /// call undoes the first. Prefer [`Ema::with_weights`].
    pub fn swap(&mut self, net: &mut Network) {
        tch::no_grad(|| {
            for (ema, (_, t)) in self.values.iter_mut().zip(net.named_tensors()) {
                let training = t.detach().copy();
                t.shallow_clone().copy_(ema);
                *ema = training;
            }
        });
    }

    /// Runs `f` on `net` holding the averaged weights, then restores the
    /// training weights (also when `f` panics).
    pub fn with_weights<R>(&mut self, net: &mut Network, f: impl FnOnce(&Network) -> R) -> R {
        let swapped = Swapped::new(self, net);
        f(swapped.net)
    }

    /// The average as named tensors (`ema.<timm name>`), for resume files.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let copies = self.values.iter().map(|t| t.detach().copy());
        self.names
            .iter()
            .map(|n| format!("{STATE_PREFIX}{n}"))
            .zip(copies)
            .collect()
    }

    /// Restores what [`Ema::state`] returned. Nothing changes when it does
    /// not fit.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), EmaError> {
        check_names(&self.names, &state)?;
        let mut saved: std::collections::HashMap<String, Tensor> = state.into_iter().collect();
        let mut values = Vec::with_capacity(self.values.len());
        for (name, current) in self.names.iter().zip(&self.values) {
            let key = format!("{STATE_PREFIX}{name}");
            let t = saved.remove(&key).expect("checked by check_names");
            values.push(restored(&key, current, &t)?);
        }
        self.values = values;
        Ok(())
    }
}

/// The network holding the average until dropped.
struct Swapped<'a> {
    ema: &'a mut Ema,
    net: &'a mut Network,
}

impl<'a> Swapped<'a> {
    fn new(ema: &'a mut Ema, net: &'a mut Network) -> Self {
        ema.swap(net);
        Swapped { ema, net }
    }
}

impl Drop for Swapped<'_> {
    fn drop(&mut self) {
        self.ema.swap(self.net);
    }
}

/// Saved names must be exactly the network's, prefixed.
fn check_names(names: &[String], state: &[(String, Tensor)]) -> Result<(), EmaError> {
    use std::collections::BTreeSet;
    let want: BTreeSet<String> = names.iter().map(|n| format!("{STATE_PREFIX}{n}")).collect();
    let have: BTreeSet<String> = state.iter().map(|(n, _)| n.clone()).collect();
    let missing: Vec<&String> = want.difference(&have).collect();
    let unexpected: Vec<&String> = have.difference(&want).collect();
    if missing.is_empty() && unexpected.is_empty() && have.len() == state.len() {
        return Ok(());
    }
    let list = |v: &[&String]| {
        let shown: Vec<&str> = v.iter().take(5).map(|s| s.as_str()).collect();
        format!("{} ({})", v.len(), shown.join(", "))
    };
    let details = match (missing.is_empty(), unexpected.is_empty()) {
        (true, true) => "a tensor is saved twice".to_string(),
        (false, true) => format!("missing {}", list(&missing)),
        (true, false) => format!("unexpected {}", list(&unexpected)),
        (false, false) => format!(
            "missing {}, unexpected {}",
            list(&missing),
            list(&unexpected)
        ),
    };
    Err(EmaError::Mismatch { details })
}

/// `saved` as a tensor shaped, typed and laid out like `current`.
fn restored(name: &str, current: &Tensor, saved: &Tensor) -> Result<Tensor, EmaError> {
    if saved.size() != current.size() {
        return Err(EmaError::Mismatch {
            details: format!(
                "{name} has shape {:?}, the model {:?}",
                saved.size(),
                current.size()
            ),
        });
    }
    let error = |e: tch::TchError| EmaError::Tensor {
        name: name.to_string(),
        message: e.to_string(),
    };
    let mut out = current.f_zeros_like().map_err(error)?;
    let src = saved.f_to_kind(current.kind()).map_err(error)?;
    out.f_copy_(&src).map_err(error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use semiclass_models::{Model, ModelOptions};
    use tch::Device;

    /// A small network with BatchNorm buffers and channels-last weights.
    fn network(seed: i64) -> Network {
        tch::manual_seed(seed);
        let options = ModelOptions::new(3, 32);
        Network::new(Model::new("lcnet_050", options).unwrap(), Device::Cpu)
    }

    /// Adds `v` to every tensor of `net`, as a training step would change it.
    fn shift(net: &Network, v: f64) {
        tch::no_grad(|| {
            for (_, t) in net.named_tensors() {
                let _ = t.shallow_clone().g_add_scalar_(v);
            }
        });
    }

    fn equal(a: &[(&str, &Tensor)], b: &[(&str, &Tensor)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x.equal(y))
    }

    #[test]
    fn decay_follows_model_ema_v3() {
        let mut ema = Ema::new(&network(0), 0.9, false);
        assert_eq!(
            [ema.decay_at(0), ema.decay_at(1), ema.decay_at(2)],
            [0.0, 0.0, 0.9]
        );
        ema.warmup = true;
        // 1 - (1 + (step - 1))^(-2/3)
        assert!((ema.decay_at(2) - 0.370_039_475_052_563_4).abs() < 1e-15);
        assert!((ema.decay_at(9) - 0.768_879_575_216_455_1).abs() < 1e-15);
        assert_eq!(ema.decay_at(1_000_000), 0.9);
    }

    #[test]
    fn average_of_a_constant_is_the_constant() {
        let net = network(0);
        let mut ema = Ema::new(&net, 0.99, true);
        for step in 1..=5 {
            ema.update(&net, step);
        }
        assert!(equal(&ema.tensors(), &net.named_tensors()));
    }

    #[test]
    fn update_moves_weights_and_buffers_by_one_minus_decay() {
        let net = network(0);
        let mut ema = Ema::new(&net, 0.9, false);
        let before: Vec<Tensor> = ema.tensors().iter().map(|(_, t)| t.copy()).collect();
        shift(&net, 1.0);
        ema.update(&net, 1); // decay 0: a copy
        assert!(equal(&ema.tensors(), &net.named_tensors()));
        shift(&net, 1.0);
        ema.update(&net, 2); // decay 0.9: (x + 1) + 0.1 * 1
        let names: Vec<&str> = ema.tensors().iter().map(|(n, _)| *n).collect();
        assert!(names.iter().any(|n| n.ends_with("running_var")));
        for ((name, t), old) in ema.tensors().into_iter().zip(&before) {
            let diff = (t - old - 1.1).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{name}: {diff}");
        }
    }

    #[test]
    fn evaluation_sees_the_average_then_the_training_weights() {
        let mut net = network(0);
        let mut ema = Ema::new(&net, 0.9, false);
        shift(&net, 1.0);
        let training: Vec<Tensor> = net.named_tensors().iter().map(|(_, t)| t.copy()).collect();
        let average: Vec<Tensor> = ema.tensors().iter().map(|(_, t)| t.copy()).collect();
        let trainable_before = net.trainable().len();
        let seen = ema.with_weights(&mut net, |n| {
            let values: Vec<Tensor> = n.named_tensors().iter().map(|(_, t)| t.copy()).collect();
            assert_eq!(n.trainable().len(), trainable_before);
            values
        });
        assert!(seen.iter().zip(&average).all(|(a, b)| a.equal(b)));
        assert!(
            net.named_tensors()
                .iter()
                .zip(&training)
                .all(|((_, a), b)| a.equal(b))
        );
        assert!(
            ema.tensors()
                .iter()
                .zip(&average)
                .all(|((_, a), b)| a.equal(b))
        );
        // Still leaves that train.
        assert!(net.trainable().iter().all(|(_, t)| t.requires_grad()));
        ema.copy_into(&mut net);
        assert!(equal(&ema.tensors(), &net.named_tensors()));
    }

    #[test]
    fn state_round_trip_and_mismatch() {
        let net = network(0);
        let mut ema = Ema::new(&net, 0.9, false);
        shift(&net, 0.5);
        ema.update(&net, 2);
        let mut other = Ema::new(&network(1), 0.9, false);
        other.load_state(ema.state()).unwrap();
        assert!(equal(&ema.tensors(), &other.tensors()));
        let mut state = ema.state();
        state.pop();
        state.push(("ema.head.bogus".into(), Tensor::from(1.0f32)));
        let err = other.load_state(state).unwrap_err().to_string();
        assert!(
            err.contains("missing 1") && err.contains("unexpected 1 (ema.head.bogus)"),
            "{err}"
        );
        let mut state = ema.state();
        state[0].1 = Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
        let err = other.load_state(state).unwrap_err().to_string();
        assert!(err.contains("has shape [1]"), "{err}");
        assert!(
            equal(&ema.tensors(), &other.tensors()),
            "a failed load changes nothing"
        );
    }
}
