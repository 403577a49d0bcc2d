//! PP-LCNet (Cui et al. 2021): MobileNetV1-style depthwise-separable blocks
//! with hard-swish after both convolutions, SE only in the last stage, and
//! MobileNetV3's efficient head. timm builds it with the MobileNetV3 class
//! (`_gen_lcnet`), so the blocks and names are [`super::mobilenetv3`]'s;
//! this file holds LCNet's definition.

use super::mobilenetv3::{ArchDef, Config, SeRounding};

/// `_gen_lcnet`'s `arch_def`.
const ARCH_DEF: ArchDef = &[
    &["dsa_r1_k3_s1_c32"],
    &["dsa_r2_k3_s2_c64"],
    &["dsa_r2_k3_s2_c128"],
    &["dsa_r1_k3_s2_c256", "dsa_r1_k5_s1_c256"],
    &["dsa_r4_k5_s1_c256"],
    &["dsa_r2_k5_s2_c512_se0.25"],
];

const fn lcnet(multiplier: f64) -> Config {
    Config {
        arch_def: ARCH_DEF,
        multiplier,
        // `_gen_lcnet` always scales the stem.
        fix_stem: false,
        num_features: 1280,
        // `_gen_lcnet` gives SqueezeExcite no `rd_round_fn`: Python's round.
        se_rounding: SeRounding::Nearest,
    }
}

pub const LCNET_050: Config = lcnet(0.5);
pub const LCNET_075: Config = lcnet(0.75);
pub const LCNET_100: Config = lcnet(1.0);

#[cfg(test)]
mod tests {
    use crate::families::mobilenetv3::tests::assert_param_count;

    #[test]
    fn members_match_timm_param_counts() {
        // sum(p.numel() for p in timm.create_model(name).parameters()),
        // timm 1.0.31, 1000 classes.
        assert_param_count("lcnet_050", 1_880_856);
        assert_param_count("lcnet_075", 2_358_288);
        assert_param_count("lcnet_100", 2_953_800);
    }

    #[test]
    fn seed_name_resolves() {
        let entry = crate::find("PP-LCNet_x1_0").unwrap();
        assert_eq!((entry.name, entry.family), ("lcnet_100", "LCNet"));
    }
}
