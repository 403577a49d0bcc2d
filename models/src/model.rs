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

/// What every family's head needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub num_classes: usize,
    pub drop_rate: f64,
    pub drop_path_rate: f64,
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
        }
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
        let mut model = Model {
            entry,
            options,
            arch,
            params: Vec::new(),
        };
        let mut shapes = ShapeBackend::default();
        let size = model.options.input_size;
        let logits = model.forward(&mut shapes, &vec![1, 3, size, size]);
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
        };
        match &self.arch {
            Arch::ResNet(cfg) => resnet::forward(cfg, &head, b, x),
            Arch::Swin(cfg) => swin::forward(cfg, &head, b, x),
            Arch::ViT(cfg) => vit::forward(cfg, &head, b, x),
            Arch::MobileNetV3(cfg) | Arch::LCNet(cfg) => mobilenetv3::forward(cfg, &head, b, x),
            Arch::HGNet(cfg) => hgnet::forward(cfg, &head, b, x),
        }
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
