//! `semiclass check`: every problem of a dataset folder at once.

mod images;
mod list;
pub(crate) mod rules;
pub(crate) mod stats;

use std::path::{Path, PathBuf};

use semiclass_preprocess::DecodeLimits;
use serde::Serialize;

use crate::load::ListSet;
use crate::problem::{Problem, Problems};

pub use images::ImageSummary;
pub use list::{ListReport, check_list};
pub use stats::{Counts, SplitCount};

/// Thresholds of the check; the defaults suit photographs and small datasets alike.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    pub limits: DecodeLimits,
    /// Images with a side below this many pixels get a warning.
    pub min_side: u32,
    /// Warn when the largest train class has this many times the images of the smallest.
    pub imbalance_ratio: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            limits: DecodeLimits::default(),
            min_side: 16,
            imbalance_ratio: 10.0,
        }
    }
}

/// The outcome of a check, saved as `check_report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub check_pass: bool,
    pub dataset: PathBuf,
    pub num_classes: usize,
    /// Indexed by class id.
    pub class_names: Vec<String>,
    pub counts: Counts,
    pub images: ImageSummary,
    pub errors: usize,
    pub warnings: usize,
    /// Sorted by file and line.
    pub problems: Vec<Problem>,
}

/// The check could not run at all (as opposed to finding problems).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: not a dataset folder: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a folder; give the dataset folder that holds label.txt and the lists")]
    NotADirectory(PathBuf),
}

/// Hooks for showing progress while images decode (a progress bar in the CLI).
pub trait CheckProgress: Sync {
    /// Called once, before decoding starts, with the number of distinct images.
    fn images_to_decode(&self, _total: usize) {}
    /// Called after each image, from worker threads.
    fn image_decoded(&self) {}
}

/// No progress display.
impl CheckProgress for () {}

/// Checks the dataset at `root`: parses every list, applies the cross-list
/// rules, decodes every image and counts.
pub fn check_dataset(
    root: &Path,
    options: &CheckOptions,
    progress: &dyn CheckProgress,
) -> Result<CheckReport, CheckError> {
    let root = dataset_root(root)?;
    let mut problems = Problems::default();
    let lists = ListSet::read(&root, &mut problems);
    rules::check_lists(&lists, &mut problems);
    let image_rules = images::ImageRules {
        limits: options.limits,
        min_side: options.min_side,
    };
    let images = images::check_images(&root, &lists, image_rules, progress, &mut problems);
    let class_names = lists.labels.as_ref().map(|l| l.names()).unwrap_or_default();
    let counts = stats::count(&lists, class_names.len());
    let balance = stats::BalanceRules {
        imbalance_ratio: options.imbalance_ratio,
    };
    stats::check_counts(&lists, &counts, balance, &mut problems);
    Ok(CheckReport {
        check_pass: !problems.has_errors(),
        dataset: root,
        num_classes: class_names.len(),
        class_names,
        counts,
        images,
        errors: problems.error_count(),
        warnings: problems.warning_count(),
        problems: problems.into_sorted(),
    })
}

/// The dataset folder, made absolute; it must exist and be a folder.
fn dataset_root(root: &Path) -> Result<PathBuf, CheckError> {
    let root = root.canonicalize().map_err(|source| CheckError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(CheckError::NotADirectory(root));
    }
    Ok(root)
}
