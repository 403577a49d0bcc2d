//! The resume states a stopped training leaves next to its checkpoints
//! (`<stage>-last.state.safetensors`), found the same way by `semiclass
//! train --resume @nick` and by the studio's resume.

use std::path::{Path, PathBuf};

/// How every resume state's file name ends.
pub const SUFFIX: &str = "-last.state.safetensors";

/// The most recently written resume state in any of `folders` (missing
/// folders are skipped).
pub fn newest_in<'a>(folders: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    folders
        .into_iter()
        .filter_map(|folder| std::fs::read_dir(folder).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}
