//! A model: an architecture from the registry, built for a class count and
//! an input size, with its declared parameters.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ParamKind, ParamSpec};
use crate::families::{hgnet, mobilenetv3, resnet, swin, vit};
use crate::registry::{self, Entry};
use crate::spec::ShapeBackend;

/// The architecture of one family, with its configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Arch {
    ResNet(resnet::Config),
    Swin(swin::Config),
    ViT(vit::Config),
    MobileNetV3(mobilenetv3::Config),
    /// Built by MobileNetV3's code from LCNet's definition.
    LCNet(mobilenetv3::Config),
    /// PP-HGNet (v1) and PP-HGNetV2; the config's stem tells them apart.
    /// Borrowed from the registry's constants: the config is too large to
    /// inline in every `Arch`.
    HGNet(&'static hgnet::Config),
}

/// What every family's forward takes from the user's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub num_classes: usize,
    pub drop_rate: f64,
    pub drop_path_rate: f64,
    pub stem: Stem,
}

/// How much a convolutional network's stem shrinks the image.
///
/// ImageNet stems divide a 224 px image by 4 before the first stage, and
/// the network by 32 in all: a 32 px image leaves the stem at 8x8 and
/// reaches the last stage at 1x1, where a 3x3 convolution sees only its
/// centre weight. `Compact` drops one of the stem's two halvings (ResNet
/// and HGNet v1: the max pool; MobileNetV3/LCNet: the first conv's stride;
/// HGNetV2: the stride of `stem3`), so the network divides by 16. Every
/// parameter keeps its name and shape: ImageNet weights load unchanged.
/// BENCHMARKS.md ("Small images") has the measurement behind the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    #[default]
    ImageNet,
    Compact,
}

impl Stem {
    /// The stride the stem's halving step keeps: 2 for ImageNet's, 1 when
    /// compact.
    pub fn stride(self) -> usize {
        match self {
            Stem::ImageNet => 2,
            Stem::Compact => 1,
        }
    }

    /// The name the configuration and checkpoints use.
    pub fn name(self) -> &'static str {
        match self {
            Stem::ImageNet => "imagenet",
            Stem::Compact => "compact",
        }
    }
}

/// A parameter laid out on the patch grid, which therefore depends on the
/// input size: weights trained at another size fit after resampling it
/// (e.g. ViT's `pos_embed`, `[1, prefix + h * w, dim]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizableGrid {
    pub name: String,
    /// Leading rows that are not on the grid (class token) and are kept as is.
    pub prefix_tokens: usize,
    /// `[h, w]` of this model's grid.
    pub grid: [usize; 2],
}

/// Settings a user chooses per model; stored with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOptions {
    pub num_classes: usize,
    /// Square input side in pixels.
    pub input_size: usize,
    #[serde(default)]
    pub drop_rate: f64,
    #[serde(default)]
    pub drop_path_rate: f64,
    #[serde(default)]
    pub stem: Stem,
}

impl ModelOptions {
    /// `num_classes` outputs at `input_size` px, without dropout or
    /// stochastic depth.
    pub fn new(num_classes: usize, input_size: usize) -> Self {
        ModelOptions {
            num_classes,
            input_size,
            drop_rate: 0.0,
            drop_path_rate: 0.0,
            stem: Stem::ImageNet,
        }
    }

    /// The same options with `stem`.
    pub fn with_stem(self, stem: Stem) -> Self {
        ModelOptions { stem, ..self }
    }
}

/// Why a model cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model '{name}'{}", close_hint(.close))]
    Unknown { name: String, close: Vec<String> },
    #[error("{model}: {message}")]
    Invalid { model: String, message: String },
}

fn close_hint(close: &[String]) -> String {
    if close.is_empty() {
        "; `semiclass models` lists them all".to_string()
    } else {
        format!("; did you mean {}?", close.join(", "))
    }
}

/// A built model: architecture, options and the parameters it declares.
#[derive(Debug, Clone)]
pub struct Model {
    pub entry: &'static Entry,
    pub options: ModelOptions,
    arch: Arch,
    params: Vec<ParamSpec>,
    smallest_conv_grid: Option<usize>,
}

impl Model {
    /// Builds `name` (a timm name or a seed name such as `ResNet50`).
    pub fn new(name: &str, options: ModelOptions) -> Result<Model, ModelError> {
        let entry = registry::find(name)?;
        let invalid = |message: String| ModelError::Invalid {
            model: entry.name.to_string(),
            message,
        };
        if options.num_classes == 0 {
            return Err(invalid("num_classes must be at least 1".into()));
        }
        let arch = (entry.arch)(options.input_size).map_err(invalid)?;
        if options.stem == Stem::Compact && matches!(arch, Arch::Swin(_) | Arch::ViT(_)) {
            return Err(invalid(
                "a compact stem applies to convolutional models; transformers cut the image into patches (use stem: imagenet)".into(),
            ));
        }
        let mut model = Model {
            entry,
            options,
            arch,
            params: Vec::new(),
            smallest_conv_grid: None,
        };
        let mut shapes = ShapeBackend::default();
        let size = model.options.input_size;
        let logits = model.forward(&mut shapes, &vec![1, 3, size, size]);
        model.smallest_conv_grid = shapes.smallest_conv_grid();
        model.params = shapes
            .into_params()
            .map_err(|e| invalid(format!("input size {size}: {e}")))?;
        if logits != vec![1, model.options.num_classes] {
            return Err(invalid(format!("forward produced shape {logits:?}")));
        }
        Ok(model)
    }

    /// Logits `[batch, num_classes]` for an NCHW batch.
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> B::T {
        let head = Head {
            num_classes: self.options.num_classes,
            drop_rate: self.options.drop_rate,
            drop_path_rate: self.options.drop_path_rate,
            stem: self.options.stem,
        };
        match &self.arch {
            Arch::ResNet(cfg) => resnet::forward(cfg, &head, b, x),
            Arch::Swin(cfg) => swin::forward(cfg, &head, b, x),
            Arch::ViT(cfg) => vit::forward(cfg, &head, b, x),
            Arch::MobileNetV3(cfg) | Arch::LCNet(cfg) => mobilenetv3::forward(cfg, &head, b, x),
            Arch::HGNet(cfg) => hgnet::forward(cfg, &head, b, x),
        }
    }

    /// Side of the smallest feature map a spatial convolution reads at this
    /// input size (`None` without one, e.g. ViT): 1 means the last stage's
    /// 3x3 kernels see only their centre weight, the sign of an input too
    /// small for the stem ([`Stem::Compact`]).
    pub fn smallest_conv_grid(&self) -> Option<usize> {
        self.smallest_conv_grid
    }

    /// Every declared parameter and buffer, in declaration order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// Number of trainable values.
    pub fn param_count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }

    /// Parameters whose shape follows the input size, and how (see
    /// [`ResizableGrid`]); the weight loader resamples these when a file was
    /// made for another input size.
    pub fn resizable_grids(&self) -> Vec<ResizableGrid> {
        match &self.arch {
            Arch::ViT(cfg) => vec![ResizableGrid {
                name: "pos_embed".to_string(),
                prefix_tokens: vit::PREFIX_TOKENS,
                grid: [cfg.grid(); 2],
            }],
            // Convolutional families have no learned position table, and
            // Swin takes only the sizes its windows tile.
            _ => Vec::new(),
        }
    }

    /// Names of the classification layer's tensors, which depend on the
    /// class count (skipped when pretrained weights have another count).
    pub fn head_params(&self) -> Vec<&ParamSpec> {
        let prefix = format!("{}.", self.entry.head);
        self.params
            .iter()
            .filter(|p| p.name.starts_with(&prefix))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Model, ModelOptions, Stem};

    fn build(name: &str, size: usize, stem: Stem) -> Model {
        Model::new(name, ModelOptions::new(10, size).with_stem(stem)).unwrap()
    }

    #[test]
    fn compact_stem_doubles_the_last_stages_grid_and_keeps_every_parameter() {
        // At 32 px ImageNet stems leave the last stage a 1x1 map.
        for name in [
            "resnet18",
            "resnet50",
            "lcnet_050",
            "mobilenetv3_small_100",
            "hgnet_tiny",
            "hgnetv2_b0",
        ] {
            let imagenet = build(name, 32, Stem::ImageNet);
            let compact = build(name, 32, Stem::Compact);
            assert_eq!(imagenet.smallest_conv_grid(), Some(1), "{name}");
            assert_eq!(compact.smallest_conv_grid(), Some(2), "{name}");
            // Same names and shapes: ImageNet weights load into either.
            assert_eq!(imagenet.params(), compact.params(), "{name}");
        }
    }

    #[test]
    fn compact_stem_is_refused_for_transformers() {
        let options = ModelOptions::new(10, 224).with_stem(Stem::Compact);
        let err = Model::new("vit_tiny_patch16_224", options).unwrap_err();
        assert!(err.to_string().contains("convolutional models"), "{err}");
    }
}
