//! The images of a run, decoded once and kept in memory when they fit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use rayon::prelude::*;
use semiclass_preprocess::{DecodeError, DecodeLimits, decode_rgb};

/// Decoded images indexed like the path list they were built from.
pub struct ImageStore {
    root: PathBuf,
    paths: Vec<PathBuf>,
    /// `Some` when everything was decoded up front (it fitted the budget).
    cache: Option<Vec<Arc<RgbImage>>>,
    /// Images larger than this on their shorter side are downscaled when
    /// cached: training crops at `input_size` never need more.
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
        paths: Vec<PathBuf>,
        input_size: u32,
        budget_bytes: u64,
        on_image: &(dyn Fn() + Sync),
    ) -> Result<ImageStore, LoadError> {
        let max_short_side = input_size.saturating_mul(2).max(64);
        let mut store = ImageStore {
            root: root.to_path_buf(),
            paths,
            cache: None,
            max_short_side,
        };
        let per_image = u64::from(max_short_side) * u64::from(max_short_side) * 3 * 2;
        if per_image * store.paths.len() as u64 <= budget_bytes {
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

    pub fn is_cached(&self) -> bool {
        self.cache.is_some()
    }

    /// The image at `index`, from the cache or freshly decoded.
    pub fn get(&self, index: usize) -> Result<Arc<RgbImage>, LoadError> {
        match &self.cache {
            Some(images) => Ok(images[index].clone()),
            None => self.decode(index).map(Arc::new),
        }
    }

    fn decode(&self, index: usize) -> Result<RgbImage, LoadError> {
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
        Ok(shrink(rgb, self.max_short_side))
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
