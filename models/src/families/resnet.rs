//! ResNet (He et al. 2015) with timm's names: `conv1`, `bn1`, `layer1.0.conv1`,
//! `layer1.0.downsample.0`, `fc`. Basic blocks for resnet18/34, bottlenecks
//! for resnet26/50.

use crate::backend::{Activation, Backend, Init, Pool2d};
use crate::layers::{
    BN_EPS, ConvShape, batch_norm, batch_norm_scaled_from, classifier, conv2d,
    global_avg_pool_flat, join,
};
use crate::model::{Head, Stem};

/// Which residual block and how many per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub bottleneck: bool,
    pub depths: [usize; 4],
}

pub const RESNET18: Config = Config {
    bottleneck: false,
    depths: [2, 2, 2, 2],
};
pub const RESNET26: Config = Config {
    bottleneck: true,
    depths: [2, 2, 2, 2],
};
pub const RESNET34: Config = Config {
    bottleneck: false,
    depths: [3, 4, 6, 3],
};
pub const RESNET50: Config = Config {
    bottleneck: true,
    depths: [3, 4, 6, 3],
};

impl Config {
    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    /// Channels entering the classifier.
    pub fn num_features(&self) -> usize {
        512 * self.expansion()
    }
}

/// One residual block's place in the network.
struct Block<'a> {
    name: &'a str,
    cin: usize,
    planes: usize,
    stride: usize,
    drop_path: f64,
}

pub fn forward<B: Backend>(cfg: &Config, head: &Head, b: &mut B, x: &B::T) -> B::T {
    let x = conv2d(b, "conv1", x, ConvShape::new(3, 64, 7, 2));
    let x = batch_norm(b, "bn1", &x, 64, BN_EPS);
    let x = b.activation_in_place(x, Activation::Relu);
    let mut x = match head.stem {
        Stem::ImageNet => b.max_pool2d(
            &x,
            Pool2d {
                kernel: 3,
                stride: 2,
                padding: 1,
                ceil_mode: false,
            },
        ),
        Stem::Compact => x,
    };
    let total: usize = cfg.depths.iter().sum();
    let mut cin = 64;
    let mut index = 0;
    for (stage, &depth) in cfg.depths.iter().enumerate() {
        let planes = 64 << stage;
        for i in 0..depth {
            let name = format!("layer{}.{i}", stage + 1);
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            // Stochastic depth grows linearly with depth, as in timm.
            let drop_path = head.drop_path_rate * index as f64 / (total - 1).max(1) as f64;
            let block = Block {
                name: &name,
                cin,
                planes,
                stride,
                drop_path,
            };
            x = if cfg.bottleneck {
                bottleneck(b, &block, &x)
            } else {
                basic(b, &block, &x)
            };
            cin = planes * cfg.expansion();
            index += 1;
        }
    }
    let x = global_avg_pool_flat(b, &x);
    classifier(
        b,
        "fc",
        &x,
        (cfg.num_features(), head.num_classes),
        (head.drop_rate, Init::UniformFanIn),
    )
}

fn conv_bn<B: Backend>(b: &mut B, block: &str, i: usize, x: &B::T, s: ConvShape) -> B::T {
    let y = conv2d(b, &join(block, &format!("conv{i}")), x, s);
    batch_norm(b, &join(block, &format!("bn{i}")), &y, s.cout, BN_EPS)
}

/// The residual branch's last convolution and norm, its scale starting at
/// zero (timm's `zero_init_last`): every block starts as the identity.
fn conv_bn_last<B: Backend>(b: &mut B, block: &str, i: usize, x: &B::T, s: ConvShape) -> B::T {
    let y = conv2d(b, &join(block, &format!("conv{i}")), x, s);
    let bn = join(block, &format!("bn{i}"));
    batch_norm_scaled_from(b, &bn, &y, (s.cout, BN_EPS), Init::Zeros)
}

fn basic<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let y = conv_bn(
        b,
        blk.name,
        1,
        x,
        ConvShape::new(blk.cin, blk.planes, 3, blk.stride),
    );
    let y = b.activation_in_place(y, Activation::Relu);
    let y = conv_bn_last(
        b,
        blk.name,
        2,
        &y,
        ConvShape::new(blk.planes, blk.planes, 3, 1),
    );
    residual(b, blk, x, y, blk.planes)
}

fn bottleneck<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let (w, out) = (blk.planes, blk.planes * 4);
    let y = conv_bn(b, blk.name, 1, x, ConvShape::new(blk.cin, w, 1, 1));
    let y = b.activation_in_place(y, Activation::Relu);
    let y = conv_bn(b, blk.name, 2, &y, ConvShape::new(w, w, 3, blk.stride));
    let y = b.activation_in_place(y, Activation::Relu);
    let y = conv_bn_last(b, blk.name, 3, &y, ConvShape::new(w, out, 1, 1));
    residual(b, blk, x, y, out)
}

/// `relu(drop_path(y) + shortcut(x))`, with a strided 1x1 projection when
/// the shape changes.
fn residual<B: Backend>(b: &mut B, blk: &Block, x: &B::T, y: B::T, cout: usize) -> B::T {
    let projected;
    let shortcut = if blk.stride != 1 || blk.cin != cout {
        let down = join(blk.name, "downsample");
        let s = ConvShape::new(blk.cin, cout, 1, blk.stride).padding(0);
        let s_out = conv2d(b, &join(&down, "0"), x, s);
        projected = batch_norm(b, &join(&down, "1"), &s_out, cout, BN_EPS);
        &projected
    } else {
        x
    };
    let y = b.drop_path(&y, blk.drop_path);
    let y = b.add(&y, shortcut);
    b.activation_in_place(y, Activation::Relu)
}
