//! Training augmentations on 8-bit RGB images.
//!
//! The weak view (random crop + flip) is what the pseudo-labels come from;
//! the strong view (weak + RandAugment + Cutout) is what the model must
//! still get right: FixMatch's consistency between the two. RandAugment is
//! USB's (semilearn/datasets/augmentation/randaugment.py, FixMatch's list
//! and value ranges) and each operation computes what Pillow computes
//! (checked op by op against Pillow by `ops_match_pillow`).
//! Every random choice comes from the `rng` passed in, so a sample's views
//! are a pure function of its seed (exact resume, same views on any thread).

use image::{Rgb, RgbImage, imageops};
use rand::Rng;

/// Pixels uncovered by rotations, shears and translations: black, Pillow's
/// default `fillcolor` (a black border is what Fashion-MNIST-like images
/// already have; grey would be a new feature to learn).
const GEOMETRIC_FILL: Rgb<u8> = Rgb([0, 0, 0]);

/// Cutout's colour in USB (about the ImageNet mean).
const CUTOUT_FILL: Rgb<u8> = Rgb([125, 123, 114]);

/// RandAugment operations per strong view (FixMatch's N = 2).
const OPS_PER_VIEW: usize = 2;

/// Images no larger than this are treated as "small" (CIFAR/MNIST style):
/// padded random crops instead of random resized crops.
const SMALL_IMAGE: u32 = 64;

/// The weak view at `size` x `size`: for small images, resize, reflect-pad
/// by 1/8 and crop back at a random offset (FixMatch's CIFAR recipe); for
/// larger ones a random resized crop (35-100% of the area). Then, when
/// `flip`, a random horizontal flip (drawn either way, so that the other
/// random choices of a sample do not depend on `flip`).
pub fn weak(img: &RgbImage, size: u32, flip: bool, rng: &mut impl Rng) -> RgbImage {
    let mut out = if img.width().max(img.height()) <= SMALL_IMAGE {
        padded_crop(img, size, rng)
    } else {
        random_resized_crop(img, size, rng)
    };
    if rng.random_bool(0.5) && flip {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// The strong view: the weak view, two RandAugment operations drawn with
/// replacement, each at a value drawn uniformly from its range, then
/// Cutout of a square up to half the side (USB's `RandAugment.__call__`).
pub fn strong(img: &RgbImage, size: u32, flip: bool, rng: &mut impl Rng) -> RgbImage {
    let mut out = weak(img, size, flip, rng);
    for _ in 0..OPS_PER_VIEW {
        let op = OPS[rng.random_range(0..OPS.len())];
        let (lo, hi) = op.range();
        let value = lo + (hi - lo) * rng.random::<f64>();
        out = apply(op, &out, value);
    }
    let side = rng.random::<f64>() * 0.5 * out.width() as f64;
    cutout(&mut out, side, rng);
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

impl Op {
    /// USB's value range (`augment_list`): enhancement factors below 1
    /// (weakening only), degrees, shear and translation as shares of the
    /// side, bits kept, the solarize threshold.
    pub fn range(self) -> (f64, f64) {
        match self {
            Op::Identity | Op::AutoContrast | Op::Equalize => (0.0, 1.0),
            Op::Brightness | Op::Color | Op::Contrast | Op::Sharpness => (0.05, 0.95),
            Op::Posterize => (4.0, 8.0),
            Op::Rotate => (-30.0, 30.0),
            Op::ShearX | Op::ShearY | Op::TranslateX | Op::TranslateY => (-0.3, 0.3),
            Op::Solarize => (0.0, 256.0),
        }
    }
}

/// Applies `op` at `value` (in [`Op::range`]) as Pillow does.
pub fn apply(op: Op, img: &RgbImage, value: f64) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    match op {
        Op::Identity => img.clone(),
        Op::AutoContrast => auto_contrast(img),
        Op::Equalize => equalize(img),
        Op::Rotate => affine(img, Affine::rotation(value.to_radians(), w, h)),
        Op::Solarize => map(img, |v| if f64::from(v) < value { v } else { 255 - v }),
        Op::Color => blend(&grey(img), img, value),
        Op::Posterize => {
            let bits = (value as u32).clamp(1, 8);
            let mask = !(((1u16 << (8 - bits)) - 1) as u8);
            map(img, |v| v & mask)
        }
        Op::Contrast => {
            let mean = mean_grey(img);
            let base = RgbImage::from_pixel(img.width(), img.height(), Rgb([mean; 3]));
            blend(&base, img, value)
        }
        Op::Brightness => blend(&RgbImage::new(img.width(), img.height()), img, value),
        Op::Sharpness => blend(&smooth(img), img, value),
        Op::ShearX => affine(img, Affine([1.0, value, 0.0, 0.0, 1.0, 0.0])),
        Op::ShearY => affine(img, Affine([1.0, 0.0, 0.0, value, 1.0, 0.0])),
        Op::TranslateX => affine(img, Affine([1.0, 0.0, value * w, 0.0, 1.0, 0.0])),
        Op::TranslateY => affine(img, Affine([1.0, 0.0, 0.0, 0.0, 1.0, value * h])),
    }
}

fn map(img: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let lut: Vec<u8> = (0..=255u8).map(f).collect();
    let mut out = img.clone();
    out.iter_mut().for_each(|v| *v = lut[*v as usize]);
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

/// ITU-R 601-2 luma in Pillow's fixed point (`convert("L")`).
fn luma(px: &Rgb<u8>) -> u8 {
    let [r, g, b] = px.0.map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

/// The rounded mean luma (`ImageEnhance.Contrast`'s grey).
fn mean_grey(img: &RgbImage) -> u8 {
    let sum: u64 = img.pixels().map(|p| luma(p) as u64).sum();
    let n = (img.width() as u64 * img.height() as u64).max(1);
    (sum as f64 / n as f64 + 0.5) as u8
}

/// `base + factor * (img - base)`, clamped: Pillow's `Image.blend`, which
/// ImageEnhance uses.
fn blend(base: &RgbImage, img: &RgbImage, factor: f64) -> RgbImage {
    let factor = factor as f32;
    let mut out = img.clone();
    for (o, (b, i)) in out.iter_mut().zip(base.iter().zip(img.iter())) {
        let v = *b as f32 + factor * (*i as f32 - *b as f32);
        *o = v.clamp(0.0, 255.0) as u8;
    }
    out
}

/// Pillow's SMOOTH filter (3x3, centre weight 5, total 13), borders kept.
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

/// Pillow's `ImageOps.autocontrast` (no cutoff): each channel's range
/// stretched to 0..255, truncating.
fn auto_contrast(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let (lo, hi) = img
            .pixels()
            .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[c]), hi.max(p[c])));
        if hi <= lo {
            continue;
        }
        let scale = 255.0 / f64::from(hi - lo);
        let offset = -f64::from(lo) * scale;
        let lut: Vec<u8> = (0..256)
            .map(|v| (v as f64 * scale + offset).clamp(0.0, 255.0) as u8)
            .collect();
        out.pixels_mut().for_each(|p| p[c] = lut[p[c] as usize]);
    }
    out
}

/// Pillow's `ImageOps.equalize`: per channel, levels spread by the
/// cumulative histogram *before* each level, so the darkest level stays 0
/// (a black background stays black).
fn equalize(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let mut hist = [0u64; 256];
        img.pixels().for_each(|p| hist[p[c] as usize] += 1);
        let Some(last) = hist.iter().rposition(|&n| n > 0) else {
            continue;
        };
        let step = (hist.iter().sum::<u64>() - hist[last]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut n = step / 2;
        for (level, count) in hist.iter().enumerate() {
            lut[level] = (n / step).min(255) as u8;
            n += count;
        }
        out.pixels_mut().for_each(|p| p[c] = lut[p[c] as usize]);
    }
    out
}

/// Output-to-input affine map `[a, b, c, d, e, f]`: the output pixel
/// `(x, y)` samples the input at `(a x + b y + c, d x + e y + f)`.
struct Affine([f64; 6]);

impl Affine {
    /// Pillow's `Image.rotate(degrees)` (counter-clockwise about the centre).
    fn rotation(angle: f64, w: f64, h: f64) -> Self {
        let (s, c) = angle.sin_cos();
        let (cx, cy) = (w / 2.0, h / 2.0);
        Affine([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy])
    }
}

/// Nearest-neighbour warp at pixel centres (Pillow's `transform(AFFINE)`),
/// uncovered pixels black.
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
            GEOMETRIC_FILL
        }
    })
}

/// USB's `CutoutAbs`: a square of `side` pixels at a uniform centre, in
/// Cutout's colour (DeVries 2017).
fn cutout(img: &mut RgbImage, side: f64, rng: &mut impl Rng) {
    let (w, h) = img.dimensions();
    if side <= 0.0 {
        return;
    }
    let (cx, cy) = (
        rng.random::<f64>() * w as f64,
        rng.random::<f64>() * h as f64,
    );
    let x0 = (cx - side / 2.0).max(0.0) as u32;
    let y0 = (cy - side / 2.0).max(0.0) as u32;
    // Pillow's rectangle includes its far corner.
    let x1 = ((x0 as f64 + side) as u32).min(w - 1);
    let y1 = ((y0 as f64 + side) as u32).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            img.put_pixel(x, y, CUTOUT_FILL);
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
            assert_eq!(weak(&img, 32, true, &mut rng).dimensions(), (32, 32));
            assert_eq!(strong(&img, 32, true, &mut rng).dimensions(), (32, 32));
        }
    }

    #[test]
    fn without_flip_no_view_is_mirrored_and_the_other_choices_stay() {
        // Red rises left to right (no wrap-around), so a view is mirrored
        // exactly when its left side is redder than its right.
        let img = RgbImage::from_fn(28, 28, |x, y| Rgb([(x * 9) as u8, (y * 9) as u8, 100]));
        let mirrored = |flip: bool| {
            (0..40u64)
                .filter(|&seed| {
                    let view = weak(&img, 28, flip, &mut ChaCha8Rng::seed_from_u64(seed));
                    view.get_pixel(2, 14)[0] > view.get_pixel(25, 14)[0]
                })
                .count()
        };
        assert!(mirrored(true) > 5, "{}", mirrored(true));
        assert_eq!(mirrored(false), 0);
        // The crop drawn for a seed is the same with or without flips.
        let a = weak(&img, 28, false, &mut ChaCha8Rng::seed_from_u64(3));
        let mut b = weak(&img, 28, true, &mut ChaCha8Rng::seed_from_u64(3));
        if a != b {
            imageops::flip_horizontal_in_place(&mut b);
        }
        assert!(a == b);
    }

    #[test]
    fn the_same_seed_gives_the_same_view() {
        let img = gradient(28, 28);
        let a = strong(&img, 32, true, &mut ChaCha8Rng::seed_from_u64(7));
        let b = strong(&img, 32, true, &mut ChaCha8Rng::seed_from_u64(7));
        let c = strong(&img, 32, true, &mut ChaCha8Rng::seed_from_u64(8));
        assert!(a == b, "same seed, different views");
        assert!(a != c, "different seeds, same view");
    }

    #[test]
    fn every_op_keeps_size_and_changes_something_at_the_end_of_its_range() {
        let img = gradient(20, 20);
        for op in OPS {
            let (lo, hi) = op.range();
            // Posterize keeps all 8 bits and Solarize nothing at their top.
            let value = if matches!(op, Op::Posterize | Op::Solarize) {
                lo
            } else {
                hi
            };
            let out = apply(op, &img, value);
            assert_eq!(out.dimensions(), img.dimensions(), "{op:?}");
            if op != Op::Identity {
                assert!(out != img, "{op:?} changed nothing");
            }
        }
    }

    fn op_named(name: &str) -> Op {
        *OPS.iter()
            .find(|op| format!("{op:?}") == name)
            .unwrap_or_else(|| panic!("no operation {name}"))
    }

    /// Every operation against Pillow at fixed values on fixed images
    /// (`tests/fixtures/make_augment.py`, made by `make test`).
    #[test]
    fn ops_match_pillow() {
        let dir = std::env::var_os("SEMICLASS_AUGMENT_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/augment-fixtures")
            });
        let cases = dir.join("cases.json");
        let text = std::fs::read_to_string(&cases)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make test` to make it", cases.display()));
        let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut failures = Vec::new();
        for case in cases["cases"].as_array().unwrap() {
            let load = |key: &str| {
                image::open(dir.join(case[key].as_str().unwrap()))
                    .unwrap()
                    .to_rgb8()
            };
            let (op, value) = (
                case["op"].as_str().unwrap(),
                case["value"].as_f64().unwrap(),
            );
            let got = apply(op_named(op), &load("input"), value);
            let want = load("expected");
            let differing = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
            if differing > 0 {
                failures.push(format!(
                    "{op}({value}) on {}: {differing} values differ",
                    case["input"]
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn equalize_keeps_a_black_background_black() {
        // Half black, the rest spread: Pillow maps the darkest level to 0
        // and the first level above it half-way (values from Pillow 13).
        let img = RgbImage::from_fn(16, 16, |x, y| {
            let v = if x < 8 { 0 } else { (y * 16 + x) as u8 };
            Rgb([v, v, v])
        });
        let out = equalize(&img);
        assert_eq!(out.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(out.get_pixel(8, 0), &Rgb([128, 128, 128]));
        assert_eq!(out.get_pixel(15, 15), &Rgb([255, 255, 255]));
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
