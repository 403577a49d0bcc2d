//! RGB image -> normalised CHW float tensor, the evaluation transform.

use std::sync::atomic::{AtomicBool, Ordering};

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use semiclass_manifest::{Interpolation, PreprocessSpec};

use crate::decode::{DecodeError, DecodeLimits, decode_rgb, decode_rgb_until};

/// A CHW float32 image as plain data (`shape = [3, height, width]`), so that
/// crates built on different tensor libraries (tch, ort) share it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTensor {
    pub data: Vec<f32>,
    pub shape: [usize; 3],
}

/// Decodes `bytes` and applies the evaluation transform: the one path from
/// a file to a model input, used by evaluation, the server and the SDK.
pub fn preprocess_bytes(
    bytes: &[u8],
    limits: DecodeLimits,
    spec: &PreprocessSpec,
) -> Result<ImageTensor, DecodeError> {
    let decoded = decode_rgb(bytes, limits)?;
    Ok(eval_tensor(&decoded.rgb, spec))
}

/// [`preprocess_bytes`] that gives up with [`DecodeError::Stopped`] once
/// `stop` is set: while decoding, and before the resize.
pub fn preprocess_bytes_until(
    bytes: &[u8],
    limits: DecodeLimits,
    spec: &PreprocessSpec,
    stop: &AtomicBool,
) -> Result<ImageTensor, DecodeError> {
    let decoded = decode_rgb_until(bytes, limits, stop)?;
    if stop.load(Ordering::Relaxed) {
        return Err(DecodeError::Stopped);
    }
    Ok(eval_tensor(&decoded.rgb, spec))
}

/// Resizes the shorter side to `spec.resize`, center-crops `spec.crop`
/// square and normalises.
pub fn eval_tensor(rgb: &RgbImage, spec: &PreprocessSpec) -> ImageTensor {
    normalize(&eval_crop(rgb, spec), spec)
}

/// The geometric half of [`eval_tensor`]: the `spec.crop` square image
/// before normalisation (what a cache of evaluation images keeps). The crop
/// is taken from the source in the same pass as the resize (the same
/// geometry as resize-then-crop, one resampling, no intermediate image).
///
/// An image without pixels gives a black crop: [`decode_rgb`] refuses such
/// files ([`DecodeError::Empty`]), so only a caller that built an empty
/// image itself gets here, and it gets no panic.
pub fn eval_crop(rgb: &RgbImage, spec: &PreprocessSpec) -> RgbImage {
    let crop = spec.crop;
    let mut out = RgbImage::new(crop, crop);
    let (w, h) = (rgb.width() as f64, rgb.height() as f64);
    if rgb.width() == 0 || rgb.height() == 0 {
        return out;
    }
    let scale = spec.resize as f64 / w.min(h);
    let (rw, rh) = ((w * scale).round(), (h * scale).round());
    // Pixel offsets of the crop in the resized image, as torchvision's
    // CenterCrop rounds them, mapped back to source coordinates.
    let left = ((rw - crop as f64) / 2.0).round() * (w / rw);
    let top = ((rh - crop as f64) / 2.0).round() * (h / rh);
    // Kept inside the source: the sum of the products can pass the edge by
    // a rounding error, and a crop larger than the resize (a spec no
    // exporter writes) would start outside it.
    let (left, top) = (left.clamp(0.0, w - 1.0), top.clamp(0.0, h - 1.0));
    let width = (crop as f64 * w / rw).min(w - left);
    let height = (crop as f64 * h / rh).min(h - top);
    let filter = match spec.interpolation {
        Interpolation::Bilinear => FilterType::Bilinear,
        Interpolation::Bicubic => FilterType::CatmullRom,
    };
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(filter))
        .crop(left, top, width, height);
    // RGB8 into RGB8 with a crop inside a non-empty image: the resizer's
    // only failures (pixel types, crop box) cannot happen; were one to,
    // the black crop would be the answer rather than a panic.
    let _ = Resizer::new().resize(rgb, &mut out, &options);
    out
}

/// HWC u8 -> CHW f32, `(x / 255 - mean) / std`.
pub fn normalize(rgb: &RgbImage, spec: &PreprocessSpec) -> ImageTensor {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let plane = w * h;
    let mut data = vec![0f32; 3 * plane];
    let a: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * spec.std[c]));
    let b: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * plane + i] = px[c] as f32 * a[c] + b[c];
        }
    }
    ImageTensor {
        data,
        shape: [3, h, w],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resize: u32, crop: u32) -> PreprocessSpec {
        PreprocessSpec {
            resize,
            crop,
            interpolation: Interpolation::Bilinear,
            mean: [0.5, 0.5, 0.5],
            std: [0.25, 0.25, 0.25],
        }
    }

    #[test]
    fn output_is_chw_normalised() {
        let img = RgbImage::from_pixel(10, 10, image::Rgb([255, 0, 128]));
        let t = eval_tensor(&img, &spec(10, 10));
        assert_eq!(t.shape, [3, 10, 10]);
        assert!((t.data[0] - 2.0).abs() < 1e-6); // (1 - 0.5) / 0.25
        assert!((t.data[100] + 2.0).abs() < 1e-6); // (0 - 0.5) / 0.25
        assert!((t.data[200] - (128.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6);
    }

    #[test]
    fn center_crop_keeps_the_middle_of_a_wide_image() {
        // 40x20: left quarter red, middle half green, right quarter blue.
        let img = RgbImage::from_fn(40, 20, |x, _| match x {
            0..10 => image::Rgb([255, 0, 0]),
            10..30 => image::Rgb([0, 255, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        // Shorter side 20 -> 20 (no scaling); a 20x20 center crop is all green.
        let t = eval_tensor(&img, &spec(20, 20));
        let green = &t.data[400..800];
        assert!(
            green.iter().all(|&v| (v - 2.0).abs() < 1e-5),
            "crop is not the green middle"
        );
        assert!(t.data[..400].iter().all(|&v| (v + 2.0).abs() < 1e-5));
    }

    #[test]
    fn an_empty_image_or_a_crop_larger_than_the_resize_does_not_panic() {
        let empty = RgbImage::new(0, 0);
        let t = eval_tensor(&empty, &spec(8, 8));
        assert_eq!(t.shape, [3, 8, 8]);
        let img = RgbImage::from_pixel(30, 20, image::Rgb([255, 255, 255]));
        let t = eval_tensor(&img, &spec(10, 16));
        assert_eq!(t.shape, [3, 16, 16]);
        assert!(t.data.iter().all(|&v| (v - 2.0).abs() < 1e-5));
    }

    #[test]
    fn crops_of_odd_sizes_stay_inside_the_image() {
        // Sizes whose crop box ends on the edge after floating rounding.
        for (w, h) in [(333, 500), (500, 333), (257, 1000), (1023, 767), (1, 900)] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([0, 0, 0]));
            let t = eval_tensor(&img, &spec(256, 224));
            assert!(t.data.iter().all(|&v| (v + 2.0).abs() < 1e-5), "{w}x{h}");
        }
    }

    #[test]
    fn a_stopped_preprocess_gives_up() {
        let img = RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let stop = AtomicBool::new(true);
        let err =
            preprocess_bytes_until(png.get_ref(), DecodeLimits::default(), &spec(8, 8), &stop)
                .unwrap_err();
        assert!(matches!(err, DecodeError::Stopped), "{err}");
        stop.store(false, Ordering::Relaxed);
        let ok = preprocess_bytes_until(png.get_ref(), DecodeLimits::default(), &spec(8, 8), &stop);
        assert_eq!(ok.unwrap().shape, [3, 8, 8]);
    }

    #[test]
    fn upscales_small_images() {
        let img = RgbImage::from_pixel(28, 28, image::Rgb([10, 20, 30]));
        let t = eval_tensor(&img, &spec(32, 32));
        assert_eq!(t.shape, [3, 32, 32]);
        assert!((t.data[32 * 32 + 5] - (20.0 / 255.0 - 0.5) / 0.25).abs() < 1e-5);
    }
}
