//! Layers as functions: each declares its parameters under timm's names and
//! applies the backend's operations. Families compose these.

use crate::backend::{Activation, Backend, BatchNormParams, Conv2d, Init, ParamKind};

/// `prefix.name`, or `name` at the root.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn weight<B: Backend>(b: &mut B, prefix: &str, shape: &[usize], init: Init) -> B::T {
    b.param(&join(prefix, "weight"), shape, ParamKind::Trainable, init)
}

fn bias<B: Backend>(b: &mut B, prefix: &str, size: usize, init: Init) -> B::T {
    b.param(&join(prefix, "bias"), &[size], ParamKind::Trainable, init)
}

/// A convolution's shape: channels in and out, square kernel, settings.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub conv: Conv2d,
    pub bias: bool,
    /// timm's TensorFlow-style init (`_init_weight_goog`, MobileNetV3 and
    /// LCNet): fan-out `k² · cout / groups`, so a depthwise kernel starts
    /// with std `sqrt(2 / k²)`. PyTorch's `kaiming_normal_` (ResNet, HGNet)
    /// ignores groups and starts depthwise kernels `sqrt(C)` times smaller.
    pub fan_out_per_group: bool,
}

impl ConvShape {
    /// A bias-free convolution with timm's symmetric padding for this kernel.
    pub fn new(cin: usize, cout: usize, kernel: usize, stride: usize) -> Self {
        ConvShape {
            cin,
            cout,
            kernel,
            conv: Conv2d::new().stride(stride).timm_padding(kernel),
            bias: false,
            fan_out_per_group: false,
        }
    }

    /// [`ConvShape::new`] with timm's TensorFlow-style init (MobileNetV3, LCNet).
    pub fn tf(cin: usize, cout: usize, kernel: usize, stride: usize) -> Self {
        ConvShape::new(cin, cout, kernel, stride).tf_init()
    }

    /// timm's TensorFlow-style init (see [`ConvShape::fan_out_per_group`]).
    pub fn tf_init(mut self) -> Self {
        self.fan_out_per_group = true;
        self
    }

    pub fn groups(mut self, groups: usize) -> Self {
        self.conv = self.conv.groups(groups);
        self
    }

    pub fn padding(mut self, padding: usize) -> Self {
        self.conv = self.conv.padding(padding);
        self
    }

    pub fn with_bias(mut self) -> Self {
        self.bias = true;
        self
    }
}

/// `nn.Conv2d` at `name` (`name.weight`, `name.bias`).
pub fn conv2d<B: Backend>(b: &mut B, name: &str, x: &B::T, s: ConvShape) -> B::T {
    let shape = [s.cout, s.cin / s.conv.groups, s.kernel, s.kernel];
    let init = if s.fan_out_per_group {
        let fan_out = s.kernel * s.kernel * s.cout / s.conv.groups;
        Init::Normal((2.0 / fan_out.max(1) as f64).sqrt())
    } else {
        Init::KaimingNormalFanOut
    };
    let w = weight(b, name, &shape, init);
    let bias = s.bias.then(|| bias(b, name, s.cout, Init::Zeros));
    b.conv2d(x, &w, bias.as_ref(), s.conv)
}

/// `nn.BatchNorm2d` at `name`, PyTorch's eps unless given.
pub fn batch_norm<B: Backend>(b: &mut B, name: &str, x: &B::T, channels: usize, eps: f64) -> B::T {
    batch_norm_scaled_from(b, name, x, (channels, eps), Init::Ones)
}

/// `nn.BatchNorm2d` whose scale starts at `scale_init`: `Init::Zeros` for
/// the last norm of a residual branch (timm's `zero_init_last`), so every
/// block starts as the identity.
pub fn batch_norm_scaled_from<B: Backend>(
    b: &mut B,
    name: &str,
    x: &B::T,
    (channels, eps): (usize, f64),
    scale_init: Init,
) -> B::T {
    let buffer =
        |b: &mut B, n: &str, init| b.param(&join(name, n), &[channels], ParamKind::Buffer, init);
    let p = BatchNormParams {
        weight: weight(b, name, &[channels], scale_init),
        bias: bias(b, name, channels, Init::Zeros),
        running_mean: buffer(b, "running_mean", Init::Zeros),
        running_var: buffer(b, "running_var", Init::Ones),
    };
    b.batch_norm(x, p, eps)
}

/// PyTorch's BatchNorm default epsilon.
pub const BN_EPS: f64 = 1e-5;

/// `nn.Linear` at `name`.
pub fn linear<B: Backend>(
    b: &mut B,
    name: &str,
    x: &B::T,
    (cin, cout): (usize, usize),
    with_bias: bool,
    init: Init,
) -> B::T {
    let w = weight(b, name, &[cout, cin], init);
    let bias = with_bias.then(|| bias(b, name, cout, Init::Zeros));
    b.linear(x, &w, bias.as_ref())
}

/// `nn.LayerNorm(dim)` at `name`.
pub fn layer_norm<B: Backend>(b: &mut B, name: &str, x: &B::T, dim: usize, eps: f64) -> B::T {
    let w = weight(b, name, &[dim], Init::Ones);
    let bias = bias(b, name, dim, Init::Zeros);
    b.layer_norm(x, &w, &bias, eps)
}

/// Convolution, BatchNorm, optional activation: timm's `ConvNormAct` layout
/// (`name.conv`, `name.bn`).
pub fn conv_norm_act<B: Backend>(
    b: &mut B,
    name: &str,
    x: &B::T,
    s: ConvShape,
    act: Option<Activation>,
) -> B::T {
    let y = conv2d(b, &join(name, "conv"), x, s);
    let y = batch_norm(b, &join(name, "bn"), &y, s.cout, BN_EPS);
    match act {
        Some(act) => b.activation_in_place(y, act),
        None => y,
    }
}

/// Global average pool over H and W, then flatten: `[B, C, H, W] -> [B, C]`.
pub fn global_avg_pool_flat<B: Backend>(b: &mut B, x: &B::T) -> B::T {
    b.mean(x, &[2, 3], false)
}

/// The classification head shared by most families: dropout, then
/// `nn.Linear` at `name` with the family's weight init.
pub fn classifier<B: Backend>(
    b: &mut B,
    name: &str,
    x: &B::T,
    (features, classes): (usize, usize),
    (drop_rate, init): (f64, Init),
) -> B::T {
    let x = b.dropout(x, drop_rate);
    linear(b, name, &x, (features, classes), true, init)
}

/// timm's `make_divisible`: round `v` to a multiple of `divisor`, never
/// more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let rounded = (((v + d / 2.0) / d).floor() * d).max(d);
    if rounded < 0.9 * v {
        (rounded + d) as usize
    } else {
        rounded as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_timm() {
        // Expected values printed by timm.layers.make_divisible.
        assert_eq!(make_divisible(8.0, 8), 8);
        assert_eq!(make_divisible(18.0, 8), 24);
        assert_eq!(make_divisible(20.0, 8), 24);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(36.0, 8), 40);
    }

    #[test]
    fn join_builds_dotted_names() {
        assert_eq!(join("", "conv1"), "conv1");
        assert_eq!(join("layer1.0", "conv1"), "layer1.0.conv1");
    }
}
