//! Model names -> architectures, with the seed product's names as aliases.

use crate::families::{hgnet, lcnet, mobilenetv3, resnet, swin, vit};
use crate::model::{Arch, ModelError};

/// Mean and standard deviation (RGB, 0..1 scale) the family was trained with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// timm's `IMAGENET_INCEPTION_*`, used by the augreg ViTs.
pub const INCEPTION_MEAN: [f32; 3] = [0.5, 0.5, 0.5];
pub const INCEPTION_STD: [f32; 3] = [0.5, 0.5, 0.5];
/// OpenAI CLIP's normalisation, timm's `OPENAI_CLIP_*`. Written as timm
/// writes them, so they can be compared by eye; f32 rounds the last digit.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// One model of the zoo.
#[derive(Debug)]
pub struct Entry {
    /// timm's name.
    pub name: &'static str,
    pub family: &'static str,
    /// Input side timm's pretrained weights were trained at.
    pub default_input: usize,
    /// Builds the architecture for an input size, or says why not.
    pub arch: fn(usize) -> Result<Arch, String>,
    /// Prefix of the classifier's parameters (`fc`, `head`, `classifier`, `head.fc`).
    pub head: &'static str,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Convolutional networks end in global pooling, so any input that
/// survives their strides works; 32 px is the smallest we promise.
fn cnn(arch: Arch) -> impl Fn(usize) -> Result<Arch, String> {
    move |size| {
        if size < 32 {
            Err(format!(
                "input size {size} is below the 32 px minimum of convolutional models"
            ))
        } else {
            Ok(arch.clone())
        }
    }
}

macro_rules! cnn_entry {
    ($name:literal, $family:literal, $head:literal, $arch:expr) => {
        Entry {
            name: $name,
            family: $family,
            default_input: 224,
            arch: |size| cnn($arch)(size),
            head: $head,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    };
}

/// Swin is built for one input size; [`swin::Config::for_input_size`] says
/// which ones.
macro_rules! swin_entry {
    ($name:literal, $cfg:expr) => {
        Entry {
            name: $name,
            family: "Swin",
            default_input: 224,
            arch: |size| $cfg.for_input_size(size).map(Arch::Swin),
            head: "head.fc",
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    };
}

/// A ViT at 224 px by default; any multiple of its patch works.
macro_rules! vit_entry {
    ($name:literal, $cfg:expr, $mean:expr, $std:expr) => {
        Entry {
            name: $name,
            family: "ViT",
            default_input: 224,
            arch: |size| vit::arch($cfg, size),
            head: "head",
            mean: $mean,
            std: $std,
        }
    };
}

pub static MODELS: &[Entry] = &[
    cnn_entry!("resnet18", "ResNet", "fc", Arch::ResNet(resnet::RESNET18)),
    cnn_entry!("resnet26", "ResNet", "fc", Arch::ResNet(resnet::RESNET26)),
    cnn_entry!("resnet34", "ResNet", "fc", Arch::ResNet(resnet::RESNET34)),
    cnn_entry!("resnet50", "ResNet", "fc", Arch::ResNet(resnet::RESNET50)),
    cnn_entry!(
        "hgnetv2_b0",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B0)
    ),
    cnn_entry!(
        "hgnetv2_b1",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B1)
    ),
    cnn_entry!(
        "hgnetv2_b2",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B2)
    ),
    cnn_entry!(
        "hgnetv2_b3",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B3)
    ),
    cnn_entry!(
        "hgnetv2_b4",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B4)
    ),
    cnn_entry!(
        "hgnetv2_b5",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B5)
    ),
    cnn_entry!(
        "hgnetv2_b6",
        "HGNetV2",
        "head.fc",
        Arch::HGNet(&hgnet::HGNETV2_B6)
    ),
    cnn_entry!(
        "hgnet_tiny",
        "HGNet",
        "head.fc",
        Arch::HGNet(&hgnet::HGNET_TINY)
    ),
    cnn_entry!(
        "hgnet_small",
        "HGNet",
        "head.fc",
        Arch::HGNet(&hgnet::HGNET_SMALL)
    ),
    cnn_entry!(
        "hgnet_base",
        "HGNet",
        "head.fc",
        Arch::HGNet(&hgnet::HGNET_BASE)
    ),
    cnn_entry!(
        "mobilenetv3_small_050",
        "MobileNetV3",
        "classifier",
        Arch::MobileNetV3(mobilenetv3::SMALL_050)
    ),
    cnn_entry!(
        "mobilenetv3_small_075",
        "MobileNetV3",
        "classifier",
        Arch::MobileNetV3(mobilenetv3::SMALL_075)
    ),
    cnn_entry!(
        "mobilenetv3_small_100",
        "MobileNetV3",
        "classifier",
        Arch::MobileNetV3(mobilenetv3::SMALL_100)
    ),
    cnn_entry!(
        "mobilenetv3_large_100",
        "MobileNetV3",
        "classifier",
        Arch::MobileNetV3(mobilenetv3::LARGE_100)
    ),
    cnn_entry!(
        "lcnet_050",
        "LCNet",
        "classifier",
        Arch::LCNet(lcnet::LCNET_050)
    ),
    cnn_entry!(
        "lcnet_075",
        "LCNet",
        "classifier",
        Arch::LCNet(lcnet::LCNET_075)
    ),
    cnn_entry!(
        "lcnet_100",
        "LCNet",
        "classifier",
        Arch::LCNet(lcnet::LCNET_100)
    ),
    swin_entry!("swin_tiny_patch4_window7_224", swin::SWIN_TINY),
    swin_entry!("swin_base_patch4_window7_224", swin::SWIN_BASE),
    // pretrained_cfg of the default tags (augreg_in21k_ft_in1k): 0.5 / 0.5.
    vit_entry!(
        "vit_tiny_patch16_224",
        vit::VIT_TINY_PATCH16,
        INCEPTION_MEAN,
        INCEPTION_STD
    ),
    vit_entry!(
        "vit_small_patch16_224",
        vit::VIT_SMALL_PATCH16,
        INCEPTION_MEAN,
        INCEPTION_STD
    ),
    // OpenAI CLIP statistics: every tag of the base tower, and the OpenAI
    // (seed `CLIP_*`) and most other tags of the large one. timm's default
    // large tag, laion2b_ft_in12k_in1k, was fine-tuned with 0.5 / 0.5.
    vit_entry!(
        "vit_base_patch16_clip_224",
        vit::VIT_BASE_PATCH16_CLIP,
        CLIP_MEAN,
        CLIP_STD
    ),
    vit_entry!(
        "vit_large_patch14_clip_224",
        vit::VIT_LARGE_PATCH14_CLIP,
        CLIP_MEAN,
        CLIP_STD
    ),
];

/// One small member of each family with a CPU-friendly input size (Swin
/// takes only multiples of 224): what tests and quick checks run.
pub const SMALL_MEMBERS: [(&str, usize); 7] = [
    ("resnet18", 32),
    ("mobilenetv3_small_050", 32),
    ("lcnet_050", 32),
    ("hgnetv2_b0", 32),
    ("hgnet_tiny", 32),
    ("vit_tiny_patch16_224", 32),
    ("swin_tiny_patch4_window7_224", 224),
];

/// The source product's names (DESIGN.md section 5) -> timm names.
pub static SEED_NAMES: &[(&str, &str)] = &[
    ("CLIP_vit_large_patch14_224", "vit_large_patch14_clip_224"),
    ("PP-HGNetV2_B6", "hgnetv2_b6"),
    ("CLIP_vit_base_patch16_224", "vit_base_patch16_clip_224"),
    (
        "SwinTransformer_base_patch4_window7_224",
        "swin_base_patch4_window7_224",
    ),
    ("PP-HGNetV2_B4", "hgnetv2_b4"),
    ("PP-HGNet_small", "hgnet_small"),
    ("PP-HGNetV2_B0", "hgnetv2_b0"),
    ("ResNet50", "resnet50"),
    ("PP-LCNet_x1_0", "lcnet_100"),
    ("MobileNetV3_small_x1_0", "mobilenetv3_small_100"),
];

/// Looks a model up by timm name or seed name (case-insensitive).
pub fn find(name: &str) -> Result<&'static Entry, ModelError> {
    let timm_name = SEED_NAMES
        .iter()
        .find(|(seed, _)| seed.eq_ignore_ascii_case(name))
        .map_or(name, |(_, timm)| timm);
    MODELS
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(timm_name))
        .ok_or_else(|| ModelError::Unknown {
            name: name.to_string(),
            close: close_matches(name),
        })
}

/// Up to five known names closest to `name` by edit distance.
fn close_matches(name: &str) -> Vec<String> {
    let lower = name.to_lowercase();
    // timm names first at equal distance (`false < true`).
    let mut scored: Vec<(usize, bool, &str)> = MODELS
        .iter()
        .map(|e| (e.name, false))
        .chain(SEED_NAMES.iter().map(|(seed, _)| (*seed, true)))
        .map(|(candidate, seed)| {
            (
                strsim::levenshtein(&lower, &candidate.to_lowercase()),
                seed,
                candidate,
            )
        })
        .filter(|(d, _, c)| *d <= c.len() / 2 || c.to_lowercase().contains(&lower))
        .collect();
    scored.sort();
    let mut names: Vec<String> = Vec::new();
    for (_, _, candidate) in scored {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(candidate)) {
            names.push(candidate.to_string());
        }
    }
    names.truncate(5);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names_and_timm_names_resolve() {
        assert_eq!(find("ResNet50").unwrap().name, "resnet50");
        assert_eq!(find("resnet18").unwrap().name, "resnet18");
        assert_eq!(find("RESNET34").unwrap().name, "resnet34");
    }

    #[test]
    fn unknown_names_list_close_matches() {
        let err = find("resnet5").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown model 'resnet5'; did you mean resnet50"),
            "{err}"
        );
    }

    #[test]
    fn every_seed_name_builds_at_its_default_size() {
        for (seed, timm) in SEED_NAMES {
            let options = crate::ModelOptions::new(1000, 224);
            let model = crate::Model::new(seed, options).unwrap_or_else(|e| panic!("{seed}: {e}"));
            assert_eq!(model.entry.name, *timm);
        }
    }
}
