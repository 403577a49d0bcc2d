//! Swin Transformer (Liu et al. 2021) as timm 1.0 writes it, with timm's
//! names: `patch_embed.proj/norm`, `layers.{i}.downsample` (PatchMerging at
//! the *start* of stages 1..3), `layers.{i}.blocks.{j}.norm1`, `.attn.qkv`,
//! `.attn.relative_position_bias_table`, `.attn.proj`, `.norm2`,
//! `.mlp.fc1/fc2`, then `norm` and `head.fc`.
//!
//! Tokens stay NHWC (`[B, H, W, C]`) from the patch embedding to the pool,
//! as in timm. Each block attends within `window x window` windows; every
//! second block first rolls the map by half a window, and a constant mask
//! keeps tokens that the roll brought together from different image regions
//! from attending to each other. timm's `relative_position_index` and
//! `attn_mask` are non-persistent buffers (absent from its state dict), so
//! both are computed here from the configuration as constants.
//!
//! # Input sizes
//!
//! The trained geometry is patch 4, window 7 and three 2x merges, so the
//! token grids are S/4, S/8, S/16 and S/32. We accept exactly the sizes
//! where every stage's grid is a whole multiple of the window:
//! **S = 224·k (224, 448, 672, ...)**. Then no window is clamped (a stage
//! whose grid equals the window just stops shifting, as in timm: S/32 = 7
//! at 224) and nothing is padded.
//!
//! timm built at another `img_size` still runs, but differently from how
//! the weights were trained: below 224 it shrinks the window of late stages
//! to their grid, which changes the shape of `relative_position_bias_table`
//! (pretrained 224 weights no longer load), and elsewhere it zero-pads the
//! map up to whole windows, padding tokens taking part in attention
//! unmasked. We reject those sizes instead of reproducing that.

use crate::backend::{Activation, Backend, Conv2d, Init, ParamKind};
use crate::layers::{join, layer_norm, linear};
use crate::model::Head;

/// One Swin member, built for one input size: forward code sees no shapes,
/// and the window partition and the shift masks depend on the token grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub patch: usize,
    pub window: usize,
    pub embed_dim: usize,
    pub depths: [usize; 4],
    pub num_heads: [usize; 4],
    /// Square input side in pixels; see [`Config::for_input_size`].
    pub input_size: usize,
}

pub const SWIN_TINY: Config = Config {
    patch: 4,
    window: 7,
    embed_dim: 96,
    depths: [2, 2, 6, 2],
    num_heads: [3, 6, 12, 24],
    input_size: 224,
};

pub const SWIN_BASE: Config = Config {
    patch: 4,
    window: 7,
    embed_dim: 128,
    depths: [2, 2, 18, 2],
    num_heads: [4, 8, 16, 32],
    input_size: 224,
};

/// nn.LayerNorm's default epsilon, which timm's Swin uses everywhere.
const LN_EPS: f64 = 1e-5;
/// What timm adds to the attention logits of masked token pairs.
const MASKED: f32 = -100.0;
/// timm's init for every `nn.Linear` and the relative position bias tables.
const TRUNC_NORMAL: Init = Init::TruncNormal(0.02);

impl Config {
    /// Channels entering the classifier: the width doubles at each merge.
    pub fn num_features(&self) -> usize {
        self.embed_dim << 3
    }

    /// Sizes must be multiples of this: the patch, three 2x merges and a
    /// whole number of windows in the last stage.
    fn size_step(&self) -> usize {
        self.patch * 8 * self.window
    }

    /// This member at `size` pixels, if the module doc's rule allows it.
    pub fn for_input_size(self, size: usize) -> Result<Config, String> {
        let step = self.size_step();
        if size >= step && size.is_multiple_of(step) {
            return Ok(Config {
                input_size: size,
                ..self
            });
        }
        let p = self.patch;
        Err(format!(
            "input size {size} is not supported: Swin's {w}x{w} attention windows must tile \
             the token grid of every stage (S/{p}, S/{}, S/{}, S/{}), so it takes multiples \
             of {step} ({step}, {}, {}, ...); for small images pick a CNN or ViT",
            2 * p,
            4 * p,
            8 * p,
            2 * step,
            3 * step,
            w = self.window,
        ))
    }
}

/// One block's place in the network: width, token grid and windowing.
struct Block {
    name: String,
    dim: usize,
    heads: usize,
    /// Side of the (square) token grid.
    res: usize,
    window: usize,
    /// Cyclic shift before partitioning; 0 for even blocks.
    shift: usize,
    drop_path: f64,
}

impl Block {
    /// timm's `_calc_window_shift`: a grid no larger than the window is a
    /// single window, and shifting it would only wrap tokens around.
    fn new(name: String, cfg: &Config, (stage, res): (usize, usize), odd: bool) -> Block {
        let window = res.min(cfg.window);
        let shift = if odd && res > window { window / 2 } else { 0 };
        Block {
            name,
            dim: cfg.embed_dim << stage,
            heads: cfg.num_heads[stage],
            res,
            window,
            shift,
            drop_path: 0.0,
        }
    }

    /// Tokens per window.
    fn tokens(&self) -> usize {
        self.window * self.window
    }

    /// Windows per row (and per column) of the grid.
    fn windows_per_side(&self) -> usize {
        self.res / self.window
    }
}

pub fn forward<B: Backend>(cfg: &Config, head: &Head, b: &mut B, x: &B::T) -> B::T {
    let mut x = patch_embed(b, cfg, x);
    let mut res = cfg.input_size / cfg.patch;
    let total: usize = cfg.depths.iter().sum();
    let mut index = 0;
    for (stage, &depth) in cfg.depths.iter().enumerate() {
        // timm 1.0 merges at the start of stages 1..3 (the original code
        // merged at the end of stages 0..2; same network, other names).
        if stage > 0 {
            let name = format!("layers.{stage}.downsample");
            x = patch_merging(b, &name, &x, (cfg.embed_dim << (stage - 1), res));
            res /= 2;
        }
        for j in 0..depth {
            let name = format!("layers.{stage}.blocks.{j}");
            let mut blk = Block::new(name, cfg, (stage, res), j % 2 == 1);
            // Stochastic depth grows linearly over all blocks, as in timm.
            blk.drop_path = head.drop_path_rate * index as f64 / (total - 1).max(1) as f64;
            x = block(b, &blk, &x);
            index += 1;
        }
    }
    let x = layer_norm(b, "norm", &x, cfg.num_features(), LN_EPS);
    // timm's ClassifierHead on NHWC: average over H and W, dropout, fc.
    let x = b.mean(&x, &[1, 2], false);
    let x = b.dropout(&x, head.drop_rate);
    let fc = (cfg.num_features(), head.num_classes);
    linear(b, "head.fc", &x, fc, true, TRUNC_NORMAL)
}

/// `patch_embed`: a `patch x patch` convolution with stride `patch`, to
/// NHWC, then LayerNorm.
fn patch_embed<B: Backend>(b: &mut B, cfg: &Config, x: &B::T) -> B::T {
    let (c, p) = (cfg.embed_dim, cfg.patch);
    // timm's Swin init only touches Linear layers, so this conv keeps
    // PyTorch's default (uniform in ±1/sqrt(fan_in)).
    let w = b.param(
        "patch_embed.proj.weight",
        &[c, 3, p, p],
        ParamKind::Trainable,
        Init::UniformFanIn,
    );
    let bias = b.param(
        "patch_embed.proj.bias",
        &[c],
        ParamKind::Trainable,
        Init::Zeros,
    );
    let x = b.conv2d(x, &w, Some(&bias), Conv2d::new().stride(p));
    let x = b.permute(&x, &[0, 2, 3, 1]);
    layer_norm(b, "patch_embed.norm", &x, c, LN_EPS)
}

/// timm's PatchMerging on `[B, res, res, dim]`: each 2x2 neighbourhood is
/// concatenated on channels in the order (row 0, col 0), (1, 0), (0, 1),
/// (1, 1) (the reshape and permute below are timm's), then LayerNorm over
/// `4 dim` and a bias-free linear to `2 dim`.
fn patch_merging<B: Backend>(b: &mut B, name: &str, x: &B::T, (dim, res): (usize, usize)) -> B::T {
    let (h, c) = ((res / 2) as i64, dim as i64);
    let x = b.reshape(x, &[0, h, 2, h, 2, c]);
    let x = b.permute(&x, &[0, 1, 3, 4, 2, 5]);
    let x = b.reshape(&x, &[0, h, h, 4 * c]);
    let x = layer_norm(b, &join(name, "norm"), &x, 4 * dim, LN_EPS);
    let reduction = join(name, "reduction");
    linear(b, &reduction, &x, (4 * dim, 2 * dim), false, TRUNC_NORMAL)
}

/// `x + drop_path(attn(norm1(x)))`, then `x + drop_path(mlp(norm2(x)))`,
/// all on NHWC (LayerNorm and Linear act per token, so timm's reshape to
/// `[B, H*W, C]` around the MLP changes nothing).
fn block<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let y = layer_norm(b, &join(&blk.name, "norm1"), x, blk.dim, LN_EPS);
    let y = shifted_window_attention(b, blk, &y);
    let y = b.drop_path(&y, blk.drop_path);
    let x = b.add(x, &y);
    let y = layer_norm(b, &join(&blk.name, "norm2"), &x, blk.dim, LN_EPS);
    let y = mlp(b, &join(&blk.name, "mlp"), &y, blk.dim);
    let y = b.drop_path(&y, blk.drop_path);
    b.add(&x, &y)
}

/// timm's `Mlp`: fc1 to 4x width, exact GELU, fc2 back.
fn mlp<B: Backend>(b: &mut B, name: &str, x: &B::T, dim: usize) -> B::T {
    let y = linear(b, &join(name, "fc1"), x, (dim, 4 * dim), true, TRUNC_NORMAL);
    let y = b.activation(&y, Activation::Gelu);
    linear(
        b,
        &join(name, "fc2"),
        &y,
        (4 * dim, dim),
        true,
        TRUNC_NORMAL,
    )
}

/// timm's `_attn`: roll the map by `-shift`, attend within windows, roll
/// it back.
fn shifted_window_attention<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let s = blk.shift as i64;
    let rolled;
    let x = if s > 0 {
        rolled = b.roll(x, &[-s, -s], &[1, 2]);
        &rolled
    } else {
        x
    };
    let windows = window_partition(b, blk, x);
    let y = window_attention(b, blk, &windows);
    let y = window_reverse(b, blk, &y);
    if s > 0 {
        b.roll(&y, &[s, s], &[1, 2])
    } else {
        y
    }
}

/// `[B, res, res, C]` -> `[B * nW, window², C]`, windows in row-major order
/// per image (timm's `window_partition`).
fn window_partition<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let (n, w, c) = (
        blk.windows_per_side() as i64,
        blk.window as i64,
        blk.dim as i64,
    );
    let x = b.reshape(x, &[0, n, w, n, w, c]);
    let x = b.permute(&x, &[0, 1, 3, 2, 4, 5]);
    b.reshape(&x, &[-1, w * w, c])
}

/// The inverse of [`window_partition`] (timm's `window_reverse`).
fn window_reverse<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let (n, w, c) = (
        blk.windows_per_side() as i64,
        blk.window as i64,
        blk.dim as i64,
    );
    let x = b.reshape(x, &[-1, n, n, w, w, c]);
    let x = b.permute(&x, &[0, 1, 3, 2, 4, 5]);
    b.reshape(&x, &[-1, blk.res as i64, blk.res as i64, c])
}

/// timm's `WindowAttention` (unfused path) on `[B * nW, N, C]`:
/// `softmax(q k^T / sqrt(d) + bias [+ mask]) v`, then `proj`.
fn window_attention<B: Backend>(b: &mut B, blk: &Block, x: &B::T) -> B::T {
    let name = join(&blk.name, "attn");
    let dim = blk.dim;
    let qkv = linear(
        b,
        &join(&name, "qkv"),
        x,
        (dim, 3 * dim),
        true,
        TRUNC_NORMAL,
    );
    let head_dim = dim / blk.heads;
    let heads = [blk.heads as i64, head_dim as i64];
    let qkv = b.reshape(&qkv, &[0, 0, 3, heads[0], heads[1]]);
    let q = split_heads(b, &qkv, (0, heads), &[0, 2, 1, 3]);
    let q = b.scale(&q, (head_dim as f64).powf(-0.5));
    let k_t = split_heads(b, &qkv, (1, heads), &[0, 2, 3, 1]);
    let v = split_heads(b, &qkv, (2, heads), &[0, 2, 1, 3]);
    let attn = b.matmul(&q, &k_t);
    let bias = relative_position_bias(b, &name, blk);
    let attn = b.add(&attn, &bias);
    let attn = if blk.shift > 0 {
        add_shift_mask(b, blk, &attn)
    } else {
        attn
    };
    let attn = b.softmax(&attn, 3);
    let y = b.matmul(&attn, &v);
    let y = b.permute(&y, &[0, 2, 1, 3]);
    let y = b.reshape(&y, &[0, 0, dim as i64]);
    linear(b, &join(&name, "proj"), &y, (dim, dim), true, TRUNC_NORMAL)
}

/// Part `i` (q, k or v) of `[B_, N, 3, heads, d]`, as `[B_, N, heads, d]`
/// permuted by `order`.
fn split_heads<B: Backend>(
    b: &mut B,
    qkv: &B::T,
    (i, [heads, d]): (usize, [i64; 2]),
    order: &[usize],
) -> B::T {
    let part = b.slice(qkv, 2, i, i + 1);
    let part = b.reshape(&part, &[0, 0, heads, d]);
    b.permute(&part, order)
}

/// `[heads, N, N]`: the learned bias of each head for every pair of
/// relative offsets within a window, looked up by a constant index.
fn relative_position_bias<B: Backend>(b: &mut B, name: &str, blk: &Block) -> B::T {
    let side = 2 * blk.window - 1;
    let table = b.param(
        &join(name, "relative_position_bias_table"),
        &[side * side, blk.heads],
        ParamKind::Trainable,
        TRUNC_NORMAL,
    );
    let rows = b.gather_rows(&table, &relative_position_index(blk.window));
    let n = blk.tokens() as i64;
    let rows = b.reshape(&rows, &[n, n, blk.heads as i64]);
    b.permute(&rows, &[2, 0, 1])
}

/// timm's `get_relative_position_index`, flattened: for tokens `a` and `c`
/// of a `w x w` window (row-major), the table row of their offset
/// `(dy, dx)`, i.e. `(dy + w - 1) * (2w - 1) + (dx + w - 1)`.
fn relative_position_index(w: usize) -> Vec<usize> {
    let n = w * w;
    let row = |a: usize, c: usize| (a / w + w - 1 - c / w) * (2 * w - 1) + (a % w + w - 1 - c % w);
    (0..n)
        .flat_map(|a| (0..n).map(move |c| row(a, c)))
        .collect()
}

/// Adds timm's `attn_mask` to `[B * nW, heads, N, N]` logits, per window.
fn add_shift_mask<B: Backend>(b: &mut B, blk: &Block, attn: &B::T) -> B::T {
    let (windows, n) = (blk.windows_per_side().pow(2), blk.tokens());
    let mask = b.constant(&shift_mask(blk), &[1, windows, 1, n, n]);
    let (windows, n, heads) = (windows as i64, n as i64, blk.heads as i64);
    let attn = b.reshape(attn, &[-1, windows, heads, n, n]);
    let attn = b.add(&attn, &mask);
    b.reshape(&attn, &[-1, heads, n, n])
}

/// timm's `attn_mask`, `[nW, N, N]` flattened. Each axis of the grid is cut
/// into three bands, `[0, res - w)`, `[res - w, res - s)`, `[res - s, res)`.
/// After the roll, a window at the bottom or right edge holds tokens from
/// opposite sides of the image; pairs whose bands differ get [`MASKED`].
fn shift_mask(blk: &Block) -> Vec<f32> {
    let (res, w, s) = (blk.res, blk.window, blk.shift);
    let band = |i: usize| usize::from(i >= res - w) + usize::from(i >= res - s);
    let per_side = blk.windows_per_side();
    let mut values = Vec::with_capacity(per_side.pow(2) * blk.tokens().pow(2));
    for wy in 0..per_side {
        for wx in 0..per_side {
            let regions: Vec<usize> = (0..blk.tokens())
                .map(|t| 3 * band(wy * w + t / w) + band(wx * w + t % w))
                .collect();
            for a in &regions {
                values.extend(regions.iter().map(|c| if a == c { 0.0 } else { MASKED }));
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Model, ModelOptions};

    fn build(name: &str, input_size: usize) -> Result<Model, crate::ModelError> {
        let options = ModelOptions::new(1000, input_size);
        Model::new(name, options)
    }

    #[test]
    fn members_build_with_timms_parameter_counts() {
        // sum(p.numel() for p in timm.create_model(name).parameters()), timm 1.0.31.
        for (name, count) in [
            ("swin_tiny_patch4_window7_224", 28_288_354),
            ("swin_base_patch4_window7_224", 87_768_224),
        ] {
            let model = build(name, 224).unwrap();
            assert_eq!(model.entry.family, "Swin");
            assert_eq!(model.param_count(), count, "{name}");
            let head: Vec<&str> = model
                .head_params()
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            assert_eq!(head, ["head.fc.weight", "head.fc.bias"]);
        }
        // The seed product's name resolves to the base member.
        let seed = build("SwinTransformer_base_patch4_window7_224", 448).unwrap();
        assert_eq!(seed.entry.name, "swin_base_patch4_window7_224");
    }

    #[test]
    fn sizes_other_than_multiples_of_224_are_rejected_clearly() {
        for size in [32, 64, 112, 256, 384] {
            let err = build("swin_tiny_patch4_window7_224", size)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "swin_tiny_patch4_window7_224: input size {size} is not supported"
                )) && err.contains("multiples of 224 (224, 448, 672, ...)")
                    && err.contains("pick a CNN or ViT"),
                "{err}"
            );
        }
    }

    #[test]
    fn relative_position_index_matches_timm() {
        // timm.models.swin_transformer.get_relative_position_index(2, 2).
        let timm = [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4];
        assert_eq!(relative_position_index(2), timm);
    }

    #[test]
    fn shift_mask_matches_timm() {
        // SwinTransformerBlock(dim=4, input_resolution=(4, 4), num_heads=1,
        // window_size=2, shift_size=1).attn_mask, one string per window,
        // 'x' where masked.
        let timm = [
            "................",
            ".x.xx.x..x.xx.x.",
            "..xx..xxxx..xx..",
            ".xxxx.xxxx.xxxx.",
        ];
        let cfg = Config {
            window: 2,
            ..SWIN_TINY
        };
        let blk = Block::new(String::new(), &cfg, (0, 4), true);
        assert_eq!((blk.window, blk.shift), (2, 1));
        let ours: Vec<String> = shift_mask(&blk)
            .chunks(16)
            .map(|w| {
                w.iter()
                    .map(|&v| if v == 0.0 { '.' } else { 'x' })
                    .collect()
            })
            .collect();
        assert_eq!(ours, timm);
    }

    #[test]
    fn a_grid_no_larger_than_the_window_is_not_shifted() {
        // Stage 3 at 224 px: a 7x7 grid, one window (timm's shift_size (0, 0)).
        let blk = Block::new(String::new(), &SWIN_TINY, (3, 7), true);
        assert_eq!((blk.window, blk.shift, blk.dim, blk.heads), (7, 0, 768, 24));
    }
}
