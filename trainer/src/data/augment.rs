//! Training augmentations on 8-bit RGB images.
//!
//! The weak view (random crop + flip) is what the EMA teacher labels; the
//! strong view (weak + RandAugment + Cutout) is what the student must
//! still get right: FixMatch's consistency between the two.
//! Every random choice comes from the `rng` passed in, so a sample's views
//! are a pure function of its seed (exact resume, same views on any thread).

use image::{Rgb, RgbImage, imageops};
use rand::Rng;

/// Grey fill for pixels that geometric operations uncover (as timm's 128).
const FILL: Rgb<u8> = Rgb([128, 128, 128]);

/// Images no larger than this are treated as "small" (CIFAR/MNIST style):
/// padded random crops instead of random resized crops.
const SMALL_IMAGE: u32 = 64;

/// The weak view at `size` x `size`: for small images, resize, reflect-pad
/// by 1/8 and crop back at a random offset (FixMatch's CIFAR recipe); for
/// larger ones a random resized crop (35-100% of the area). Then a random
/// horizontal flip.
pub fn weak(img: &RgbImage, size: u32, rng: &mut impl Rng) -> RgbImage {
    let mut out = if img.width().max(img.height()) <= SMALL_IMAGE {
        padded_crop(img, size, rng)
    } else {
        random_resized_crop(img, size, rng)
    };
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// The strong view: the weak view, two random RandAugment operations at a
/// random magnitude, then Cutout of a square up to half the side.
pub fn strong(img: &RgbImage, size: u32, rng: &mut impl Rng) -> RgbImage {
    let mut out = weak(img, size, rng);
    for _ in 0..2 {
        let op = OPS[rng.random_range(0..OPS.len())];
        let magnitude = rng.random_range(0.05..1.0);
        out = apply(op, &out, magnitude, rng);
    }
    cutout(&mut out, rng);
    out
}

fn padded_crop(img: &RgbImage, size: u32, rng: &mut impl Rng) -> RgbImage {
    let resized = resize(img, size, size);
    let pad = size / 8;
    let (dx, dy) = (rng.random_range(0..=2 * pad), rng.random_range(0..=2 * pad));
    RgbImage::from_fn(size, size, |x, y| {
        let sx = reflect(x as i64 + dx as i64 - pad as i64, size);
        let sy = reflect(y as i64 + dy as i64 - pad as i64, size);
        *resized.get_pixel(sx, sy)
    })
}

/// Index into `0..n` reflected at the borders (numpy's "reflect").
fn reflect(i: i64, n: u32) -> u32 {
    let n = n as i64;
    let period = 2 * (n - 1).max(1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as u32
}

fn random_resized_crop(img: &RgbImage, size: u32, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    for _ in 0..10 {
        let area = w * h * rng.random_range(0.35..1.0);
        let ratio = rng.random_range((3f64 / 4.0).ln()..(4f64 / 3.0).ln()).exp();
        let (cw, ch) = ((area * ratio).sqrt().round(), (area / ratio).sqrt().round());
        if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
            let x = rng.random_range(0.0..=(w - cw)) as u32;
            let y = rng.random_range(0.0..=(h - ch)) as u32;
            let crop = imageops::crop_imm(img, x, y, cw as u32, ch as u32).to_image();
            return resize(&crop, size, size);
        }
    }
    // Extreme aspect ratios: fall back to the whole image.
    resize(img, size, size)
}

fn resize(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    imageops::resize(img, w, h, imageops::FilterType::Triangle)
}

/// RandAugment's operations (Cubuk et al. 2019, as in FixMatch/USB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Identity,
    AutoContrast,
    Equalize,
    Rotate,
    Solarize,
    Color,
    Posterize,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

pub const OPS: [Op; 14] = [
    Op::Identity,
    Op::AutoContrast,
    Op::Equalize,
    Op::Rotate,
    Op::Solarize,
    Op::Color,
    Op::Posterize,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
];

/// Applies `op` at `magnitude` in 0..1; signed operations pick a random sign.
pub fn apply(op: Op, img: &RgbImage, magnitude: f64, rng: &mut impl Rng) -> RgbImage {
    let signed = if rng.random_bool(0.5) {
        magnitude
    } else {
        -magnitude
    };
    let (w, h) = (img.width() as f64, img.height() as f64);
    match op {
        Op::Identity => img.clone(),
        Op::AutoContrast => auto_contrast(img),
        Op::Equalize => equalize(img),
        Op::Rotate => affine(img, Affine::rotation(signed * 30f64.to_radians(), w, h)),
        Op::Solarize => map(img, |v| {
            if v as f64 >= 256.0 * (1.0 - magnitude) {
                255 - v
            } else {
                v
            }
        }),
        Op::Color => blend(&grey(img), img, 1.0 + 0.9 * signed),
        Op::Posterize => {
            let bits = 8 - (magnitude * 4.0).round() as u32;
            let mask = !(((1u16 << (8 - bits)) - 1) as u8);
            map(img, |v| v & mask)
        }
        Op::Contrast => {
            let mean = mean_grey(img);
            blend(
                &RgbImage::from_pixel(img.width(), img.height(), Rgb([mean; 3])),
                img,
                1.0 + 0.9 * signed,
            )
        }
        Op::Brightness => blend(
            &RgbImage::new(img.width(), img.height()),
            img,
            1.0 + 0.9 * signed,
        ),
        Op::Sharpness => blend(&smooth(img), img, 1.0 + 0.9 * signed),
        Op::ShearX => affine(img, Affine([1.0, signed * 0.3, 0.0, 0.0, 1.0, 0.0])),
        Op::ShearY => affine(img, Affine([1.0, 0.0, 0.0, signed * 0.3, 1.0, 0.0])),
        Op::TranslateX => affine(img, Affine([1.0, 0.0, signed * 0.3 * w, 0.0, 1.0, 0.0])),
        Op::TranslateY => affine(img, Affine([1.0, 0.0, 0.0, 0.0, 1.0, signed * 0.3 * h])),
    }
}

fn map(img: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let mut out = img.clone();
    out.iter_mut().for_each(|v| *v = f(*v));
    out
}

fn grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for px in out.pixels_mut() {
        let l = luma(px);
        *px = Rgb([l, l, l]);
    }
    out
}

/// ITU-R 601 luma, as PIL's "L" conversion.
fn luma(px: &Rgb<u8>) -> u8 {
    let [r, g, b] = px.0.map(u32::from);
    ((r * 299 + g * 587 + b * 114 + 500) / 1000) as u8
}

fn mean_grey(img: &RgbImage) -> u8 {
    let sum: u64 = img.pixels().map(|p| luma(p) as u64).sum();
    (sum / (img.width() as u64 * img.height() as u64).max(1)) as u8
}

/// `base + factor * (img - base)`, clamped: PIL's ImageEnhance.
fn blend(base: &RgbImage, img: &RgbImage, factor: f64) -> RgbImage {
    let mut out = img.clone();
    for (o, (b, i)) in out.iter_mut().zip(base.iter().zip(img.iter())) {
        let v = *b as f64 + factor * (*i as f64 - *b as f64);
        *o = v.round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// PIL's SMOOTH filter (3x3, centre weight 5, total 13), borders kept.
fn smooth(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let mut acc = [0u32; 3];
            for (dy, dx) in (0..3).flat_map(|dy| (0..3).map(move |dx| (dy, dx))) {
                let weight = if (dx, dy) == (1, 1) { 5 } else { 1 };
                let p = img.get_pixel(x + dx - 1, y + dy - 1);
                (0..3).for_each(|c| acc[c] += weight * p[c] as u32);
            }
            out.put_pixel(x, y, Rgb(acc.map(|a| ((a + 6) / 13) as u8)));
        }
    }
    out
}

fn auto_contrast(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let (lo, hi) = img
            .pixels()
            .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[c]), hi.max(p[c])));
        if hi > lo {
            let scale = 255.0 / (hi - lo) as f64;
            for p in out.pixels_mut() {
                p[c] = ((p[c] - lo) as f64 * scale).round() as u8;
            }
        }
    }
    out
}

fn equalize(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    let n = (img.width() * img.height()) as f64;
    for c in 0..3 {
        let mut hist = [0u32; 256];
        img.pixels().for_each(|p| hist[p[c] as usize] += 1);
        let mut cdf = [0f64; 256];
        let mut acc = 0u32;
        for (v, count) in hist.iter().enumerate() {
            acc += count;
            cdf[v] = acc as f64 / n;
        }
        for p in out.pixels_mut() {
            p[c] = (cdf[p[c] as usize] * 255.0).round() as u8;
        }
    }
    out
}

/// Output-to-input affine map `[a, b, c, d, e, f]`: the output pixel
/// `(x, y)` samples the input at `(a x + b y + c, d x + e y + f)`.
struct Affine([f64; 6]);

impl Affine {
    /// Rotation by `angle` about the image centre.
    fn rotation(angle: f64, w: f64, h: f64) -> Self {
        let (s, c) = angle.sin_cos();
        let (cx, cy) = (w / 2.0, h / 2.0);
        Affine([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy])
    }
}

/// Nearest-neighbour warp, uncovered pixels grey.
fn affine(img: &RgbImage, m: Affine) -> RgbImage {
    let [a, b, c, d, e, f] = m.0;
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f64 + 0.5, y as f64 + 0.5);
        let sx = (a * xf + b * yf + c).floor();
        let sy = (d * xf + e * yf + f).floor();
        if sx >= 0.0 && sy >= 0.0 && sx < w as f64 && sy < h as f64 {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            FILL
        }
    })
}

/// Greys out a random square of up to half the image side (DeVries 2017).
fn cutout(img: &mut RgbImage, rng: &mut impl Rng) {
    let (w, h) = img.dimensions();
    let side = (rng.random_range(0.0..0.5) * w.min(h) as f64) as u32;
    if side == 0 {
        return;
    }
    let (cx, cy) = (rng.random_range(0..w), rng.random_range(0..h));
    let (x0, y0) = (cx.saturating_sub(side / 2), cy.saturating_sub(side / 2));
    for y in y0..(y0 + side).min(h) {
        for x in x0..(x0 + side).min(w) {
            img.put_pixel(x, y, FILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A gradient with a checkerboard on top, so that smoothing shows.
    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let check = if (x + y) % 2 == 0 { 40 } else { 0 };
            Rgb([((x * 8 + check) % 256) as u8, ((y * 8) % 256) as u8, 100])
        })
    }

    #[test]
    fn views_have_the_requested_size_for_small_and_large_images() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for img in [gradient(28, 28), gradient(300, 200)] {
            assert_eq!(weak(&img, 32, &mut rng).dimensions(), (32, 32));
            assert_eq!(strong(&img, 32, &mut rng).dimensions(), (32, 32));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_view() {
        let img = gradient(28, 28);
        let a = strong(&img, 32, &mut ChaCha8Rng::seed_from_u64(7));
        let b = strong(&img, 32, &mut ChaCha8Rng::seed_from_u64(7));
        let c = strong(&img, 32, &mut ChaCha8Rng::seed_from_u64(8));
        assert!(a == b, "same seed, different views");
        assert!(a != c, "different seeds, same view");
    }

    #[test]
    fn every_op_keeps_size_and_changes_something_at_full_magnitude() {
        let img = gradient(20, 20);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for op in OPS {
            let out = apply(op, &img, 1.0, &mut rng);
            assert_eq!(out.dimensions(), img.dimensions(), "{op:?}");
            if op != Op::Identity && op != Op::Color {
                assert!(out != img, "{op:?} changed nothing");
            }
        }
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad(np.arange(4), 2, mode="reflect") == [2 1 0 1 2 3 2 1]
        let got: Vec<u32> = (-2..6).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn rotation_by_zero_is_identity() {
        let img = gradient(16, 12);
        assert!(affine(&img, Affine::rotation(0.0, 16.0, 12.0)) == img);
    }
}
