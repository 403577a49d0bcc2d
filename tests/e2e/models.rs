//! `semiclass models`: the zoo as users see it.

use crate::common::semiclass;

#[test]
fn lists_every_seed_model_with_its_size() {
    let run = semiclass(&["models"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for (timm, seed, params) in [
        (
            "vit_large_patch14_clip_224",
            "CLIP_vit_large_patch14_224",
            "304.2M",
        ),
        ("hgnetv2_b6", "PP-HGNetV2_B6", "75.3M"),
        (
            "vit_base_patch16_clip_224",
            "CLIP_vit_base_patch16_224",
            "86.6M",
        ),
        (
            "swin_base_patch4_window7_224",
            "SwinTransformer_base_patch4_window7_224",
            "87.8M",
        ),
        ("hgnetv2_b4", "PP-HGNetV2_B4", "19.8M"),
        ("hgnet_small", "PP-HGNet_small", "24.4M"),
        ("hgnetv2_b0", "PP-HGNetV2_B0", "6.0M"),
        ("resnet50", "ResNet50", "25.6M"),
        ("lcnet_100", "PP-LCNet_x1_0", "3.0M"),
        ("mobilenetv3_small_100", "MobileNetV3_small_x1_0", "2.5M"),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(timm))
            .unwrap_or_else(|| panic!("{timm} missing"));
        assert!(line.contains(seed) && line.contains(params), "{line}");
    }
}
