//! How an image becomes a model input. Stored with every checkpoint and
//! package so that training evaluation, the server and the SDK compute the
//! same tensor from the same file.

use serde::{Deserialize, Serialize};

/// Resampling filter of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bilinear,
    /// Catmull-Rom (Pillow's and timm's "bicubic").
    Bicubic,
}

/// Evaluation preprocessing: resize the shorter side to `resize`, take the
/// centered `crop` x `crop` square, scale to 0..1, normalise per channel.
/// The output is CHW float32 RGB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    pub resize: u32,
    pub crop: u32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl PreprocessSpec {
    /// timm's evaluation recipe for an input of `size` px: resize to
    /// `size / 0.875` then center-crop, except for small inputs (below 128
    /// px, e.g. 28 px Fashion-MNIST at 32 px) whose borders are too valuable
    /// to crop away.
    pub fn for_input(size: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        let crop_pct = if size >= 128 { 0.875 } else { 1.0 };
        PreprocessSpec {
            resize: (size as f64 / crop_pct).floor() as u32,
            crop: size,
            interpolation: Interpolation::Bilinear,
            mean,
            std,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_inputs_crop_small_inputs_do_not() {
        let m = [0.5; 3];
        let big = PreprocessSpec::for_input(224, m, m);
        assert_eq!((big.resize, big.crop), (256, 224));
        let small = PreprocessSpec::for_input(32, m, m);
        assert_eq!((small.resize, small.crop), (32, 32));
    }
}
