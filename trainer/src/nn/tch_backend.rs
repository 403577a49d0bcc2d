//! The tch backend: the model zoo's forward code, computed by libtorch with
//! autograd.

use std::collections::HashMap;

use semiclass_distributed::ProcessGroup;
use semiclass_models::backend::{
    Activation, Backend, BatchNormParams, Conv2d, Init, ParamKind, Pool2d,
};
use tch::{Device, Kind, Tensor};

use super::padding_taps;
use super::sync_bn::sync_batch_norm;

/// Computes forward code with the given named tensors.
pub struct TchBackend<'a> {
    pub vars: &'a HashMap<String, Tensor>,
    pub training: bool,
    pub device: Device,
    /// Convolutions skip the kernel taps that meet only padding
    /// ([`super::padding_taps`]).
    pub drop_padding_taps: bool,
    /// SyncBatchNorm's process group: in training mode, BatchNorm takes
    /// its statistics over every rank's slice ([`super::sync_bn`]).
    pub sync_bn: Option<&'a ProcessGroup>,
}

fn pair(v: usize) -> [i64; 2] {
    [v as i64, v as i64]
}

impl Backend for TchBackend<'_> {
    type T = Tensor;

    fn param(&mut self, name: &str, _shape: &[usize], _kind: ParamKind, _init: Init) -> Tensor {
        // The tensors were created from the same forward code's declarations,
        // so a missing name is a bug in this program, not in user input.
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("parameter {name} was not created"))
            .shallow_clone()
    }

    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Tensor {
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        Tensor::from_slice(values)
            .reshape(shape)
            .to_device(self.device)
    }

    fn training(&self) -> bool {
        self.training
    }

    fn conv2d(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, c: Conv2d) -> Tensor {
        if self.drop_padding_taps && c.dilation == 1 {
            let (stride, padding) = (c.stride as i64, c.padding as i64);
            return padding_taps::conv2d(x, w, b, stride, padding, c.groups as i64);
        }
        x.conv2d(
            w,
            b,
            pair(c.stride),
            pair(c.padding),
            pair(c.dilation),
            c.groups as i64,
        )
    }

    fn batch_norm(&mut self, x: &Tensor, p: BatchNormParams<Tensor>, eps: f64) -> Tensor {
        if let (true, Some(group)) = (self.training, self.sync_bn) {
            return sync_batch_norm(x, &p, eps, group);
        }
        x.batch_norm(
            Some(&p.weight),
            Some(&p.bias),
            Some(&p.running_mean),
            Some(&p.running_var),
            self.training,
            0.1,
            eps,
            true,
        )
    }

    fn layer_norm(&mut self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let dim = *x.size().last().expect("layer norm of a scalar");
        x.layer_norm([dim], Some(w), Some(b), eps, true)
    }

    fn linear(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        x.linear(w, b)
    }

    fn matmul(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a.matmul(b)
    }

    fn activation(&mut self, x: &Tensor, act: Activation) -> Tensor {
        match act {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu("none"),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Silu => x.silu(),
            Activation::HardSwish => x.hardswish(),
            Activation::HardSigmoid => x.hardsigmoid(),
        }
    }

    fn activation_in_place(&mut self, x: Tensor, act: Activation) -> Tensor {
        let mut x = x;
        match act {
            Activation::Relu => x.relu_(),
            Activation::Gelu => x.gelu_("none"),
            Activation::Sigmoid => x.sigmoid_(),
            Activation::Silu => x.silu_(),
            Activation::HardSwish => x.hardswish_(),
            Activation::HardSigmoid => x.hardsigmoid_(),
        }
    }

    fn softmax(&mut self, x: &Tensor, dim: usize) -> Tensor {
        x.softmax(dim as i64, None::<Kind>)
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a + b
    }

    fn mul(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a * b
    }

    fn scale(&mut self, x: &Tensor, factor: f64) -> Tensor {
        x * factor
    }

    fn max_pool2d(&mut self, x: &Tensor, p: Pool2d) -> Tensor {
        x.max_pool2d(
            pair(p.kernel),
            pair(p.stride),
            pair(p.padding),
            [1, 1],
            p.ceil_mode,
        )
    }

    fn avg_pool2d(&mut self, x: &Tensor, p: Pool2d) -> Tensor {
        x.avg_pool2d(
            pair(p.kernel),
            pair(p.stride),
            pair(p.padding),
            p.ceil_mode,
            false,
            None,
        )
    }

    fn mean(&mut self, x: &Tensor, dims: &[usize], keep: bool) -> Tensor {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        x.mean_dim(dims.as_slice(), keep, None::<Kind>)
    }

    fn reshape(&mut self, x: &Tensor, shape: &[i64]) -> Tensor {
        let size = x.size();
        let shape: Vec<i64> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if d == 0 { size[i] } else { d })
            .collect();
        x.reshape(shape)
    }

    fn permute(&mut self, x: &Tensor, order: &[usize]) -> Tensor {
        let order: Vec<i64> = order.iter().map(|&d| d as i64).collect();
        x.permute(order)
    }

    fn concat(&mut self, xs: &[Tensor], dim: usize) -> Tensor {
        Tensor::cat(xs, dim as i64)
    }

    fn slice(&mut self, x: &Tensor, dim: usize, start: usize, end: usize) -> Tensor {
        x.narrow(dim as i64, start as i64, (end - start) as i64)
    }

    fn pad2d(&mut self, x: &Tensor, pads: [usize; 4]) -> Tensor {
        x.constant_pad_nd(pads.map(|p| p as i64))
    }

    fn roll(&mut self, x: &Tensor, shifts: &[i64], dims: &[usize]) -> Tensor {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        x.roll(shifts, dims)
    }

    fn repeat_batch(&mut self, x: &Tensor, like: &Tensor) -> Tensor {
        let mut size = x.size();
        size[0] = like.size()[0];
        x.expand(size, false)
    }

    fn gather_rows(&mut self, table: &Tensor, indices: &[usize]) -> Tensor {
        let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        table.index_select(0, &Tensor::from_slice(&indices).to_device(table.device()))
    }

    fn dropout(&mut self, x: &Tensor, p: f64) -> Tensor {
        if self.training && p > 0.0 {
            x.dropout(p, true)
        } else {
            x.shallow_clone()
        }
    }

    fn drop_path(&mut self, x: &Tensor, p: f64) -> Tensor {
        if !self.training || p <= 0.0 {
            return x.shallow_clone();
        }
        // One keep/drop decision per sample, scaled so the expectation is unchanged.
        let mut mask_shape = vec![1i64; x.dim()];
        mask_shape[0] = x.size()[0];
        let keep = 1.0 - p;
        let mask = Tensor::empty(mask_shape, (x.kind(), x.device())).bernoulli_float_(keep);
        x * mask / keep
    }
}
