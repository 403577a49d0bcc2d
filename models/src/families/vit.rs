//! Vision Transformer (Dosovitskiy et al. 2020) with timm's names:
//! `cls_token`, `pos_embed`, `patch_embed.proj`, `norm_pre` (CLIP towers),
//! `blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`,
//! `head`.
//!
//! Every member uses timm's defaults for these names: a class token whose
//! final state feeds the head (`global_pool='token'`, so a final `norm` and
//! no `fc_norm`), qkv bias, exact (erf) GELU, MLP ratio 4, no layer scale.
//! The CLIP image towers (`*_clip_224`) differ in three ways, all following
//! from timm's `pre_norm=True` and `LayerNorm(eps=1e-5)`: a LayerNorm
//! (`norm_pre`) after the position embedding, no bias on the patch
//! projection, and eps 1e-5 instead of the 1e-6 of the augreg ViTs. Plain
//! `_clip_224` names use `nn.GELU`; only timm's `_quickgelu` names use
//! OpenAI's `x * sigmoid(1.702 x)`.

use crate::backend::{Activation, Backend, Conv2d, Init, ParamKind};
use crate::layers::{join, layer_norm, linear};
use crate::model::{Arch, Head};

/// One member's architecture, at a given input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub patch: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    /// CLIP's LayerNorm before the blocks; also drops the patch bias.
    pub pre_norm: bool,
    /// Epsilon of every LayerNorm.
    pub eps: f64,
    /// Square input side in pixels, a multiple of `patch`.
    pub img_size: usize,
}

/// The architectures at timm's default 224 px; [`arch`] sets the input size.
pub const VIT_TINY_PATCH16: Config = augreg(192, 3);
pub const VIT_SMALL_PATCH16: Config = augreg(384, 6);
pub const VIT_BASE_PATCH16_CLIP: Config = Config {
    patch: 16,
    dim: 768,
    depth: 12,
    heads: 12,
    pre_norm: true,
    eps: 1e-5,
    img_size: 224,
};
pub const VIT_LARGE_PATCH14_CLIP: Config = Config {
    patch: 14,
    dim: 1024,
    depth: 24,
    heads: 16,
    ..VIT_BASE_PATCH16_CLIP
};

/// The 12-block, patch-16 ViTs of the augreg paper, with timm's eps 1e-6.
const fn augreg(dim: usize, heads: usize) -> Config {
    Config {
        patch: 16,
        dim,
        depth: 12,
        heads,
        pre_norm: false,
        eps: 1e-6,
        img_size: 224,
    }
}

/// Tokens before the patch tokens (the class token); `pos_embed` has a row
/// for each, which a resampled grid keeps unchanged.
pub const PREFIX_TOKENS: usize = 1;

/// `cfg` at `size` px, or why that size does not work: the patch grid must
/// tile the input exactly, as timm's `PatchEmbed` (strict) requires.
pub fn arch(cfg: Config, size: usize) -> Result<Arch, String> {
    let p = cfg.patch;
    if size < p {
        return Err(format!(
            "input size {size} is smaller than the {p} px patch; the smallest is {p}"
        ));
    }
    if !size.is_multiple_of(p) {
        let below = size / p * p;
        return Err(format!(
            "input size {size} is not a multiple of the {p} px patch; nearest valid sizes: {below}, {}",
            below + p
        ));
    }
    Ok(Arch::ViT(Config {
        img_size: size,
        ..cfg
    }))
}

impl Config {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch
    }

    /// Tokens through the blocks: class token and patches.
    fn tokens(&self) -> usize {
        PREFIX_TOKENS + self.grid() * self.grid()
    }

    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
}

/// Logits `[B, classes]`: patch embedding, blocks, final norm, class token, head.
pub fn forward<B: Backend>(cfg: &Config, head: &Head, b: &mut B, x: &B::T) -> B::T {
    let x = embed(cfg, b, x);
    let mut x = if cfg.pre_norm {
        layer_norm(b, "norm_pre", &x, cfg.dim, cfg.eps)
    } else {
        x
    };
    for i in 0..cfg.depth {
        // Stochastic depth grows linearly from 0 to the rate, as timm's linspace.
        let drop_path = head.drop_path_rate * i as f64 / (cfg.depth - 1).max(1) as f64;
        x = block(cfg, b, &format!("blocks.{i}"), &x, drop_path);
    }
    let x = layer_norm(b, "norm", &x, cfg.dim, cfg.eps);
    // global_pool='token': the class token's final state.
    let x = b.slice(&x, 1, 0, 1);
    let x = b.reshape(&x, &[0, -1]);
    let x = b.dropout(&x, head.drop_rate);
    linear(
        b,
        "head",
        &x,
        (cfg.dim, head.num_classes),
        true,
        Init::TruncNormal(0.02),
    )
}

/// Patch tokens with the class token in front, plus the position embedding:
/// `[B, 3, S, S] -> [B, 1 + (S/p)^2, D]`.
fn embed<B: Backend>(cfg: &Config, b: &mut B, x: &B::T) -> B::T {
    let (d, p) = (cfg.dim, cfg.patch);
    let w = b.param(
        "patch_embed.proj.weight",
        &[d, 3, p, p],
        ParamKind::Trainable,
        Init::UniformFanIn,
    );
    // timm: `bias=not pre_norm`; the CLIP towers' norm_pre makes it redundant.
    let bias = (!cfg.pre_norm).then(|| {
        b.param(
            "patch_embed.proj.bias",
            &[d],
            ParamKind::Trainable,
            Init::Zeros,
        )
    });
    let x = b.conv2d(x, &w, bias.as_ref(), Conv2d::new().stride(p));
    // flatten(2).transpose(1, 2): NCHW -> [B, HW, D].
    let x = b.reshape(&x, &[0, 0, -1]);
    let x = b.permute(&x, &[0, 2, 1]);
    // timm draws the class token from N(0, 1e-6) and pos_embed from trunc_normal(.02).
    let cls = b.param(
        "cls_token",
        &[1, 1, d],
        ParamKind::Trainable,
        Init::TruncNormal(1e-6),
    );
    let cls = b.repeat_batch(&cls, &x);
    let x = b.concat(&[cls, x], 1);
    let pos_shape = [1, cfg.tokens(), d];
    let pos = b.param(
        "pos_embed",
        &pos_shape,
        ParamKind::Trainable,
        Init::TruncNormal(0.02),
    );
    b.add(&x, &pos)
}

/// Pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
fn block<B: Backend>(cfg: &Config, b: &mut B, name: &str, x: &B::T, drop_path: f64) -> B::T {
    let y = layer_norm(b, &join(name, "norm1"), x, cfg.dim, cfg.eps);
    let y = attention(cfg, b, &join(name, "attn"), &y);
    let y = b.drop_path(&y, drop_path);
    let x = b.add(x, &y);
    let y = layer_norm(b, &join(name, "norm2"), &x, cfg.dim, cfg.eps);
    let y = mlp(cfg, b, &join(name, "mlp"), &y);
    let y = b.drop_path(&y, drop_path);
    b.add(&x, &y)
}

/// Multi-head self-attention, `softmax(q k^T / sqrt(d)) v` written out
/// (the math form of timm's `scaled_dot_product_attention`).
fn attention<B: Backend>(cfg: &Config, b: &mut B, name: &str, x: &B::T) -> B::T {
    let d = cfg.dim;
    let qkv = linear(
        b,
        &join(name, "qkv"),
        x,
        (d, 3 * d),
        true,
        Init::TruncNormal(0.02),
    );
    // timm's qkv output is [q | k | v] along the features, each split into heads.
    let q = heads(cfg, b, &qkv, 0);
    let k = heads(cfg, b, &qkv, 1);
    let v = heads(cfg, b, &qkv, 2);
    let q = b.scale(&q, (cfg.head_dim() as f64).powf(-0.5));
    let kt = b.permute(&k, &[0, 1, 3, 2]);
    let scores = b.matmul(&q, &kt);
    let weights = b.softmax(&scores, 3);
    let y = b.matmul(&weights, &v);
    // [B, H, N, hd] -> [B, N, H * hd]
    let y = b.permute(&y, &[0, 2, 1, 3]);
    let y = b.reshape(&y, &[0, 0, d as i64]);
    linear(
        b,
        &join(name, "proj"),
        &y,
        (d, d),
        true,
        Init::TruncNormal(0.02),
    )
}

/// The `which`-th third of the qkv projection as heads: `[B, H, N, hd]`.
fn heads<B: Backend>(cfg: &Config, b: &mut B, qkv: &B::T, which: usize) -> B::T {
    let d = cfg.dim;
    let part = b.slice(qkv, 2, which * d, (which + 1) * d);
    let shape = [0, 0, cfg.heads as i64, cfg.head_dim() as i64];
    let part = b.reshape(&part, &shape);
    b.permute(&part, &[0, 2, 1, 3])
}

/// `fc1`, GELU, `fc2` with a 4x hidden width.
fn mlp<B: Backend>(cfg: &Config, b: &mut B, name: &str, x: &B::T) -> B::T {
    let (d, hidden) = (cfg.dim, 4 * cfg.dim);
    let init = Init::TruncNormal(0.02);
    let y = linear(b, &join(name, "fc1"), x, (d, hidden), true, init);
    let y = b.activation(&y, Activation::Gelu);
    linear(b, &join(name, "fc2"), &y, (hidden, d), true, init)
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelError, ModelOptions};

    fn build(name: &str, input_size: usize) -> Result<Model, ModelError> {
        let options = ModelOptions::new(1000, input_size);
        Model::new(name, options)
    }

    #[test]
    fn members_match_timm_parameter_counts() {
        // sum(p.numel() for p in timm.create_model(name).parameters()), timm 1.0.31.
        let expected = [
            ("vit_tiny_patch16_224", 5_717_416),
            ("vit_small_patch16_224", 22_050_664),
            ("vit_base_patch16_clip_224", 86_568_424),
            ("vit_large_patch14_clip_224", 304_204_776),
        ];
        for (name, count) in expected {
            let model = build(name, 224).unwrap();
            assert_eq!(model.entry.family, "ViT");
            assert_eq!(model.param_count(), count, "{name}");
        }
    }

    #[test]
    fn pos_embed_follows_the_input_size() {
        let model = build("vit_tiny_patch16_224", 32).unwrap();
        let pos = model
            .params()
            .iter()
            .find(|p| p.name == "pos_embed")
            .unwrap();
        assert_eq!(pos.shape, vec![1, 2 * 2 + 1, 192]);
        let grids = model.resizable_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(
            (grids[0].name.as_str(), grids[0].grid),
            ("pos_embed", [2, 2])
        );
    }

    #[test]
    fn clip_towers_have_norm_pre_and_no_patch_bias() {
        let model = build("CLIP_vit_base_patch16_224", 32).unwrap();
        let has = |n: &str| model.params().iter().any(|p| p.name == n);
        assert!(has("norm_pre.weight") && !has("patch_embed.proj.bias"));
        let tiny = build("vit_tiny_patch16_224", 32).unwrap();
        assert!(!tiny.params().iter().any(|p| p.name.starts_with("norm_pre")));
    }

    #[test]
    fn input_size_must_be_a_multiple_of_the_patch() {
        let err = build("vit_large_patch14_clip_224", 225)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input size 225 is not a multiple of the 14 px patch")
                && err.contains("224, 238"),
            "{err}"
        );
        let err = build("vit_tiny_patch16_224", 8).unwrap_err().to_string();
        assert!(err.contains("smallest is 16"), "{err}");
    }
}
