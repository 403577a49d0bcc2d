//! The images of a run, decoded once and kept in memory when they fit.
//!
//! Training images are kept downscaled (augmentations never need more than
//! twice the input size); evaluation images are kept as their evaluation
//! crop computed from the full-resolution decode, so that validation and
//! test accuracy are measured on exactly the tensors the server and the SDK
//! compute for the same files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use rayon::prelude::*;
use semiclass_manifest::PreprocessSpec;
use semiclass_preprocess::transform::{eval_crop, eval_tensor, normalize};
use semiclass_preprocess::{DecodeError, DecodeLimits, decode_rgb};

/// What an image of the store is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Augmented training views.
    Train,
    /// Only the evaluation transform (val, test).
    Eval,
}

/// How a store is built.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// The model's input side: training crops never need more than twice it.
    pub input_size: u32,
    /// The evaluation transform of the model.
    pub eval: PreprocessSpec,
    /// Everything is decoded up front when the estimate fits this.
    pub budget_bytes: u64,
}

/// Decoded images indexed like the path list they were built from.
pub struct ImageStore {
    root: PathBuf,
    paths: Vec<PathBuf>,
    uses: Vec<Use>,
    eval: PreprocessSpec,
    /// `Some` when everything was decoded up front (it fitted the budget):
    /// training images downscaled, evaluation images as their crop.
    cache: Option<Vec<Arc<RgbImage>>>,
    /// Training images larger than this on their shorter side are
    /// downscaled.
    max_short_side: u32,
}

/// An image could not be loaded during training.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    pub path: PathBuf,
    pub message: String,
}

impl ImageStore {
    /// Decodes every image in parallel (calling `on_image` after each) when
    /// their estimated size fits `budget_bytes`; otherwise images are
    /// decoded again at every use.
    pub fn load(
        root: &Path,
        images: Vec<(PathBuf, Use)>,
        spec: &StoreSpec,
        on_image: &(dyn Fn() + Sync),
    ) -> Result<ImageStore, LoadError> {
        let max_short_side = spec.input_size.saturating_mul(2).max(64);
        let (paths, uses) = images.into_iter().unzip();
        let mut store = ImageStore {
            root: root.to_path_buf(),
            paths,
            uses,
            eval: spec.eval.clone(),
            cache: None,
            max_short_side,
        };
        let per_image = u64::from(max_short_side) * u64::from(max_short_side) * 3 * 2;
        if per_image * store.paths.len() as u64 <= spec.budget_bytes {
            let images: Result<Vec<_>, _> = (0..store.paths.len())
                .into_par_iter()
                .map(|i| {
                    let image = store.decode(i).map(Arc::new);
                    on_image();
                    image
                })
                .collect();
            store.cache = Some(images?);
        }
        Ok(store)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The file of the image at `index`.
    pub fn file(&self, index: usize) -> PathBuf {
        self.root.join(&self.paths[index])
    }

    /// The path of the image at `index` as the list files give it.
    pub fn relative_path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    pub fn is_cached(&self) -> bool {
        self.cache.is_some()
    }

    /// The training image at `index` (downscaled), from the cache or
    /// freshly decoded.
    pub fn get(&self, index: usize) -> Result<Arc<RgbImage>, LoadError> {
        debug_assert_eq!(self.uses[index], Use::Train, "augmenting an eval image");
        match &self.cache {
            Some(images) => Ok(images[index].clone()),
            None => self.decode(index).map(Arc::new),
        }
    }

    /// The evaluation tensor (CHW) of the image at `index`: the shared
    /// preprocessing applied to the full-resolution decode.
    pub fn eval_data(&self, index: usize) -> Result<Vec<f32>, LoadError> {
        match (&self.cache, self.uses[index]) {
            (Some(images), Use::Eval) => Ok(normalize(&images[index], &self.eval).data),
            (None, Use::Eval) => Ok(normalize(&self.decode(index)?, &self.eval).data),
            (_, Use::Train) => Ok(eval_tensor(&self.decode_full(index)?, &self.eval).data),
        }
    }

    /// The cached form of the image at `index`.
    fn decode(&self, index: usize) -> Result<RgbImage, LoadError> {
        let rgb = self.decode_full(index)?;
        Ok(match self.uses[index] {
            Use::Train => shrink(rgb, self.max_short_side),
            Use::Eval => eval_crop(&rgb, &self.eval),
        })
    }

    fn decode_full(&self, index: usize) -> Result<RgbImage, LoadError> {
        let path = self.root.join(&self.paths[index]);
        let error = |message: String| LoadError {
            path: path.clone(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| error(e.to_string()))?;
        let rgb = decode_rgb(&bytes, DecodeLimits::default())
            .map_err(|e: DecodeError| {
                error(format!("does not decode: {e}; run `semiclass check`"))
            })?
            .rgb;
        Ok(rgb)
    }
}

/// Downscales so the shorter side is at most `max_short_side`.
fn shrink(rgb: RgbImage, max_short_side: u32) -> RgbImage {
    let short = rgb.width().min(rgb.height());
    if short <= max_short_side {
        return rgb;
    }
    let scale = max_short_side as f64 / short as f64;
    let (w, h) = (
        (rgb.width() as f64 * scale).round() as u32,
        (rgb.height() as f64 * scale).round() as u32,
    );
    image::imageops::resize(
        &rgb,
        w.max(1),
        h.max(1),
        image::imageops::FilterType::Triangle,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use semiclass_manifest::PreprocessSpec;
    use semiclass_preprocess::preprocess_bytes;

    /// A 300x200 photo-like gradient: large enough that downscaling it for
    /// training would change its evaluation tensor.
    fn write_photo(dir: &Path) -> PathBuf {
        let rgb = RgbImage::from_fn(300, 200, |x, y| {
            image::Rgb([(x % 256) as u8, (y * 7 % 256) as u8, ((x * y) % 251) as u8])
        });
        let path = dir.join("photo.png");
        rgb.save(&path).unwrap();
        path
    }

    #[test]
    fn eval_images_give_exactly_the_shared_preprocessing_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_photo(dir.path());
        let eval = PreprocessSpec::for_input(32, [0.5; 3], [0.25; 3]);
        let expected = preprocess_bytes(
            &std::fs::read(&file).unwrap(),
            DecodeLimits::default(),
            &eval,
        )
        .unwrap()
        .data;
        for budget_bytes in [1 << 30, 0] {
            let spec = StoreSpec {
                input_size: 32,
                eval: eval.clone(),
                budget_bytes,
            };
            let images = vec![
                ("photo.png".into(), Use::Eval),
                ("photo.png".into(), Use::Train),
            ];
            let store = ImageStore::load(dir.path(), images, &spec, &|| {}).unwrap();
            assert_eq!(store.is_cached(), budget_bytes > 0);
            assert_eq!(store.eval_data(0).unwrap(), expected);
            assert_eq!(store.eval_data(1).unwrap(), expected);
            // Training images are kept downscaled.
            assert_eq!(store.get(1).unwrap().height(), 64);
        }
    }
}
