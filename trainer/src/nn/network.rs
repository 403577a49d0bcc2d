//! A zoo model with its tensors on a device.

use std::collections::HashMap;
use std::path::Path;

use semiclass_models::backend::{Init, ParamKind, ParamSpec};
use semiclass_models::{Model, spec::Shape};
use tch::{Device, Kind, Tensor};

use super::tch_backend::TchBackend;
use super::weights::{self, LoadReport, WeightsError};

/// A model's tensors, named as timm names them, and its forward pass.
pub struct Network {
    pub model: Model,
    vars: HashMap<String, Tensor>,
    device: Device,
}

impl Network {
    /// Creates every declared tensor with its initialiser.
    pub fn new(model: Model, device: Device) -> Network {
        let vars = tch::no_grad(|| {
            model
                .params()
                .iter()
                .map(|p| (p.name.clone(), initial_value(p, device)))
                .collect()
        });
        Network {
            model,
            vars,
            device,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Logits for an NCHW float batch. `training` turns on dropout,
    /// drop-path and batch statistics (which also updates running stats).
    pub fn forward(&self, x: &Tensor, training: bool) -> Tensor {
        let mut backend = TchBackend {
            vars: &self.vars,
            training,
            device: self.device,
        };
        self.model.forward(&mut backend, x)
    }

    /// Every tensor in declaration order, buffers included.
    pub fn named_tensors(&self) -> Vec<(&str, &Tensor)> {
        self.model
            .params()
            .iter()
            .map(|p| (p.name.as_str(), &self.vars[&p.name]))
            .collect()
    }

    /// The tensors the optimizer updates, in declaration order.
    pub fn trainable(&self) -> Vec<(&ParamSpec, &Tensor)> {
        self.model
            .params()
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| (p, &self.vars[&p.name]))
            .collect()
    }

    /// Loads timm-named weights from a `.safetensors` file (see [`weights`]).
    pub fn load_safetensors(&mut self, path: &Path) -> Result<LoadReport, WeightsError> {
        weights::load(self, path)
    }

    /// Writes every tensor (buffers included) as safetensors in timm's names.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), WeightsError> {
        weights::save(self, path)
    }

    pub(crate) fn var(&self, name: &str) -> Option<&Tensor> {
        self.vars.get(name)
    }
}

fn dims(shape: &Shape) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

/// A fresh tensor for `p`, on `device`, requiring grad when trainable.
fn initial_value(p: &ParamSpec, device: Device) -> Tensor {
    let shape = dims(&p.shape);
    let options = (Kind::Float, device);
    let fan_in: usize = p.shape.iter().skip(1).product();
    let fan_out: usize = p.shape[0] * p.shape.iter().skip(2).product::<usize>();
    let value = match p.init {
        Init::Zeros => Tensor::zeros(shape, options),
        Init::Ones => Tensor::ones(shape, options),
        Init::KaimingNormalFanOut => {
            Tensor::randn(shape, options) * (2.0 / fan_out.max(1) as f64).sqrt()
        }
        Init::TruncNormal(std) => {
            (Tensor::randn(shape, options) * std).clamp(-2.0 * std, 2.0 * std)
        }
        Init::UniformFanIn => {
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            Tensor::rand(shape, options) * (2.0 * bound) - bound
        }
    };
    value.set_requires_grad(p.kind == ParamKind::Trainable)
}
