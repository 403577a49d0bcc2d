//! Model names -> architectures, with the seed product's names as aliases.

use crate::families::{hgnet, resnet};
use crate::model::{Arch, ModelError};

/// Mean and standard deviation (RGB, 0..1 scale) the family was trained with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
                edit_distance(&lower, &candidate.to_lowercase()),
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

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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
}
