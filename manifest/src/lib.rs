//! Types that travel between the trainer, the exporter, the server and the
//! SDK inside files (checkpoint metadata, package manifests), and the
//! read side of checkpoint files. Plain data with serde; nothing here needs
//! a tensor library.

pub mod checkpoint;
pub mod checkpoint_file;
pub mod package;
mod preprocess;

pub use preprocess::{Interpolation, PreprocessSpec};
