//! A zoo model with its tensors on a device.

use std::collections::HashMap;
use std::path::Path;

use semiclass_models::backend::{Init, ParamKind, ParamSpec};
use semiclass_models::{Model, spec::Shape};
use tch::{Device, Kind, Tensor};

use super::tch_backend::TchBackend;
use super::weights::{self, LoadReport, WeightsError};

/// How image-shaped tensors are laid out in memory (the values are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// NHWC memory behind NCHW shapes: the fast one (see [`to_channels_last`]).
    ChannelsLast,
    /// PyTorch's default NCHW, as timm runs: bit-for-bit the same kernels,
    /// which the parity tests use to compare gradients exactly.
    Contiguous,
}

/// A model's tensors, named as timm names them, and its forward pass.
pub struct Network {
    pub model: Model,
    vars: HashMap<String, Tensor>,
    device: Device,
    layout: Layout,
}

impl Network {
    /// Creates every declared tensor with its initialiser, channels last.
    pub fn new(model: Model, device: Device) -> Network {
        Network::with_layout(model, device, Layout::ChannelsLast)
    }

    /// As [`Network::new`], with the given memory layout.
    pub fn with_layout(model: Model, device: Device, layout: Layout) -> Network {
        let vars = tch::no_grad(|| {
            model
                .params()
                .iter()
                .map(|p| {
                    // Gradients on after the layout change, so the tensor is a leaf.
                    let value = in_layout(initial_value(p, device), layout);
                    (
                        p.name.clone(),
                        value.set_requires_grad(p.kind == ParamKind::Trainable),
                    )
                })
                .collect()
        });
        Network {
            model,
            vars,
            device,
            layout,
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
        self.model
            .forward(&mut backend, &in_layout(x.shallow_clone(), self.layout))
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

    /// Loads named tensors already in memory (e.g. a resume state), with the
    /// same checks as a file; `source` names them in errors.
    pub fn load_tensors(
        &mut self,
        tensors: Vec<(String, Tensor)>,
        source: &Path,
    ) -> Result<LoadReport, WeightsError> {
        weights::load_named(self, tensors, source)
    }

    /// Writes every tensor (buffers included) as safetensors in timm's names.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), WeightsError> {
        weights::save(self, path)
    }

    pub(crate) fn var(&self, name: &str) -> Option<&Tensor> {
        self.vars.get(name)
    }
}

/// The same values with an NCHW shape but NHWC memory ("channels last"),
/// which oneDNN's convolutions run fastest on: a LCNet training step on CPU
/// is 1.7x faster than in NCHW. tch has no memory-format API, so the layout
/// comes from a permuted copy; libtorch recognises it by the strides, and
/// every operation downstream keeps it. Other ranks are returned as they are.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    let already = t.dim() == 4 && t.stride()[1] == 1 && t.size()[1] > 1;
    if t.dim() != 4 || already {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn in_layout(t: Tensor, layout: Layout) -> Tensor {
    match layout {
        Layout::ChannelsLast => to_channels_last(&t),
        Layout::Contiguous => t,
    }
}

fn dims(shape: &Shape) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

/// A fresh tensor for `p`, on `device`.
fn initial_value(p: &ParamSpec, device: Device) -> Tensor {
    let shape = dims(&p.shape);
    let options = (Kind::Float, device);
    let fan_in: usize = p.shape.iter().skip(1).product();
    let fan_out: usize = p.shape[0] * p.shape.iter().skip(2).product::<usize>();
    match p.init {
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
    }
}
