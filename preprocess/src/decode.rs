//! Bytes -> upright 8-bit RGB, refusing decompression bombs before decoding.

use std::io::{BufRead, Cursor, Seek};
use std::sync::atomic::{AtomicBool, Ordering};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::stop::StoppableInput;

/// Default pixel budget: 100 megapixels (a 10000 x 10000 image). Larger
/// headers are refused before any pixel is decoded.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Limits applied to every decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest `width * height` a header may declare.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// Why an image could not be turned into pixels.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a recognised image format (supported: JPEG, PNG, BMP, WebP, GIF, TIFF)")]
    UnknownFormat,
    #[error(
        "header declares {width}x{height} pixels ({megapixels:.1} MP), more than the limit of {limit_mp:.1} MP; resize the image or raise the pixel limit"
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        megapixels: f64,
        limit_mp: f64,
    },
    #[error("the image has no pixels ({width}x{height}); the file is damaged or not a picture")]
    Empty { width: u32, height: u32 },
    #[error("decoding was stopped: nobody waits for the image any more")]
    Stopped,
    #[error("{0}")]
    Image(#[from] image::ImageError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A decoded, upright RGB image and what it looked like in the file.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub rgb: RgbImage,
    /// The pixel mode stored in the file (e.g. `L8`, `Rgba16`), for reports.
    pub source_color: image::ColorType,
}

/// Reads only the header and returns `(width, height)` as stored in the file
/// (before EXIF rotation).
pub fn read_dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    Ok(reader(Cursor::new(bytes))?.into_dimensions()?)
}

/// Decodes any supported file into upright 8-bit RGB.
///
/// The header is checked against `limits` first, so a small file that
/// declares a gigapixel image costs nothing, and a header declaring no
/// pixels at all is refused ([`DecodeError::Empty`]): every consumer (the
/// server, the SDK, `check`, evaluation) gets the same error instead of a
/// zero-sized image that no transform can crop. EXIF orientation is applied.
/// Grey, palette, 16-bit and CMYK inputs are converted to RGB; an alpha
/// channel is dropped, as PIL's `convert("RGB")` does, so Python baselines
/// see the same pixels.
pub fn decode_rgb(bytes: &[u8], limits: DecodeLimits) -> Result<DecodedImage, DecodeError> {
    decode_rgb_until(bytes, limits, &AtomicBool::new(false))
}

/// [`decode_rgb`] that gives up with [`DecodeError::Stopped`] soon after
/// `stop` is set (by another thread: the server's request whose client is
/// gone), instead of finishing an image nobody will use.
pub fn decode_rgb_until(
    bytes: &[u8],
    limits: DecodeLimits,
    stop: &AtomicBool,
) -> Result<DecodedImage, DecodeError> {
    let (width, height) = read_dimensions(bytes)?;
    check_pixels(width, height, limits)?;
    let stopped = || stop.load(Ordering::Relaxed);
    let decoded = decode_checked(StoppableInput::new(bytes, stop), width, height, &stopped);
    match decoded {
        // The decoder saw the failed read as a damaged file.
        Err(_) if stopped() => Err(DecodeError::Stopped),
        other => other,
    }
}

/// The decode itself, once the header's `width` x `height` passed the checks.
fn decode_checked(
    input: impl BufRead + Seek,
    width: u32,
    height: u32,
    stopped: &dyn Fn() -> bool,
) -> Result<DecodedImage, DecodeError> {
    let mut decoder = reader(input)?.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut io_limits = image::Limits::default();
    io_limits.max_image_width = Some(width);
    io_limits.max_image_height = Some(height);
    decoder.set_limits(io_limits)?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    // The frame may differ from the header (GIF frames have their own size).
    if image.width() == 0 || image.height() == 0 {
        return Err(DecodeError::Empty {
            width: image.width(),
            height: image.height(),
        });
    }
    if stopped() {
        return Err(DecodeError::Stopped);
    }
    let source_color = image.color();
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(DecodedImage { rgb, source_color })
}

fn reader<R: BufRead + Seek>(input: R) -> Result<ImageReader<R>, DecodeError> {
    let reader = ImageReader::new(input).with_guessed_format()?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    Ok(reader)
}

fn check_pixels(width: u32, height: u32, limits: DecodeLimits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            megapixels: pixels as f64 / 1e6,
            limit_mp: limits.max_pixels as f64 / 1e6,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb};

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn grey_png_becomes_rgb_with_equal_channels() {
        let grey = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 10 + y) as u8]));
        let bytes = encode(&DynamicImage::ImageLuma8(grey), ImageFormat::Png);
        let decoded = decode_rgb(&bytes, DecodeLimits::default()).unwrap();
        assert_eq!(decoded.rgb.dimensions(), (4, 3));
        assert_eq!(decoded.rgb.get_pixel(2, 1), &Rgb([21, 21, 21]));
        assert_eq!(decoded.source_color, image::ColorType::L8);
    }

    #[test]
    fn sixteen_bit_png_is_scaled_to_eight_bits() {
        let img =
            image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(2, 2, Rgb([65535, 0, 32896]));
        let bytes = encode(&DynamicImage::ImageRgb16(img), ImageFormat::Png);
        let decoded = decode_rgb(&bytes, DecodeLimits::default()).unwrap();
        assert_eq!(decoded.rgb.get_pixel(0, 0), &Rgb([255, 0, 128]));
    }

    #[test]
    fn header_over_the_pixel_limit_is_refused_before_decoding() {
        let img = RgbImage::new(100, 50);
        let bytes = encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png);
        let err = decode_rgb(&bytes, DecodeLimits { max_pixels: 4999 }).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::TooManyPixels {
                width: 100,
                height: 50,
                ..
            }
        ));
        assert!(decode_rgb(&bytes, DecodeLimits { max_pixels: 5000 }).is_ok());
    }

    #[test]
    fn garbage_is_an_unknown_format() {
        let err = decode_rgb(b"definitely not an image", DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownFormat), "{err}");
    }

    #[test]
    fn an_image_without_pixels_is_an_error_not_an_empty_image() {
        // A 0x0 GIF (logical screen and frame): the header declares no pixels.
        let err = decode_rgb(&fixture("zero.gif"), DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Empty {
                    width: 0,
                    height: 0
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("no pixels (0x0)"), "{err}");
    }

    #[test]
    fn truncated_png_fails_with_an_error_not_a_panic() {
        let img = RgbImage::from_pixel(64, 64, Rgb([1, 2, 3]));
        let bytes = encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png);
        let err = decode_rgb(&bytes[..bytes.len() / 2], DecodeLimits::default());
        assert!(err.is_err());
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/images/");
        std::fs::read(format!("{path}{name}")).unwrap()
    }

    fn close(a: &Rgb<u8>, b: [u8; 3], tolerance: i32) -> bool {
        a.0.iter()
            .zip(b)
            .all(|(&x, y)| (x as i32 - y as i32).abs() <= tolerance)
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Stored 32x16 with the red half on the left; orientation 6 turns it
        // upright to 16x32 with the red half on top (as PIL's exif_transpose).
        let decoded = decode_rgb(&fixture("exif_rotate90.jpg"), DecodeLimits::default()).unwrap();
        assert_eq!(decoded.rgb.dimensions(), (16, 32));
        assert!(
            close(decoded.rgb.get_pixel(8, 4), [255, 0, 0], 12),
            "{:?}",
            decoded.rgb.get_pixel(8, 4)
        );
        assert!(
            close(decoded.rgb.get_pixel(8, 28), [0, 0, 255], 12),
            "{:?}",
            decoded.rgb.get_pixel(8, 28)
        );
    }

    #[test]
    fn cmyk_jpeg_becomes_the_rgb_pillow_shows() {
        // Pillow's convert("RGB") of this file gives (55, 255, 205).
        let decoded = decode_rgb(&fixture("cmyk.jpg"), DecodeLimits::default()).unwrap();
        assert_eq!(decoded.rgb.dimensions(), (24, 16));
        let pixel = decoded.rgb.get_pixel(5, 5);
        assert!(close(pixel, [55, 255, 205], 6), "{pixel:?}");
    }
}
