//! MobileNetV3 (Howard et al. 2019) as timm builds it (`mobilenetv3.py`,
//! `_efficientnet_builder.py`, `_efficientnet_blocks.py`), with timm's
//! names: `conv_stem`, `bn1`, `blocks.{stage}.{block}.{conv_pw, bn1, conv_dw,
//! bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}`, `conv_head`,
//! `classifier`.
//!
//! The architecture is timm's `arch_def` verbatim: one block string per row,
//! decoded as `_decode_block_str` does. The block kinds, the builder and the
//! "efficient head" (pool, then a 1x1 conv with bias, no BatchNorm) are
//! shared with PP-LCNet ([`super::lcnet`]), which timm builds with the same
//! class.
//!
//! Block strings: a kind (`ds` depthwise-separable, `dsa` the same with an
//! activation after the pointwise conv and no skip, `ir` inverted residual,
//! `cn` conv-BN-act), then `r` repeats, `k` kernel, `s` stride of the first
//! repeat, `e` expansion ratio, `c` output channels (before the width
//! multiplier), `se` squeeze-excite ratio, `nre` ReLU instead of the model's
//! hard-swish.

use crate::backend::{Activation, Backend, Init};
use crate::layers::{BN_EPS, ConvShape, batch_norm, classifier, conv2d, join, make_divisible};
use crate::model::Head;

/// The activation of every member here (timm's `act_layer='hard_swish'`);
/// blocks marked `nre` use ReLU instead.
const ACT: Activation = Activation::HardSwish;

/// timm's stem width before the multiplier.
const STEM: usize = 16;

/// timm's `arch_def`: stages of block strings.
pub type ArchDef = &'static [&'static [&'static str]];

/// How the squeeze-excite bottleneck width is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeRounding {
    /// timm's `round_channels`: a multiple of 8 (MobileNetV3's `rd_round_fn`).
    Divisible8,
    /// Python's `round`, ties to even (SqueezeExcite's default, LCNet).
    Nearest,
}

/// One member: timm's generator arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub arch_def: ArchDef,
    /// Width multiplier (`channel_multiplier`).
    pub multiplier: f64,
    /// Keep the stem at 16 channels whatever the multiplier (`fix_stem`).
    pub fix_stem: bool,
    /// Channels of `conv_head`; timm does not scale them.
    pub num_features: usize,
    pub se_rounding: SeRounding,
}

/// `_gen_mobilenet_v3`'s `mobilenetv3_small_*` definition.
const SMALL: ArchDef = &[
    &["ds_r1_k3_s2_e1_c16_se0.25_nre"],
    &["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
    &["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"],
    &["ir_r2_k5_s1_e3_c48_se0.25"],
    &["ir_r3_k5_s2_e6_c96_se0.25"],
    &["cn_r1_k1_s1_c576"],
];

/// `_gen_mobilenet_v3`'s `mobilenetv3_large_*` definition.
const LARGE: ArchDef = &[
    &["ds_r1_k3_s1_e1_c16_nre"],
    &["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
    &["ir_r3_k5_s2_e3_c40_se0.25_nre"],
    &[
        "ir_r1_k3_s2_e6_c80",
        "ir_r1_k3_s1_e2.5_c80",
        "ir_r2_k3_s1_e2.3_c80",
    ],
    &["ir_r2_k3_s1_e6_c112_se0.25"],
    &["ir_r3_k5_s2_e6_c160_se0.25"],
    &["cn_r1_k1_s1_c960"],
];

const fn mobilenetv3(arch_def: ArchDef, multiplier: f64, num_features: usize) -> Config {
    Config {
        arch_def,
        multiplier,
        // timm: `fix_stem=channel_multiplier < 0.75`.
        fix_stem: multiplier < 0.75,
        num_features,
        se_rounding: SeRounding::Divisible8,
    }
}

pub const SMALL_050: Config = mobilenetv3(SMALL, 0.5, 1024);
pub const SMALL_075: Config = mobilenetv3(SMALL, 0.75, 1024);
pub const SMALL_100: Config = mobilenetv3(SMALL, 1.0, 1024);
pub const LARGE_100: Config = mobilenetv3(LARGE, 1.0, 1280);

impl Config {
    /// timm's `round_chs_fn`: channels times the multiplier, to a multiple of 8.
    fn round_chs(&self, channels: usize) -> usize {
        make_divisible(channels as f64 * self.multiplier, 8)
    }

    fn stem_channels(&self) -> usize {
        if self.fix_stem {
            STEM
        } else {
            self.round_chs(STEM)
        }
    }

    fn se_channels(&self, channels: usize, ratio: f64) -> usize {
        let v = channels as f64 * ratio;
        match self.se_rounding {
            SeRounding::Divisible8 => make_divisible(v, 8),
            SeRounding::Nearest => v.round_ties_even() as usize,
        }
    }
}

/// The block kinds these families use.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `ds` / `dsa` (`pw_act`): depthwise, SE, pointwise.
    DepthwiseSeparable { pw_act: bool },
    /// `ir`: pointwise expansion, depthwise, SE, linear pointwise projection.
    InvertedResidual { exp_ratio: f64 },
    /// `cn`: conv, BatchNorm, activation.
    ConvBnAct,
}

/// One decoded block string.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BlockDef {
    kind: Kind,
    repeat: usize,
    kernel: usize,
    stride: usize,
    out: usize,
    /// Squeeze-excite ratio; 0 for none.
    se_ratio: f64,
    act: Activation,
}

/// Decodes a block string as timm's `_decode_block_str`, for the options
/// these families use. The strings are constants of this file, so a bad
/// one is a programming error.
fn decode(block: &str) -> BlockDef {
    let bad = |why: &str| -> ! { panic!("block string '{block}': {why}") };
    let mut ops = block.split('_');
    let kind = ops.next().unwrap_or_default();
    let mut def = BlockDef {
        kind: Kind::ConvBnAct,
        repeat: 1,
        kernel: 1,
        stride: 1,
        out: 0,
        se_ratio: 0.0,
        act: ACT,
    };
    let mut exp_ratio = 1.0;
    for op in ops {
        if op == "nre" {
            def.act = Activation::Relu;
            continue;
        }
        let digits = op.find(|c: char| c.is_ascii_digit());
        let (key, value) = op.split_at(digits.unwrap_or_else(|| bad(op)));
        let int = || value.parse::<usize>().unwrap_or_else(|_| bad(op));
        let float = || value.parse::<f64>().unwrap_or_else(|_| bad(op));
        match key {
            "r" => def.repeat = int(),
            "k" => def.kernel = int(),
            "s" => def.stride = int(),
            "c" => def.out = int(),
            "e" => exp_ratio = float(),
            "se" => def.se_ratio = float(),
            _ => bad(op),
        }
    }
    def.kind = match kind {
        "ds" => Kind::DepthwiseSeparable { pw_act: false },
        "dsa" => Kind::DepthwiseSeparable { pw_act: true },
        "ir" => Kind::InvertedResidual { exp_ratio },
        "cn" => Kind::ConvBnAct,
        _ => bad("unknown block kind"),
    };
    def
}

/// One block's place in the network.
struct Block<'a> {
    name: &'a str,
    cfg: &'a Config,
    def: &'a BlockDef,
    cin: usize,
    cout: usize,
    stride: usize,
    drop_path: f64,
}

impl Block<'_> {
    /// timm's `has_skip`: shape-preserving `ds` and `ir` blocks; never `dsa`
    /// (`noskip`) nor `cn` (no `skip` option).
    fn has_skip(&self) -> bool {
        let kind_skips = matches!(
            self.def.kind,
            Kind::DepthwiseSeparable { pw_act: false } | Kind::InvertedResidual { .. }
        );
        kind_skips && self.stride == 1 && self.cin == self.cout
    }

    fn layer(&self, name: &str) -> String {
        join(self.name, name)
    }
}

/// Stem, blocks, efficient head: timm's `MobileNetV3.forward`.
pub fn forward<B: Backend>(cfg: &Config, head: &Head, b: &mut B, x: &B::T) -> B::T {
    let stem = cfg.stem_channels();
    let x = conv2d(
        b,
        "conv_stem",
        x,
        ConvShape::tf(3, stem, 3, head.stem.stride()),
    );
    let x = batch_norm_act(b, "bn1", &x, stem, Some(ACT));
    let (x, channels) = blocks(cfg, head, b, x);
    let x = b.mean(&x, &[2, 3], true);
    let s = ConvShape::tf(channels, cfg.num_features, 1, 1).with_bias();
    let x = conv2d(b, "conv_head", &x, s);
    let x = b.activation_in_place(x, ACT);
    let x = b.reshape(&x, &[0, -1]);
    classifier(
        b,
        "classifier",
        &x,
        (cfg.num_features, head.num_classes),
        // timm's `_init_weight_goog`: uniform in ±1/sqrt(fan_out).
        (
            head.drop_rate,
            Init::Uniform(1.0 / (head.num_classes as f64).sqrt()),
        ),
    )
}

/// timm's `EfficientNetBuilder`: every block of every stage, after the
/// stem; returns the output and its channel count.
fn blocks<B: Backend>(cfg: &Config, head: &Head, b: &mut B, x: B::T) -> (B::T, usize) {
    let stages: Vec<Vec<BlockDef>> = cfg
        .arch_def
        .iter()
        .map(|stage| stage.iter().map(|s| decode(s)).collect())
        .collect();
    let total: usize = stages.iter().flatten().map(|d| d.repeat).sum();
    let (mut x, mut cin, mut index) = (x, cfg.stem_channels(), 0);
    for (s, stage) in stages.iter().enumerate() {
        let repeats = stage
            .iter()
            .flat_map(|def| (0..def.repeat).map(move |_| def));
        for (i, def) in repeats.enumerate() {
            let name = format!("blocks.{s}.{i}");
            let block = Block {
                name: &name,
                cfg,
                def,
                cin,
                cout: cfg.round_chs(def.out),
                // Only a stage's first block strides.
                stride: if i == 0 { def.stride } else { 1 },
                // Stochastic depth grows with the block index over the
                // block count (not count - 1), as timm's `_make_block`.
                drop_path: head.drop_path_rate * index as f64 / total as f64,
            };
            x = apply(b, &block, &x);
            cin = block.cout;
            index += 1;
        }
    }
    (x, cin)
}

fn apply<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    match blk.def.kind {
        Kind::DepthwiseSeparable { pw_act } => depthwise_separable(b, blk, x, pw_act),
        Kind::InvertedResidual { exp_ratio } => inverted_residual(b, blk, x, exp_ratio),
        Kind::ConvBnAct => {
            let s = ConvShape::tf(blk.cin, blk.cout, blk.def.kernel, blk.stride);
            let y = conv2d(b, &blk.layer("conv"), x, s);
            batch_norm_act(b, &blk.layer("bn1"), &y, blk.cout, Some(blk.def.act))
        }
    }
}

/// timm's `DepthwiseSeparableConv`.
fn depthwise_separable<B: Backend>(b: &mut B, blk: &Block, x: &B::T, pw_act: bool) -> B::T {
    let (cin, act) = (blk.cin, blk.def.act);
    let y = depthwise(b, blk, x, cin, "bn1");
    let y = squeeze_excite(b, blk, y, cin);
    let y = conv2d(
        b,
        &blk.layer("conv_pw"),
        &y,
        ConvShape::tf(cin, blk.cout, 1, 1),
    );
    let y = batch_norm_act(b, &blk.layer("bn2"), &y, blk.cout, pw_act.then_some(act));
    residual(b, blk, x, y)
}

/// timm's `InvertedResidual`.
fn inverted_residual<B: Backend>(b: &mut B, blk: &Block, x: &B::T, exp_ratio: f64) -> B::T {
    let mid = make_divisible(blk.cin as f64 * exp_ratio, 8);
    let y = conv2d(
        b,
        &blk.layer("conv_pw"),
        x,
        ConvShape::tf(blk.cin, mid, 1, 1),
    );
    let y = batch_norm_act(b, &blk.layer("bn1"), &y, mid, Some(blk.def.act));
    let y = depthwise(b, blk, &y, mid, "bn2");
    let y = squeeze_excite(b, blk, y, mid);
    let y = conv2d(
        b,
        &blk.layer("conv_pwl"),
        &y,
        ConvShape::tf(mid, blk.cout, 1, 1),
    );
    let y = batch_norm_act(b, &blk.layer("bn3"), &y, blk.cout, None);
    residual(b, blk, x, y)
}

/// The block's strided depthwise `conv_dw`, then BatchNorm `bn` and the
/// block's activation.
fn depthwise<B: Backend>(b: &mut B, blk: &Block, x: &B::T, channels: usize, bn: &str) -> B::T {
    let s = ConvShape::tf(channels, channels, blk.def.kernel, blk.stride).groups(channels);
    let y = conv2d(b, &blk.layer("conv_dw"), x, s);
    batch_norm_act(b, &blk.layer(bn), &y, channels, Some(blk.def.act))
}

/// timm's `SqueezeExcite` at `se` when the block has one: global mean,
/// 1x1 reduce, ReLU (forced whatever the block's activation), 1x1 expand,
/// hard-sigmoid gate.
fn squeeze_excite<B: Backend>(b: &mut B, blk: &Block, x: B::T, channels: usize) -> B::T {
    if blk.def.se_ratio == 0.0 {
        return x;
    }
    let reduced = blk.cfg.se_channels(channels, blk.def.se_ratio);
    let name = blk.layer("se");
    let s = b.mean(&x, &[2, 3], true);
    let reduce = ConvShape::tf(channels, reduced, 1, 1).with_bias();
    let s = conv2d(b, &join(&name, "conv_reduce"), &s, reduce);
    let s = b.activation(&s, Activation::Relu);
    let expand = ConvShape::tf(reduced, channels, 1, 1).with_bias();
    let s = conv2d(b, &join(&name, "conv_expand"), &s, expand);
    let gate = b.activation(&s, Activation::HardSigmoid);
    b.mul(&x, &gate)
}

/// `drop_path(y) + x` when the block keeps its shape, else `y`.
fn residual<B: Backend>(b: &mut B, blk: &Block, x: &B::T, y: B::T) -> B::T {
    if !blk.has_skip() {
        return y;
    }
    let y = b.drop_path(&y, blk.drop_path);
    b.add(&y, x)
}

/// timm's `BatchNormAct2d`: BatchNorm (PyTorch's eps) and an optional
/// activation, under one name.
fn batch_norm_act<B: Backend>(
    b: &mut B,
    name: &str,
    x: &B::T,
    channels: usize,
    act: Option<Activation>,
) -> B::T {
    let y = batch_norm(b, name, x, channels, BN_EPS);
    match act {
        Some(act) => b.activation_in_place(y, act),
        None => y,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Model, ModelOptions};

    /// Builds `name` at 224 px with 1000 classes and checks its trainable
    /// parameter count.
    pub(crate) fn assert_param_count(name: &str, expected: usize) {
        let options = ModelOptions::new(1000, 224);
        let model = Model::new(name, options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(model.param_count(), expected, "{name}");
    }

    #[test]
    fn members_match_timm_param_counts() {
        // sum(p.numel() for p in timm.create_model(name).parameters()),
        // timm 1.0.31, 1000 classes.
        assert_param_count("mobilenetv3_small_050", 1_593_224);
        assert_param_count("mobilenetv3_small_075", 2_041_872);
        assert_param_count("mobilenetv3_small_100", 2_542_856);
        assert_param_count("mobilenetv3_large_100", 5_483_032);
    }

    #[test]
    fn block_strings_decode_as_timm() {
        let def = decode("ir_r2_k5_s1_e3.67_c48_se0.25_nre");
        assert_eq!(def.kind, Kind::InvertedResidual { exp_ratio: 3.67 });
        assert_eq!((def.repeat, def.kernel, def.stride, def.out), (2, 5, 1, 48));
        assert_eq!((def.se_ratio, def.act), (0.25, Activation::Relu));
        let def = decode("dsa_r1_k3_s2_c64");
        assert_eq!(def.kind, Kind::DepthwiseSeparable { pw_act: true });
        assert_eq!((def.se_ratio, def.act), (0.0, ACT));
    }

    #[test]
    fn rounding_matches_timm() {
        // timm: small_050 keeps a 16-channel stem; small_075 rounds 12 up to 16.
        assert_eq!(SMALL_050.stem_channels(), 16);
        assert_eq!(SMALL_075.stem_channels(), 16);
        assert_eq!(SMALL_075.round_chs(48), 40);
        // 144 * 0.25 = 36 -> 40 with round_channels; Python's round keeps 36
        // and rounds 2.5 to 2.
        assert_eq!(SMALL_050.se_channels(144, 0.25), 40);
        let nearest = Config {
            se_rounding: SeRounding::Nearest,
            ..SMALL_050
        };
        assert_eq!(nearest.se_channels(144, 0.25), 36);
        assert_eq!(nearest.se_channels(10, 0.25), 2);
    }

    #[test]
    fn seed_name_resolves() {
        let entry = crate::find("MobileNetV3_small_x1_0").unwrap();
        assert_eq!(
            (entry.name, entry.family),
            ("mobilenetv3_small_100", "MobileNetV3")
        );
    }
}
