//! What `semiclass train` reads: one YAML file plus `-o` overrides.
//!
//! Every parameter the source product exposes per model is here (epochs,
//! batch size, class count, learning rate, resume checkpoint, pretrained
//! weights, warmup epochs, log interval, eval interval), plus the
//! semi-supervised ones. Defaults suit a CPU-sized run on small images.

use std::path::PathBuf;

use semiclass_models::Stem;
use serde::{Deserialize, Serialize};

/// The whole configuration of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub run: RunConfig,
    pub large: LargeConfig,
    pub small: SmallConfig,
}

/// Where the images come from and how they are fed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset folder (label.txt, train.txt, train_unlabeled.txt, val.txt).
    pub dir: Option<PathBuf>,
    /// Threads decoding and augmenting ahead of the model.
    pub workers: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// Decoded images are kept in memory up to this size.
    pub cache_mb: u64,
    /// Whether a mirror image is an image of the same class: the training
    /// views are flipped at random and teachers averaged over mirrors only
    /// if so (see [`MirrorChoice`]).
    pub flip: MirrorChoice,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: None,
            workers: 2,
            prefetch: 4,
            cache_mb: 4096,
            flip: MirrorChoice::Auto,
        }
    }
}

/// Horizontal flips of the training images. Every semi-supervised recipe
/// flips (USB, FixMatch's CIFAR recipe), which teaches a model that a
/// mirrored "3" is a "3": wrong for digits, text, arrows or any class
/// defined by its handedness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorChoice {
    /// Decided from the labeled images when the run starts: flips unless
    /// their mirrors find their own class much less often than they do
    /// (1-nearest-neighbour on thumbnails; `semiclass_trainer::baseline::mirror_test`).
    Auto,
    Always,
    Never,
}

/// Where results go and what makes the run reproducible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Parent folder of run directories.
    pub dir: PathBuf,
    /// Run directory name; default `<mode>-<date>-<time>`.
    pub name: Option<String>,
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute threads on CPU (0: libtorch's default).
    pub threads: usize,
    /// Data-parallel runs: `auto` (Gloo on CPU; NCCL on CUDA, not in this
    /// build), `gloo` or `nccl`.
    pub dist_backend: String,
    /// Data-parallel runs: seconds the rendezvous and each collective may
    /// wait for the other ranks before the run stops with an error. Rank 0
    /// evaluates alone while the others wait in a collective, so this must
    /// exceed an evaluation: torch.distributed's default, 30 minutes. A
    /// rank that dies is noticed at once (its connections close).
    pub dist_timeout: u64,
    /// Data-parallel runs: BatchNorm in training mode normalises with the
    /// statistics of the whole global batch (SyncBatchNorm), as one
    /// process would; `false`, PyTorch DDP's default: each rank's slice.
    pub sync_bn: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            dir: PathBuf::from("runs"),
            name: None,
            seed: 0,
            device: "auto".into(),
            threads: 0,
            dist_backend: "auto".into(),
            dist_timeout: 1800,
            sync_bn: false,
        }
    }
}

/// Largest input at which `stem: auto` makes a mobile network's stem
/// compact: up to 64 px an ImageNet stem leaves the last stage at most 2x2
/// (1x1 at 32 px).
pub const COMPACT_STEM_MAX_INPUT: usize = 64;

/// The families whose stem `auto` makes compact on small inputs, as
/// measured on Fashion-MNIST at 32 px (BENCHMARKS.md, "Small images"):
/// LCNet's compact stem gained 5.7 points at equal steps for 1.25x the
/// time, while ResNet's lost 4.4 points at 2.8x the time (without its max
/// pool every stage works on 4x the pixels). HGNet is not measured and
/// keeps ImageNet's.
const COMPACT_WHEN_SMALL: &[&str] = &["MobileNetV3", "LCNet"];

/// The stem a configuration asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemChoice {
    /// Compact for the families of [`COMPACT_WHEN_SMALL`] on inputs up to
    /// [`COMPACT_STEM_MAX_INPUT`] px, else ImageNet's.
    #[default]
    Auto,
    ImageNet,
    Compact,
}

impl StemChoice {
    /// The stem `model` is built with at `input_size` px.
    pub fn resolve(self, input_size: usize, model: &str) -> Stem {
        match self {
            StemChoice::ImageNet => Stem::ImageNet,
            StemChoice::Compact => Stem::Compact,
            StemChoice::Auto => {
                // An unknown name is reported when the model is built.
                let mobile = semiclass_models::find(model)
                    .is_ok_and(|e| COMPACT_WHEN_SMALL.contains(&e.family));
                if mobile && input_size <= COMPACT_STEM_MAX_INPUT {
                    Stem::Compact
                } else {
                    Stem::ImageNet
                }
            }
        }
    }
}

/// Which optimizer updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum.
    Sgd,
    AdamW,
}

/// Training settings of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelTrainConfig {
    /// timm or seed name (`semiclass models` lists them).
    pub model: String,
    pub input_size: usize,
    /// How much the stem shrinks the image (`semiclass_models::Stem`):
    /// `auto` makes MobileNetV3's and LCNet's stems compact up to
    /// [`COMPACT_STEM_MAX_INPUT`] px.
    pub stem: StemChoice,
    /// Class count; checked against label.txt when given.
    pub num_classes: Option<usize>,
    /// A local `.safetensors` in timm's names.
    pub pretrained: Option<PathBuf>,
    /// A checkpoint (or its resume state) to continue from.
    pub resume: Option<PathBuf>,
    /// Optimizer steps of the first stage (supervised for the large model,
    /// distillation for the small one). Unset: chosen from the dataset's
    /// size when the run starts (`config::budget`), printed, and written
    /// into the run's config.yaml. 0 skips the stage.
    pub steps: Option<u64>,
    /// The same length as passes over the stage's images (labeled images
    /// for the large model, all train images for the small one); wins over
    /// `steps`.
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Share of every stage's steps spent warming the learning rate up.
    pub warmup: f64,
    /// Warm-up in epochs instead (wins over `warmup`).
    pub warmup_epochs: Option<f64>,
    /// EMA of the weights; 0 disables it.
    pub ema_decay: f64,
    /// Largest global gradient norm; none when absent.
    pub grad_clip: Option<f64>,
    pub drop_rate: f64,
    pub drop_path_rate: f64,
    /// Steps between log lines.
    pub log_interval: usize,
    /// Evaluations on val (each saves checkpoints) per stage, evenly
    /// spaced; the last at the stage's end. Unset:
    /// `config::budget::AUTO_EVALS` when the schedule chose the model's
    /// first stage's length (its `patience` needs the finer grid),
    /// `config::budget::DEFAULT_EVALS` otherwise; written into the run's
    /// config.yaml.
    pub evals_per_stage: Option<usize>,
    /// Epochs between evaluations instead (wins over `evals_per_stage`).
    pub eval_interval: Option<usize>,
    /// Stop the model's first stage (supervised, distillation: the ones
    /// that start from random weights) after this many evaluations without
    /// a better val accuracy (0: never; the best checkpoint is kept either
    /// way). The semi-supervised stage counts them only once its val
    /// accuracy has beaten the model it started from
    /// (`Stage::continuing`); self-training and fine-tuning run to their
    /// end (`Stage::to_the_end`). Unset: `config::budget::AUTO_PATIENCE` when
    /// the schedule chose a stage's length, 0 when the configuration set
    /// it; written into the run's config.yaml.
    pub patience: Option<usize>,
}

impl Default for ModelTrainConfig {
    fn default() -> Self {
        ModelTrainConfig {
            model: "resnet18".into(),
            input_size: 32,
            stem: StemChoice::Auto,
            num_classes: None,
            pretrained: None,
            resume: None,
            steps: None,
            epochs: None,
            batch_size: 64,
            lr: 0.03,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup: 0.05,
            warmup_epochs: None,
            ema_decay: 0.999,
            grad_clip: None,
            drop_rate: 0.0,
            drop_path_rate: 0.0,
            log_interval: 50,
            evals_per_stage: None,
            eval_interval: None,
            patience: None,
        }
    }
}

/// The semi-supervised algorithm of stage 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmKind {
    /// Skip the semi-supervised stage: labels only (the baseline).
    Supervised,
    FixMatch,
    FreeMatch,
}

impl AlgorithmKind {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            AlgorithmKind::Supervised => "supervised",
            AlgorithmKind::FixMatch => "fixmatch",
            AlgorithmKind::FreeMatch => "freematch",
        }
    }
}

/// Stage 2 of the large model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslConfig {
    pub algorithm: AlgorithmKind,
    /// Where pseudo-labels come from.
    pub teacher: PseudoLabeler,
    /// Optimizer steps of the semi-supervised stage (each takes a labeled
    /// batch and `mu` times as many unlabeled images). Unset: chosen from
    /// the dataset's size when the run starts; 0 skips the stage.
    pub steps: Option<u64>,
    /// The same length as passes over the labeled images (wins over `steps`).
    pub epochs: Option<usize>,
    /// Unlabeled images per labeled image in a step. Unset: 7 (USB's),
    /// less for a small unlabeled set (`config::budget::default_mu`),
    /// chosen when the run starts and written into its config.yaml.
    pub mu: Option<usize>,
    /// FixMatch's confidence threshold for a pseudo-label (taken on the
    /// softmax at temperature 1, as USB does).
    pub p_cutoff: f64,
    /// Weight of the unsupervised loss.
    pub lambda_u: f64,
    /// FreeMatch: momentum of its adaptive thresholds.
    pub ema_p: f64,
    /// FreeMatch: weight of its fairness loss (USB's `ent_loss_ratio`).
    pub lambda_e: f64,
}

/// Which weights label the weak views of unlabeled images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PseudoLabeler {
    /// The model being trained, in the same train-mode forward pass as the
    /// labeled and strong views (FixMatch and USB): BatchNorm sees the weak
    /// views too.
    Live,
    /// The exponential moving average of the weights, in eval mode
    /// (Semi-ViT, for pretrained backbones).
    Ema,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            algorithm: AlgorithmKind::FixMatch,
            teacher: PseudoLabeler::Live,
            steps: None,
            epochs: None,
            mu: None,
            p_cutoff: 0.95,
            lambda_u: 1.0,
            ema_p: 0.999,
            lambda_e: 0.01,
        }
    }
}

/// Stage 3 of the large model: the best model so far labels every
/// unlabeled image (soft, flip-averaged), the confident ones join the
/// labeled ones, and the model trains on them; kept only if val improves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfTrainConfig {
    /// Passes over labeled + kept unlabeled images; 0 skips the stage.
    pub epochs: usize,
    /// Confidence an unlabeled image's top class needs to be kept.
    pub p_cutoff: f64,
    /// Average the teacher's predictions with those of the mirrored image
    /// (never where `data.flip` settled on no flips).
    pub flip: bool,
    /// Weight of the cross-entropy on the true labels.
    pub alpha: f64,
}

impl Default for SelfTrainConfig {
    fn default() -> Self {
        SelfTrainConfig {
            epochs: 0,
            p_cutoff: 0.8,
            flip: true,
            alpha: 1.0,
        }
    }
}

/// The large model: its training settings and its semi-supervised stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LargeConfig {
    #[serde(flatten)]
    pub train: ModelTrainConfig,
    pub ssl: SslConfig,
    pub selftrain: SelfTrainConfig,
}

/// Where the teacher's predictions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistillMode {
    /// Computed once per image (un-augmented, optionally flip-averaged) and
    /// cached next to the run: fast.
    Offline,
    /// The teacher runs on the student's own augmented view at every step:
    /// slower, usually more accurate.
    Online,
}

/// How the small model learns from the large one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher checkpoint; `--mode joint` sets it to the large model's
    /// best.
    pub teacher: Option<PathBuf>,
    pub mode: DistillMode,
    /// Softmax temperature of teacher and student (the KL is scaled by T²).
    pub t: f64,
    /// Weight of the cross-entropy on labeled images.
    pub alpha: f64,
    /// Offline: teacher probabilities kept per image (the rest of the mass
    /// is spread evenly over the other classes).
    pub topk: usize,
    /// Offline: average the teacher with its prediction on the mirror image
    /// (never where `data.flip` settled on no flips).
    pub flip: bool,
    /// Epochs of the fine-tune stage on labeled images after distillation.
    pub finetune_epochs: usize,
    /// Learning rate of the fine-tune stage.
    pub finetune_lr: f64,
    /// Refuse a teacher whose val accuracy is too close to chance (see
    /// `semiclass train`'s baseline line); false distills from it anyway.
    pub check_teacher: bool,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            teacher: None,
            mode: DistillMode::Offline,
            // Chosen by val on Fashion-MNIST (lcnet_050 from resnet18, one
            // epoch): 76.8% at T=4 against 74.2% at T=1.
            t: 4.0,
            alpha: 0.5,
            topk: 10,
            flip: true,
            finetune_epochs: 1,
            finetune_lr: 0.003,
            check_teacher: true,
        }
    }
}

/// The small model: its training settings (`epochs` are distillation
/// passes over labeled + unlabeled images) and the distillation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmallConfig {
    #[serde(flatten)]
    pub train: ModelTrainConfig,
    pub distill: DistillConfig,
}

impl Default for SmallConfig {
    fn default() -> Self {
        SmallConfig {
            train: ModelTrainConfig {
                model: "lcnet_050".into(),
                lr: 0.05,
                // A student from random weights meets the T²-scaled KL at
                // full learning rate within a few steps: a short run once
                // diverged (val loss 1e26 after two steps) without a clip.
                grad_clip: Some(5.0),
                ..ModelTrainConfig::default()
            },
            distill: DistillConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve;

    #[test]
    fn auto_stem_is_compact_only_for_mobile_networks_on_small_inputs() {
        let auto = |size, model| StemChoice::Auto.resolve(size, model);
        assert_eq!(auto(32, "lcnet_050"), Stem::Compact);
        assert_eq!(auto(64, "mobilenetv3_small_100"), Stem::Compact);
        assert_eq!(auto(96, "lcnet_050"), Stem::ImageNet);
        assert_eq!(auto(32, "resnet18"), Stem::ImageNet);
        assert_eq!(auto(224, "vit_tiny_patch16_224"), Stem::ImageNet);
        // Explicit choices are kept whatever the model.
        assert_eq!(StemChoice::Compact.resolve(224, "resnet50"), Stem::Compact);
        let cfg: TrainConfig = resolve(None, &["small.stem=imagenet".to_string()]).unwrap();
        assert_eq!(cfg.small.train.stem, StemChoice::ImageNet);
    }

    #[test]
    fn product_parameters_resolve_from_overrides() {
        let over: Vec<String> = [
            "large.epochs=3",
            "large.batch_size=32",
            "large.num_classes=10",
            "large.lr=0.1",
            "large.warmup_epochs=0.5",
            "large.log_interval=10",
            "large.eval_interval=2",
            "large.pretrained=w.safetensors",
            "large.ssl.algorithm=freematch",
            "large.ssl.mu=3",
            "large.optimizer=adamw",
        ]
        .map(String::from)
        .to_vec();
        let cfg: TrainConfig = resolve(None, &over).unwrap();
        assert_eq!(cfg.large.train.epochs, Some(3));
        assert_eq!(cfg.large.train.num_classes, Some(10));
        assert_eq!(cfg.large.train.optimizer, OptimizerKind::AdamW);
        assert_eq!(cfg.large.ssl.algorithm, AlgorithmKind::FreeMatch);
        assert_eq!(cfg.large.ssl.mu, Some(3));
        assert_eq!(
            cfg.large.train.pretrained,
            Some(PathBuf::from("w.safetensors"))
        );
    }

    #[test]
    fn distillation_and_self_training_keys_resolve() {
        let over: Vec<String> = [
            "small.model=mobilenetv3_small_050",
            "small.epochs=2",
            "small.distill.teacher=t.safetensors",
            "small.distill.mode=online",
            "small.distill.t=2",
            "large.selftrain.epochs=1",
        ]
        .map(String::from)
        .to_vec();
        let cfg: TrainConfig = resolve(None, &over).unwrap();
        assert_eq!(cfg.small.train.model, "mobilenetv3_small_050");
        assert_eq!(cfg.small.train.epochs, Some(2));
        assert_eq!(cfg.small.distill.mode, DistillMode::Online);
        assert_eq!(cfg.small.distill.t, 2.0);
        assert_eq!(cfg.large.selftrain.epochs, 1);
        // Untouched small-model keys keep the small model's own defaults.
        assert_eq!(cfg.small.train.lr, 0.05);
        let err = resolve::<TrainConfig>(None, &["small.distill.temp=2".into()]).unwrap_err();
        assert!(err.to_string().contains("small.distill.t"), "{err}");
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        let err = resolve::<TrainConfig>(None, &["large.ssl.p_cutof=0.7".into()]).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("did you mean 'large.ssl.p_cutoff'?"),
            "{err}"
        );
        let err = resolve::<TrainConfig>(None, &["large.epoch=1".into()]).unwrap_err();
        assert!(
            err.to_string().ends_with("did you mean 'large.epochs'?"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_algorithm_names_the_choices() {
        let err =
            resolve::<TrainConfig>(None, &["large.ssl.algorithm=mixmatch".into()]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("large.ssl.algorithm") && text.contains("fixmatch"),
            "{text}"
        );
    }
}
