//! PP-HGNet (v1) and PP-HGNetV2 with timm's names (`timm/models/hgnet.py`):
//! `stem.*`, `stages.i.downsample`, `stages.i.blocks.j.layers.k`,
//! `stages.i.blocks.j.aggregation.{0,1}`, `head.last_conv.0`, `head.fc`.
//!
//! Both versions share the block: a chain of convolutions whose outputs
//! (and the block input) are concatenated and mixed by an aggregation. They
//! differ in the stem (v1: three 3x3 convs and a max pool; v2: a two-branch
//! stem with asymmetric padding and a ceil-mode pool), in the aggregation
//! (v1: conv + ESE attention; v2: squeeze and excitation convs), in the
//! depthwise "light" layers of v2's last stages, and in the learnable affine
//! block (LAB) after each activation, which only hgnetv2_b0..b3 use.

use crate::backend::{Activation, Backend, Init, ParamKind, Pool2d};
use crate::layers::{ConvShape, classifier, conv_norm_act, conv2d, join};
use crate::model::{Head, Stem as StemSize};

/// The stem, which also decides the aggregation (timm: `stem_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stem {
    /// Three 3x3 conv-bn-relu (the first strided) with these output
    /// channels, then a 3x3 max pool; blocks aggregate with ESE.
    V1([usize; 3]),
    /// Two-branch stem (`stem_chs = [mid, out]`); blocks aggregate with
    /// squeeze-and-excitation convolutions.
    V2 { mid: usize, out: usize },
}

/// One stage, timm's row `[in_chs, mid_chs, out_chs, blocks, downsample,
/// light_block, kernel_size, layer_num]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub cin: usize,
    pub mid: usize,
    pub cout: usize,
    pub blocks: usize,
    /// A strided depthwise conv before the first block.
    pub downsample: bool,
    /// Layers are 1x1 conv + depthwise conv instead of a full conv.
    pub light: bool,
    pub kernel: usize,
    pub layers: usize,
}

type StageRow = (usize, usize, usize, usize, bool, bool, usize, usize);

/// A [`Stage`] from timm's row, so the tables below read like timm's.
const fn stage(row: StageRow) -> Stage {
    let (cin, mid, cout, blocks, downsample, light, kernel, layers) = row;
    Stage {
        cin,
        mid,
        cout,
        blocks,
        downsample,
        light,
        kernel,
        layers,
    }
}

/// A member of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub stem: Stem,
    pub stages: [Stage; 4],
    /// Learnable affine block after every activation (timm's `use_lab`).
    pub use_lab: bool,
}

/// Width of the 1x1 conv between pooling and classifier (timm's
/// `head_hidden_size`, 2048 for every member).
const HEAD_HIDDEN: usize = 2048;

pub const HGNET_TINY: Config = Config {
    stem: Stem::V1([48, 48, 96]),
    stages: [
        stage((96, 96, 224, 1, false, false, 3, 5)),
        stage((224, 128, 448, 1, true, false, 3, 5)),
        stage((448, 160, 512, 2, true, false, 3, 5)),
        stage((512, 192, 768, 1, true, false, 3, 5)),
    ],
    use_lab: false,
};
pub const HGNET_SMALL: Config = Config {
    stem: Stem::V1([64, 64, 128]),
    stages: [
        stage((128, 128, 256, 1, false, false, 3, 6)),
        stage((256, 160, 512, 1, true, false, 3, 6)),
        stage((512, 192, 768, 2, true, false, 3, 6)),
        stage((768, 224, 1024, 1, true, false, 3, 6)),
    ],
    use_lab: false,
};
pub const HGNET_BASE: Config = Config {
    stem: Stem::V1([96, 96, 160]),
    stages: [
        stage((160, 192, 320, 1, false, false, 3, 7)),
        stage((320, 224, 640, 2, true, false, 3, 7)),
        stage((640, 256, 960, 3, true, false, 3, 7)),
        stage((960, 288, 1280, 2, true, false, 3, 7)),
    ],
    use_lab: false,
};
pub const HGNETV2_B0: Config = Config {
    stem: Stem::V2 { mid: 16, out: 16 },
    stages: [
        stage((16, 16, 64, 1, false, false, 3, 3)),
        stage((64, 32, 256, 1, true, false, 3, 3)),
        stage((256, 64, 512, 2, true, true, 5, 3)),
        stage((512, 128, 1024, 1, true, true, 5, 3)),
    ],
    use_lab: true,
};
pub const HGNETV2_B1: Config = Config {
    stem: Stem::V2 { mid: 24, out: 32 },
    stages: [
        stage((32, 32, 64, 1, false, false, 3, 3)),
        stage((64, 48, 256, 1, true, false, 3, 3)),
        stage((256, 96, 512, 2, true, true, 5, 3)),
        stage((512, 192, 1024, 1, true, true, 5, 3)),
    ],
    use_lab: true,
};
pub const HGNETV2_B2: Config = Config {
    stem: Stem::V2 { mid: 24, out: 32 },
    stages: [
        stage((32, 32, 96, 1, false, false, 3, 4)),
        stage((96, 64, 384, 1, true, false, 3, 4)),
        stage((384, 128, 768, 3, true, true, 5, 4)),
        stage((768, 256, 1536, 1, true, true, 5, 4)),
    ],
    use_lab: true,
};
pub const HGNETV2_B3: Config = Config {
    stem: Stem::V2 { mid: 24, out: 32 },
    stages: [
        stage((32, 32, 128, 1, false, false, 3, 5)),
        stage((128, 64, 512, 1, true, false, 3, 5)),
        stage((512, 128, 1024, 3, true, true, 5, 5)),
        stage((1024, 256, 2048, 1, true, true, 5, 5)),
    ],
    use_lab: true,
};
// From b4 on timm builds the v2 members without LAB.
pub const HGNETV2_B4: Config = Config {
    stem: Stem::V2 { mid: 32, out: 48 },
    stages: [
        stage((48, 48, 128, 1, false, false, 3, 6)),
        stage((128, 96, 512, 1, true, false, 3, 6)),
        stage((512, 192, 1024, 3, true, true, 5, 6)),
        stage((1024, 384, 2048, 1, true, true, 5, 6)),
    ],
    use_lab: false,
};
pub const HGNETV2_B5: Config = Config {
    stem: Stem::V2 { mid: 32, out: 64 },
    stages: [
        stage((64, 64, 128, 1, false, false, 3, 6)),
        stage((128, 128, 512, 2, true, false, 3, 6)),
        stage((512, 256, 1024, 5, true, true, 5, 6)),
        stage((1024, 512, 2048, 2, true, true, 5, 6)),
    ],
    use_lab: false,
};
pub const HGNETV2_B6: Config = Config {
    stem: Stem::V2 { mid: 48, out: 96 },
    stages: [
        stage((96, 96, 192, 2, false, false, 3, 6)),
        stage((192, 192, 512, 3, true, false, 3, 6)),
        stage((512, 384, 1024, 6, true, true, 5, 6)),
        stage((1024, 768, 2048, 3, true, true, 5, 6)),
    ],
    use_lab: false,
};

/// Logits for an NCHW batch.
pub fn forward<B: Backend>(cfg: &Config, head: &Head, b: &mut B, x: &B::T) -> B::T {
    let mut x = match cfg.stem {
        Stem::V1(chs) => stem_v1(b, chs, head.stem, x),
        Stem::V2 { mid, out } => stem_v2(b, (mid, out), (cfg.use_lab, head.stem), x),
    };
    let total: usize = cfg.stages.iter().map(|s| s.blocks).sum();
    let mut index = 0;
    for (i, st) in cfg.stages.iter().enumerate() {
        // timm: linspace(0, drop_path_rate, all blocks), split by stage.
        let drop_paths: Vec<f64> = (index..index + st.blocks)
            .map(|k| head.drop_path_rate * k as f64 / (total - 1).max(1) as f64)
            .collect();
        let name = format!("stages.{i}");
        let at = StageAt {
            name: &name,
            stage: st,
            cfg,
            drop_paths: &drop_paths,
        };
        x = run_stage(b, &at, x);
        index += st.blocks;
    }
    head_forward(b, cfg, head, &x)
}

/// What follows a ConvBNAct's batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    Relu,
    /// ReLU, then the learnable affine block `name.lab`.
    ReluLab,
}

impl After {
    /// timm adds LAB only where there is an activation.
    fn relu(use_lab: bool) -> After {
        if use_lab { After::ReluLab } else { After::Relu }
    }
}

/// timm's `ConvBNAct`: `name.conv`, `name.bn`, ReLU, `name.lab`.
fn conv_bn_act<B: Backend>(b: &mut B, name: &str, x: &B::T, s: ConvShape, after: After) -> B::T {
    let act = (after != After::Nothing).then_some(Activation::Relu);
    let y = conv_norm_act(b, name, x, s, act);
    if after == After::ReluLab {
        lab(b, &join(name, "lab"), &y)
    } else {
        y
    }
}

/// timm's `LearnableAffineBlock`: `scale * x + bias` with scalar parameters.
fn lab<B: Backend>(b: &mut B, name: &str, x: &B::T) -> B::T {
    let scale = b.param(&join(name, "scale"), &[1], ParamKind::Trainable, Init::Ones);
    let bias = b.param(&join(name, "bias"), &[1], ParamKind::Trainable, Init::Zeros);
    let y = b.mul(x, &scale);
    b.add(&y, &bias)
}

/// Three 3x3 conv-bn-relu (the first strided), then a 3x3 max pool (none
/// when the stem is compact).
fn stem_v1<B: Backend>(b: &mut B, chs: [usize; 3], size: StemSize, x: &B::T) -> B::T {
    let first = ConvShape::new(3, chs[0], 3, 2);
    let mut y = conv_bn_act(b, "stem.stem.0", x, first, After::Relu);
    for (i, pair) in chs.windows(2).enumerate() {
        let name = format!("stem.stem.{}", i + 1);
        let s = ConvShape::new(pair[0], pair[1], 3, 1);
        y = conv_bn_act(b, &name, &y, s, After::Relu);
    }
    if size == StemSize::Compact {
        return y;
    }
    let pool = Pool2d {
        kernel: 3,
        stride: 2,
        padding: 1,
        ceil_mode: false,
    };
    b.max_pool2d(&y, pool)
}

/// `F.pad(x, (0, 1, 0, 1))`: one zero column on the right and row at the bottom.
const PAD_RIGHT_BOTTOM: [usize; 4] = [0, 1, 0, 1];

/// timm's `StemV2`: a strided conv, then two branches on its padded output
/// (2x2 max pool | two 2x2 convs), concatenated, then a strided 3x3 (not
/// strided when the stem is compact) and a 1x1.
fn stem_v2<B: Backend>(
    b: &mut B,
    (mid, out): (usize, usize),
    (use_lab, size): (bool, StemSize),
    x: &B::T,
) -> B::T {
    let after = After::relu(use_lab);
    let s1 = ConvShape::new(3, mid, 3, 2);
    let x = conv_bn_act(b, "stem.stem1", x, s1, after);
    let x = b.pad2d(&x, PAD_RIGHT_BOTTOM);
    // The 2x2 convs have no padding of their own: each pad keeps the size.
    let s2a = ConvShape::new(mid, mid / 2, 2, 1);
    let x2 = conv_bn_act(b, "stem.stem2a", &x, s2a, after);
    let x2 = b.pad2d(&x2, PAD_RIGHT_BOTTOM);
    let s2b = ConvShape::new(mid / 2, mid, 2, 1);
    let x2 = conv_bn_act(b, "stem.stem2b", &x2, s2b, after);
    let pool = Pool2d {
        kernel: 2,
        stride: 1,
        padding: 0,
        ceil_mode: true,
    };
    let x1 = b.max_pool2d(&x, pool);
    let x = b.concat(&[x1, x2], 1);
    let s3 = ConvShape::new(2 * mid, mid, 3, size.stride());
    let x = conv_bn_act(b, "stem.stem3", &x, s3, after);
    let s4 = ConvShape::new(mid, out, 1, 1);
    conv_bn_act(b, "stem.stem4", &x, s4, after)
}

/// A stage's place in the network.
struct StageAt<'a> {
    name: &'a str,
    stage: &'a Stage,
    cfg: &'a Config,
    /// Stochastic depth rate of each block.
    drop_paths: &'a [f64],
}

fn run_stage<B: Backend>(b: &mut B, at: &StageAt, x: B::T) -> B::T {
    let st = at.stage;
    let mut x = if st.downsample {
        // Depthwise, strided, no activation (hence no LAB either).
        let s = ConvShape::new(st.cin, st.cin, 3, 2).groups(st.cin);
        conv_bn_act(b, &join(at.name, "downsample"), &x, s, After::Nothing)
    } else {
        x
    };
    for j in 0..st.blocks {
        let name = format!("{}.blocks.{j}", at.name);
        let block = Block {
            name: &name,
            cin: if j == 0 { st.cin } else { st.cout },
            stage: st,
            cfg: at.cfg,
            // The first block changes the width, so only later ones are residual.
            residual: j > 0,
            drop_path: at.drop_paths[j],
        };
        x = run_block(b, &block, x);
    }
    x
}

/// One `HighPerfGpuBlock`.
struct Block<'a> {
    name: &'a str,
    cin: usize,
    stage: &'a Stage,
    cfg: &'a Config,
    residual: bool,
    drop_path: f64,
}

/// Takes `x` by value: it is both the first concatenated feature and the
/// residual shortcut.
fn run_block<B: Backend>(b: &mut B, blk: &Block, x: B::T) -> B::T {
    let st = blk.stage;
    let mut features = vec![x];
    for k in 0..st.layers {
        let name = format!("{}.layers.{k}", blk.name);
        let cin = if k == 0 { blk.cin } else { st.mid };
        let last = features.last().expect("block input");
        let y = if st.light {
            light_layer(b, &name, last, blk, cin)
        } else {
            let s = ConvShape::new(cin, st.mid, st.kernel, 1);
            conv_bn_act(b, &name, last, s, After::relu(blk.cfg.use_lab))
        };
        features.push(y);
    }
    let x = b.concat(&features, 1);
    let total = blk.cin + st.layers * st.mid;
    let y = aggregate(b, blk, &x, total);
    if blk.residual {
        let y = b.drop_path(&y, blk.drop_path);
        b.add(&y, &features[0])
    } else {
        y
    }
}

/// timm's `LightConvBNAct`: a 1x1 conv without activation, then a depthwise
/// conv with one.
fn light_layer<B: Backend>(b: &mut B, name: &str, x: &B::T, blk: &Block, cin: usize) -> B::T {
    let mid = blk.stage.mid;
    let s1 = ConvShape::new(cin, mid, 1, 1);
    let y = conv_bn_act(b, &join(name, "conv1"), x, s1, After::Nothing);
    let s2 = ConvShape::new(mid, mid, blk.stage.kernel, 1).groups(mid);
    let after = After::relu(blk.cfg.use_lab);
    conv_bn_act(b, &join(name, "conv2"), &y, s2, after)
}

/// Mixes the `total` concatenated channels down to the stage's output.
fn aggregate<B: Backend>(b: &mut B, blk: &Block, x: &B::T, total: usize) -> B::T {
    let cout = blk.stage.cout;
    let after = After::relu(blk.cfg.use_lab);
    let agg = join(blk.name, "aggregation");
    match blk.cfg.stem {
        Stem::V1(_) => {
            let s = ConvShape::new(total, cout, 1, 1);
            let y = conv_bn_act(b, &join(&agg, "0"), x, s, after);
            ese(b, &join(&agg, "1"), &y, cout)
        }
        Stem::V2 { .. } => {
            // Squeeze to half the output width, then excite back up.
            let s = ConvShape::new(total, cout / 2, 1, 1);
            let y = conv_bn_act(b, &join(&agg, "0"), x, s, after);
            let s = ConvShape::new(cout / 2, cout, 1, 1);
            conv_bn_act(b, &join(&agg, "1"), &y, s, after)
        }
    }
}

/// timm's `EseModule`: `x * sigmoid(conv(mean_hw(x)))`, the conv with bias.
fn ese<B: Backend>(b: &mut B, name: &str, x: &B::T, channels: usize) -> B::T {
    let s = b.mean(x, &[2, 3], true);
    let conv = ConvShape::new(channels, channels, 1, 1).with_bias();
    let s = conv2d(b, &join(name, "conv"), &s, conv);
    let s = b.activation(&s, Activation::Sigmoid);
    b.mul(x, &s)
}

/// timm's `ClassifierHead`: average pool, 1x1 conv to 2048 + ReLU (+ LAB),
/// dropout, flatten, `head.fc`.
fn head_forward<B: Backend>(b: &mut B, cfg: &Config, head: &Head, x: &B::T) -> B::T {
    let features = cfg.stages[3].cout;
    let x = b.mean(x, &[2, 3], true);
    let s = ConvShape::new(features, HEAD_HIDDEN, 1, 1);
    let x = conv2d(b, "head.last_conv.0", &x, s);
    let x = b.activation_in_place(x, Activation::Relu);
    // The ReLU sits at index 1 of timm's `last_conv` Sequential.
    let x = if cfg.use_lab {
        lab(b, "head.last_conv.2", &x)
    } else {
        x
    };
    let x = b.reshape(&x, &[0, -1]);
    classifier(
        b,
        "head.fc",
        &x,
        (HEAD_HIDDEN, head.num_classes),
        (head.drop_rate, Init::UniformFanIn),
    )
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelOptions};

    fn build(name: &str) -> Model {
        let options = ModelOptions::new(1000, 224);
        Model::new(name, options).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_member_has_timms_parameter_count() {
        // sum(p.numel() for p in timm.create_model(name).parameters()),
        // timm 1.0.31, 1000 classes.
        let expected = [
            ("hgnetv2_b0", 5_996_550),
            ("hgnetv2_b1", 6_343_158),
            ("hgnetv2_b2", 11_221_356),
            ("hgnetv2_b3", 16_292_216),
            ("hgnetv2_b4", 19_796_680),
            ("hgnetv2_b5", 39_569_064),
            ("hgnetv2_b6", 75_256_776),
            ("hgnet_tiny", 14_735_864),
            ("hgnet_small", 24_360_872),
            ("hgnet_base", 71_578_184),
        ];
        for (name, count) in expected {
            assert_eq!(build(name).param_count(), count, "{name}");
        }
    }

    #[test]
    fn seed_names_resolve() {
        let pairs = [
            ("PP-HGNetV2_B6", "hgnetv2_b6"),
            ("PP-HGNetV2_B4", "hgnetv2_b4"),
            ("PP-HGNetV2_B0", "hgnetv2_b0"),
            ("PP-HGNet_small", "hgnet_small"),
        ];
        for (seed, timm) in pairs {
            assert_eq!(crate::registry::find(seed).unwrap().name, timm);
        }
    }

    #[test]
    fn classifier_is_head_fc() {
        let model = build("hgnetv2_b0");
        let names: Vec<&str> = model
            .head_params()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["head.fc.weight", "head.fc.bias"]);
    }

    #[test]
    fn smallest_input_is_32() {
        let options = |input_size| ModelOptions::new(7, input_size);
        for name in ["hgnetv2_b0", "hgnet_tiny"] {
            assert!(Model::new(name, options(32)).is_ok(), "{name}");
            assert!(Model::new(name, options(31)).is_err(), "{name}");
        }
    }
}
