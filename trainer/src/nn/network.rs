//! A zoo model with its tensors on a device.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use semiclass_distributed::ProcessGroup;

use semiclass_models::backend::{Init, ParamKind, ParamSpec};
use semiclass_models::{Model, spec::Shape};
use tch::{Device, Kind, Tensor};

use super::tch_backend::TchBackend;
use super::weights::{self, LoadReport, WeightsError};

/// How image-shaped tensors are laid out in memory (the values are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// NHWC memory behind NCHW shapes (see [`to_channels_last`]), and
    /// convolutions without the taps that meet only padding
    /// ([`super::padding_taps`]): the fast one.
    ChannelsLast,
    /// PyTorch's default NCHW, every tap computed, as timm runs:
    /// bit-for-bit the same kernels, which the parity tests use to compare
    /// gradients exactly.
    Contiguous,
}

/// A model's tensors, named as timm names them, and its forward pass.
pub struct Network {
    pub model: Model,
    vars: HashMap<String, Tensor>,
    device: Device,
    layout: Layout,
    drop_padding_taps: bool,
    /// Set for SyncBatchNorm in a data-parallel run.
    sync_bn: Option<Arc<ProcessGroup>>,
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
            drop_padding_taps: layout == Layout::ChannelsLast,
            sync_bn: None,
        }
    }

    /// Computes every kernel tap, as libtorch would: for benchmarks that
    /// measure what dropping the padding-only taps saves.
    pub fn with_every_tap(self) -> Network {
        Network {
            drop_padding_taps: false,
            ..self
        }
    }

    /// Training-mode BatchNorm takes its statistics over every rank of
    /// `group` (SyncBatchNorm); `None`: over this process's batch.
    pub fn set_sync_batch_norm(&mut self, group: Option<Arc<ProcessGroup>>) {
        self.sync_bn = group;
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
            drop_padding_taps: self.drop_padding_taps,
            sync_bn: self.sync_bn.as_deref(),
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

/// Uniform in `±bound`.
fn uniform(shape: Vec<i64>, options: (Kind, Device), bound: f64) -> Tensor {
    Tensor::rand(shape, options) * (2.0 * bound) - bound
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
        Init::UniformFanIn => uniform(shape, options, 1.0 / (fan_in.max(1) as f64).sqrt()),
        Init::Normal(std) => Tensor::randn(shape, options) * std,
        Init::Uniform(bound) => uniform(shape, options, bound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use semiclass_models::ModelOptions;

    fn network(name: &str) -> Network {
        tch::manual_seed(0);
        let model = Model::new(name, ModelOptions::new(10, 32)).unwrap();
        Network::new(model, Device::Cpu)
    }

    fn std_of(net: &Network, name: &str) -> f64 {
        net.var(name).unwrap().std(true).double_value(&[])
    }

    #[test]
    fn depthwise_kernels_start_as_timm_starts_them() {
        // timm's `_init_weight_goog`: fan-out k² · C / groups, so a 3x3
        // depthwise kernel has std sqrt(2 / 9) whatever its channel count.
        let net = network("lcnet_050");
        let (dw, pw) = ("blocks.1.0.conv_dw.weight", "blocks.1.0.conv_pw.weight");
        assert_eq!(net.var(dw).unwrap().size()[1], 1, "{dw} is depthwise");
        let want = (2.0f64 / 9.0).sqrt();
        let got = std_of(&net, dw);
        assert!(
            (got / want - 1.0).abs() < 0.25,
            "{dw}: std {got}, want {want}"
        );
        // A 1x1 pointwise kernel: fan-out = its output channels.
        let cout = net.var(pw).unwrap().size()[0] as f64;
        let got = std_of(&net, pw);
        let want = (2.0 / cout).sqrt();
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "{pw}: std {got}, want {want}"
        );
        // The classifier: uniform in ±1/sqrt(classes).
        let max = net
            .var("classifier.weight")
            .unwrap()
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            max > 0.25 && max <= 1.0 / 10f64.sqrt(),
            "classifier max {max}"
        );
    }

    #[test]
    fn every_resnet_block_starts_as_the_identity() {
        let net = network("resnet18");
        for stage in 1..=4 {
            for block in 0..2 {
                let name = format!("layer{stage}.{block}.bn2.weight");
                let scale = net.var(&name).unwrap().abs().max().double_value(&[]);
                assert_eq!(scale, 0.0, "{name}");
            }
        }
        assert_eq!(
            net.var("layer1.0.bn1.weight")
                .unwrap()
                .min()
                .double_value(&[]),
            1.0
        );
    }
}
